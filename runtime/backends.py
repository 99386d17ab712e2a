"""Inference backends over one model file: onnxruntime for ONNX, ai-edge-litert for TFLite, ExecuTorch for `.pte`
(`pte.py`).

A backend takes encoded examples (`encoder.Encoder.encode`) and returns logits (examples, labels). ONNX pads a batch to
its longest member (dynamic axes); TFLite runs each example in the smallest sequence bucket that holds it. Threads are
set explicitly (default 1 intra-op, 1 inter-op, no spinning: the benchmark protocol's setting). A file that is not a
model of its format is a BundleError before any run.
"""

from __future__ import annotations

import importlib
import logging
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgekd.errors import BundleError, UnsupportedError
from edgekd.logs import native_stderr_filtered

from .encoder import Example, collate, sequence_length

logger = logging.getLogger(__name__)
# TFLite signatures are named by their fixed sequence length: seq32, seq64, ...
BUCKET_SIGNATURE = re.compile(r"^seq(\d+)$")


# What installs each backend, for the one-line hint when it is missing: (its name, the extra of edgekd).
BACKEND_EXTRAS = {"onnxruntime": ("onnxruntime", "runtime"), "ai_edge_litert": ("LiteRT", "runtime-tflite"), "executorch": ("ExecuTorch", "mobile")}


# The library each format's backend imports.
BACKEND_MODULES = {"onnx": "onnxruntime", "tflite": "ai_edge_litert.interpreter", "executorch": "executorch.runtime"}


def import_backend(module: str, path: Path) -> Any:
    """The backend's module; an install without it is told which extra brings it (UnsupportedError, exit 2)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = module.split(".")[0]
        if (exc.name or "").split(".")[0] != top:
            raise  # the backend is there but broken: its own error says more than a hint would
        what, extra = BACKEND_EXTRAS[top]
        raise UnsupportedError(f"{path}: this bundle needs {what}, which is not installed here: pip install 'edgekd[{extra}]'") from None


def smallest_bucket(buckets: Iterable[int], length: int, what: str) -> int:
    """The smallest of a file's fixed sequence lengths (ascending) that holds `length` tokens."""
    sizes = list(buckets)
    for size in sizes:
        if length <= size:
            return size
    raise BundleError(f"an input of {length} tokens exceeds the largest {what} bucket ({max(sizes)}); the tokenizer truncates to it")


def run_in_buckets(examples: list[Example], pad_id: int, bucket: Callable[[int], int],
                   invoke: Callable[[int, dict[str, np.ndarray]], np.ndarray]) -> np.ndarray:
    """Logits (examples, labels) of a file with fixed sequence buckets: each example alone (batch 1), padded to the
    smallest bucket that holds it; `invoke(bucket, feeds)` runs one."""
    rows = []
    for example in examples:
        size = bucket(sequence_length(example))
        rows.append(np.asarray(invoke(size, collate([example], pad_id, width=size)), dtype=np.float32).reshape(-1))
    return np.stack(rows)


class Backend(Protocol):
    input_names: tuple[str, ...]
    # The longest sequence the model takes, where the file fixes one (TFLite buckets); None for dynamic axes.
    max_sequence: int | None

    def run(self, examples: list[Example]) -> np.ndarray: ...


def backend_failure(path: Path, backend: str, exc: BaseException, shapes: dict[str, list[int]]) -> BundleError:
    """A run the backend refused (a token id past the embedding table, a sequence past the position embeddings):
    the bundle's tokenizer and model do not fit together, which is a bad bundle, not a crash."""
    reason = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
    return BundleError(
        f"{path}: {backend} failed to run the model on inputs of shape {shapes} ({reason}). The bundle's tokenizer "
        "(its ids, or the manifest's tokenizer.max_length) does not fit its model: re-create the bundle with its stage"
    )


