"""`Classifier.load(bundle).predict(texts)`: labels and probabilities from an ONNX or TFLite bundle.

Needs numpy, pydantic, the backend (onnxruntime or ai-edge-litert) and `tokenizers`; never torch or transformers.
One Classifier may be shared by several threads: the encoders are read-only, an ONNX Runtime session runs calls
concurrently, and the TFLite backend serialises calls to its interpreter.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekd.bundle import Bundle
from edgekd.errors import UnsupportedError

from .backends import Backend, open_backend, run_batched
from .encoder import Encoder, Texts, load_encoder

MODEL_FILES = {"onnx": "model.onnx", "tflite": "model.tflite"}


@dataclass(frozen=True)
class Prediction:
    """A class label and every label's probability; for a regression task, the score (label and probabilities empty)."""

    label: str | None
    probabilities: dict[str, float]
    score: float | None = None

    def as_dict(self) -> dict[str, object]:
        if self.score is not None:
            return {"score": self.score}
        return {"label": self.label, "probabilities": self.probabilities}


class Classifier:
    def __init__(self, bundle: Bundle, encoder: Encoder, backend: Backend, batch_size: int = 32) -> None:
        self.bundle, self.encoder, self.backend, self.batch_size = bundle, encoder, backend, batch_size
        task = bundle.manifest.task
        self.labels = list(task.labels)
        self.regression = task.problem == "regression"

    @classmethod
    def load(cls, bundle: str | os.PathLike[str] | Bundle, *, threads: int = 1, batch_size: int = 32) -> Classifier:
        """Open (and verify) an ONNX or TFLite bundle; `threads` is the backend's intra-op thread count."""
        opened = bundle if isinstance(bundle, Bundle) else Bundle.open(Path(bundle))
        manifest = opened.manifest
        if manifest.format not in MODEL_FILES:
            raise UnsupportedError(
                f"{opened.path}: is a {manifest.format} bundle; the runtime runs onnx or tflite bundles "
                f"(edgekd export {opened.path} --to onnx)"
            )
        columns = manifest.task.columns
        encoder = load_encoder(opened.tokenizer_dir, manifest.tokenizer.type, manifest.tokenizer.max_length, columns)
        backend = open_backend(opened.file(MODEL_FILES[manifest.format]), encoder.pad_id, threads)
        return cls(opened, encoder, backend, batch_size)

    def logits(self, texts: Texts) -> np.ndarray:
        """Raw outputs (texts, labels) in the texts' order; batches group texts of similar length."""
        examples = self.encoder.encode(texts)
        if not examples:
            return np.zeros((0, max(1, len(self.labels))), dtype=np.float32)
        return run_batched(examples, self.backend.run, self.batch_size)

    def predict(self, texts: Texts) -> list[Prediction]:
        logits = self.logits(texts)
        if self.regression:
            return [Prediction(label=None, probabilities={}, score=float(row.reshape(-1)[0])) for row in logits]
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
        probabilities = shifted / shifted.sum(axis=-1, keepdims=True)  # softmax, (texts, labels)
        return [
            Prediction(label=self.labels[int(row.argmax())], probabilities={l: round(float(p), 6) for l, p in zip(self.labels, row)})
            for row in probabilities
        ]


def read_texts(lines: Sequence[str], columns: int, where: str) -> list[tuple[str, ...]]:
    """Texts from input lines: one text per line, or a tab-separated pair for sentence-pair models."""
    from edgekd.errors import DataError

    texts = []
    for number, line in enumerate(lines, start=1):
        parts = tuple(line.rstrip("\r\n").split("\t"))
        if len(parts) != columns:
            need = "one text (no tab)" if columns == 1 else "two texts separated by one tab"
            raise DataError(f"{where} line {number}: found {len(parts)} tab-separated parts; this model takes {need} per line")
        texts.append(parts)
    if not texts:
        raise DataError(f"{where}: no texts; give one text per line (or a tab-separated pair for a pair model)")
    return texts
