"""`edgekd predict` on a torch bundle (a teacher or a distilled student): the runtime's `Classifier` over the torch
model instead of an ONNX Runtime or LiteRT file, so labels, probabilities and the golden self-check are computed
exactly as for the exported bundles. It lives outside `edgekd.runtime`, which never imports torch.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgekd.bundle import Bundle
from edgekd.families import family_spec
from edgekd.modeling import load_torch_model
from edgekd.runtime.classifier import Classifier
from edgekd.runtime.encoder import Example, bundle_encoder


class TorchBackend:
    """A torch model as a runtime backend: float32 logits (examples, labels) of encoded examples, batch padded to its
    longest member (the model's axes are dynamic)."""

    max_sequence: int | None = None

    def __init__(self, bundle: Bundle, pad_id: int) -> None:
        self.model = load_torch_model(bundle)
        self._run = family_spec(bundle.manifest.architecture).runner(self.model, pad_id)
        self.input_names = tuple(spec.name for spec in bundle.manifest.inputs)

    def run(self, examples: list[Example]) -> np.ndarray:
        return self._run(examples)


def load_classifier(bundle: str | os.PathLike[str] | Bundle, *, threads: int = 1, batch_size: int = 32) -> Classifier:
    """A Classifier over any bundle: ONNX and TFLite through the runtime (`Classifier.load`), torch through its model.
    A torch bundle's golden texts are checked as the runtime checks an exported one's (a ParityError when its model
    or tokenizer no longer gives the stored logits or ids)."""
    opened = bundle if isinstance(bundle, Bundle) else Bundle.open(Path(bundle))
    if opened.manifest.format != "torch":
        return Classifier.load(opened, threads=threads, batch_size=batch_size)
    import torch

    torch.set_num_threads(threads)
    encoder = bundle_encoder(opened)
    classifier = Classifier(opened, encoder, TorchBackend(opened, encoder.pad_id), batch_size)
    if opened.manifest.golden:
        classifier.check_golden().raise_on_failure(opened.path)
    return classifier