class OnnxBackend:
    """An onnxruntime session; inputs the model does not take (token_type_ids of a single-sentence BERT) are dropped."""

    def __init__(self, path: Path, pad_id: int, threads: int = 1) -> None:
        ort = import_backend(BACKEND_MODULES["onnx"], path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Spinning threads burn the cores between calls and distort both latency and other processes' timings.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types (Fail, InvalidGraph, ...) for a bad file
            raise BundleError(f"{path}: onnxruntime cannot load it as an ONNX model ({str(exc).splitlines()[0][:200]})") from None
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        self.pad_id, self.path, self.max_sequence = pad_id, path, None
        from onnxruntime.capi import onnxruntime_pybind11_state as state

        # What a kernel's checks raise at run time (INVALID_ARGUMENT for an index out of range, ...).
        self._run_errors = tuple(getattr(state, n) for n in ("Fail", "InvalidArgument", "RuntimeException") if hasattr(state, n))

    def run(self, examples: list[Example]) -> np.ndarray:
        return self.run_feeds(collate(examples, self.pad_id))

    def run_feeds(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Logits of a padded batch (every input the model takes, as int64)."""
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise BundleError(f"the ONNX model needs inputs {missing} that the bundle's tokenizer does not produce")
        try:
            (logits,) = self.session.run(["logits"], {n: feeds[n] for n in self.input_names})
        except self._run_errors as exc:
            raise backend_failure(self.path, "onnxruntime", exc, {n: list(feeds[n].shape) for n in self.input_names}) from None
        return logits


class TfliteBackend:
    """A LiteRT interpreter with one signature per sequence bucket (batch 1); examples run one by one."""

    def __init__(self, path: Path, pad_id: int, threads: int = 1) -> None:
        interpreter = import_backend(BACKEND_MODULES["tflite"], path)
        try:
            self.interpreter = interpreter.Interpreter(model_path=str(path), num_threads=threads)
            signatures = self.interpreter.get_signature_list()
            # LiteRT creates its XNNPACK delegate when tensors are first allocated and announces it from C++ on stderr
            # ("Created TensorFlow Lite XNNPACK delegate for CPU."): done here, with that line filtered out.
            with native_stderr_filtered():
                self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise BundleError(f"{path}: LiteRT cannot load it as a TFLite model ({str(exc).splitlines()[0][:200]})") from None
        self.buckets: dict[int, str] = {}
        for name in signatures:
            match = BUCKET_SIGNATURE.match(name)
            if match:
                self.buckets[int(match.group(1))] = name
        if not self.buckets:
            raise BundleError(f"{path}: no seq<N> signatures (found {sorted(signatures)}); export it with `edgekd export --to tflite`")
        self.buckets = dict(sorted(self.buckets.items()))
        self.path, self.max_sequence = path, max(self.buckets)
        first = signatures[next(iter(self.buckets.values()))]
        self.input_names = tuple(first["inputs"])
        self.pad_id = pad_id
        self._runners = {b: self.interpreter.get_signature_runner(name) for b, name in self.buckets.items()}
        self._dtypes = {b: {n: d["dtype"] for n, d in r.get_input_details().items()} for b, r in self._runners.items()}
        # An interpreter holds its tensors: one call at a time.
        self._lock = threading.Lock()

    def bucket(self, length: int) -> int:
        return smallest_bucket(self.buckets, length, "TFLite")

    def run(self, examples: list[Example]) -> np.ndarray:
        return run_in_buckets(examples, self.pad_id, self.bucket, self._invoke)

    def _invoke(self, size: int, feeds: dict[str, np.ndarray]) -> np.ndarray:
        dtypes = self._dtypes[size]
        try:
            with self._lock:
                outputs = self._runners[size](**{n: feeds[n].astype(dtypes[n]) for n in dtypes})
        except (RuntimeError, ValueError) as exc:  # LiteRT's kernels report a failed invoke as RuntimeError
            raise backend_failure(self.path, "LiteRT", exc, {n: list(feeds[n].shape) for n in dtypes}) from None
        (logits,) = outputs.values()
        return np.asarray(logits)


def open_backend(path: Path, pad_id: int, threads: int = 1, input_names: Sequence[str] = ()) -> Backend:
    """The backend for a model file, by its suffix (.onnx, .tflite or .pte); a `.pte` method's inputs are positional,
    in the order of `input_names` (the manifest's inputs)."""
    if path.suffix == ".onnx":
        return OnnxBackend(path, pad_id, threads)
    if path.suffix == ".tflite":
        return TfliteBackend(path, pad_id, threads)
    if path.suffix == ".pte":
        from .pte import PteBackend

        return PteBackend(path, pad_id, input_names, threads)
    raise BundleError(f"{path}: not a model file the runtime runs (.onnx, .tflite or .pte)")


def run_batched(examples: list[Example], run: Callable[[list[Example]], np.ndarray], batch_size: int = 64) -> np.ndarray:
    """Run in batches of similar length (less padding); return outputs (examples, ...) in the examples' order."""
    order = np.argsort([sequence_length(e) for e in examples], kind="stable")
    batches = [np.asarray(run([examples[i] for i in order[start : start + batch_size]]), dtype=np.float32) for start in range(0, len(order), batch_size)]
    stacked = np.concatenate(batches)
    result = np.empty_like(stacked)
    result[order] = stacked
    return result
