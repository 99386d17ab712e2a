"""Inference backends over one model file: onnxruntime for ONNX, ai-edge-litert for TFLite.

A backend takes padded numpy feeds (`encoder.collate`) and returns logits (batch, labels). Threads are set
explicitly (default 1 intra-op, 1 inter-op, no spinning: the benchmark protocol's setting). A file that is not a
model of its format is a BundleError before any run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import numpy as np

from edgekd.errors import BundleError

logger = logging.getLogger(__name__)


class Backend(Protocol):
    input_names: tuple[str, ...]

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray: ...


class OnnxBackend:
    """An onnxruntime session; feeds the model does not take (e.g. token_type_ids of a single-sentence BERT) are dropped."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Spinning threads burn the cores between calls and distort both latency and other processes' timings.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...) for a bad file
            raise BundleError(f"{path}: onnxruntime cannot load it as an ONNX model ({str(exc).splitlines()[0][:200]})") from None
        self.input_names = tuple(i.name for i in self.session.get_inputs())

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise BundleError(f"the ONNX model needs inputs {missing} that the bundle's tokenizer does not produce")
        (logits,) = self.session.run(["logits"], {n: feeds[n] for n in self.input_names})
        return logits
