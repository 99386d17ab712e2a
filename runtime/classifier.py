"""`Classifier.load(bundle).predict(texts)`: labels and probabilities from an ONNX or TFLite bundle.

Needs numpy, pydantic, the backend (onnxruntime or ai-edge-litert) and `tokenizers`; never torch or transformers.
One Classifier may be shared by several threads: the encoders are read-only, an ONNX Runtime session runs calls
concurrently, and the TFLite backend serialises calls to its interpreter.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekd.bundle import HF_CONFIG, Bundle
from edgekd.errors import BundleError, UnsupportedError
from edgekd.hf_config import position_limit, read_model_config
from edgekd.records import DEPLOYABLE_FORMATS, MODEL_FILES

from .backends import Backend, open_backend, run_batched
from .encoder import TOKENIZER_FILES, Encoder, Texts, load_encoder, probe_example
from .golden import GoldenCheck, check_golden

logger = logging.getLogger(__name__)



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
    def load(
        cls, bundle: str | os.PathLike[str] | Bundle, *, threads: int = 1, batch_size: int = 32, verify: bool = True
    ) -> Classifier:
        """Open (and hash-check) an ONNX or TFLite bundle; `threads` is the backend's intra-op thread count.

        The tokenizer and model files are read only when the manifest lists them. With `verify` (the default: one
        small batch), the tokenizer's largest id is run once and the golden texts are classified and compared with the
        stored ids and logits (`runtime/golden.py`): a ParityError when they differ beyond tolerance. The benchmark
        child passes verify=False so that its timed start-up and first inference are the model's alone.
        """
        opened = bundle if isinstance(bundle, Bundle) else Bundle.open(Path(bundle))
        manifest = opened.manifest
        if manifest.format not in DEPLOYABLE_FORMATS:
            raise UnsupportedError(
                f"{opened.path}: is a {manifest.format} bundle; the runtime runs onnx, tflite or executorch bundles "
                f"(edgekd export {opened.path} --to onnx)"
            )
        tokenizer = manifest.tokenizer
        # Only through a name the manifest lists (so hashes): never a file that merely lies in the folder (the folder's
        # tokenizer_config.json, read for a pad token, is hashed too: Bundle.open refuses unlisted files there).
        tokenizer_file = opened.tokenizer_file(TOKENIZER_FILES[tokenizer.type])
        encoder = load_encoder(tokenizer_file.parent, tokenizer.type, tokenizer.max_length, manifest.task.columns,
                               inputs=[spec.name for spec in manifest.inputs], pad_id=tokenizer.pad_id)
        backend = open_backend(opened.file(MODEL_FILES[manifest.format]), encoder.pad_id, threads, [spec.name for spec in manifest.inputs])
        _check_max_length(opened, backend)
        classifier = cls(opened, encoder, backend, batch_size)
        if verify:
            classifier._probe_largest_id(tokenizer_file)
            if manifest.golden:
                classifier.check_golden().raise_on_failure(opened.path)
            else:
                logger.warning("%s: has no golden texts; its model is not self-checked", opened.path)
        return classifier

    def check_golden(self) -> GoldenCheck:
        """Run the golden texts and compare ids and logits with the stored ones (`runtime/golden.py`)."""
        golden, texts = self.bundle.read_golden()
        result, _ = check_golden(self.bundle.manifest, golden, self.encoder.encode(texts), self.encoder.pad_id, self.backend.run)
        return result

    def _probe_largest_id(self, tokenizer_file: Path) -> None:
        """One single-token run with the tokenizer's largest id: a vocabulary larger than the model's embedding table
        fails here, at load, rather than on the first text that holds a rare word."""
        largest = self.encoder.largest_id()
        try:
            self.backend.run([probe_example(self.encoder, largest)])
        except BundleError as exc:
            raise BundleError(f"{self.bundle.path}: the model does not take token id {largest}, the largest that "
                              f"{tokenizer_file.name} gives ({exc}); the tokenizer is not the one the model was trained with") from None

    def logits(self, texts: Texts) -> np.ndarray:
        """Raw outputs (texts, labels) in the texts' order; batches group texts of similar length."""
        examples = self.encoder.encode(texts)
        width = 1 if self.regression else len(self.labels)
        if not examples:
            return np.zeros((0, width), dtype=np.float32)
        logits = run_batched(examples, self.backend.run, self.batch_size)
        if logits.ndim != 2 or logits.shape[1] != width:
            raise BundleError(f"{self.bundle.path}: the model gives logits of shape {list(logits.shape)}, but the manifest's "
                              f"task has {width} output(s) per text (labels {self.labels}); re-create the bundle with its stage")
        return logits

    def predict(self, texts: Texts) -> list[Prediction]:
        return self.predictions(self.logits(texts))

    def predictions(self, logits: np.ndarray) -> list[Prediction]:
        """Labels and probabilities (softmax) of logits (texts, labels) that `logits` gave."""
        if self.regression:
            return [Prediction(label=None, probabilities={}, score=float(row.reshape(-1)[0])) for row in logits]
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
        probabilities = shifted / shifted.sum(axis=-1, keepdims=True)  # softmax, (texts, labels)
        return [
            Prediction(label=self.labels[int(row.argmax())], probabilities={l: round(float(p), 6) for l, p in zip(self.labels, row)})
            for row in probabilities
        ]


def _check_max_length(bundle: Bundle, backend: Backend) -> None:
    """The manifest's tokenizer.max_length against the longest input the model takes, where that is known cheaply:
    a TFLite file's largest bucket, the position embeddings its config.json gives (RoBERTa's 514 take 512 tokens)."""
    max_length = bundle.manifest.tokenizer.max_length
    limits = {}
    if backend.max_sequence is not None:
        limits["the largest TFLite bucket"] = backend.max_sequence
    if HF_CONFIG in bundle.manifest.files:
        limit = position_limit(read_model_config(bundle.file(HF_CONFIG), BundleError))
        if limit is not None:
            limits[f"the model's position embeddings ({HF_CONFIG} {limit[1]})"] = limit[0]
    for what, limit in limits.items():
        if max_length > limit:
            raise BundleError(f"{bundle.path}: manifest tokenizer.max_length {max_length} exceeds {what}, {limit}; the model "
                              f"cannot take inputs that long. Re-create the bundle with its stage (max_length at most {limit})")


def read_texts(lines: Iterable[str], columns: int, where: str) -> list[tuple[str, ...]]:
    """Texts from input lines (all of them): see `iter_texts`."""
    return list(iter_texts(lines, columns, where))


def iter_texts(lines: Iterable[str], columns: int, where: str) -> Iterator[tuple[str, ...]]:
    """Texts from input lines, as they are read: one text per line, or a tab-separated pair for sentence-pair models.
    A line's ending (`\n` or `\r\n`) is not part of its text; an empty text is classified, with a warning."""
    from edgekd.errors import DataError

    count = 0
    for number, line in enumerate(lines, start=1):
        parts = tuple(line.removesuffix("\n").removesuffix("\r").split("\t"))
        if len(parts) != columns:
            need = "one text (no tab)" if columns == 1 else "two texts separated by one tab"
            raise DataError(f"{where} line {number}: found {len(parts)} tab-separated parts; this model takes {need} per line")
        if not any(part.strip() for part in parts):
            logger.warning("%s line %d: the text is empty; classified anyway (the model sees only special tokens)", where, number)
        count += 1
        yield parts
    if not count:
        raise DataError(f"{where}: no texts; give one text per line (or a tab-separated pair for a pair model)")
