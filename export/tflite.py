"""TFLite export through litert-torch: one signature per fixed sequence bucket (seq32, seq64, ...), batch 1.

LiteRT needs static shapes (a batch or length axis left dynamic fails in BERT's embedding lookup), so each bucket is
its own signature in one file; the signatures share the weight buffers. The runtime pads an example to the smallest
bucket that holds it; the tokenizer truncates to the largest. Integer inputs become int32 in the file.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from edgekd.config import ExportConfig
from edgekd.logs import root_filter
from edgekd.records import MODEL_FILES
from edgekd.runtime.backends import TfliteBackend
from edgekd.runtime.encoder import Example, collate, sequence_length

from .base import Exported, Source
from .stage import register
from edgekd.families import FamilySpec, to_torch

logger = logging.getLogger(__name__)

MODEL_FILE = MODEL_FILES["tflite"]


def buckets_for(requested: list[int], max_length: int) -> list[int]:
    """Requested buckets below the tokenizer's max length, and the max length capped at the largest request."""
    largest = min(max(requested), max_length)
    return sorted({b for b in requested if b < largest} | {largest})


@register(ExportConfig, "tflite")
def export_tflite(model: nn.Module, spec: FamilySpec, source: Source, cfg: ExportConfig, directory: Path) -> Exported:
    # litert-torch prints per-pass progress and TensorFlow's C++ logs unless told otherwise before it is imported.
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "0")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    import litert_torch

    buckets = buckets_for(cfg.buckets, source.encoder.max_length)
    names = spec.inputs(source.pair)
    module = spec.tflite_module(model).eval()
    example = source.trace_examples[-1]  # the longest golden example: real ids in every position it has
    converter = None
    started = time.perf_counter()
    # litert-torch announces through the root logger that int64 inputs become int32: that is intended here.
    with root_filter(lambda r: "downcasts 64-bit" in r.getMessage()), warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # deprecations inside torch.export
        for size in buckets:
            sample = to_torch(collate([fit(example, size)], source.encoder.pad_id, width=size))
            kwargs = {name: sample[name] for name in names}
            converter = (converter or litert_torch).signature(f"seq{size}", module, sample_kwargs=kwargs)
        assert converter is not None
        edge_model = converter.convert()
    path = directory / MODEL_FILE
    edge_model.export(str(path))
    seconds = time.perf_counter() - started
    logger.info("TFLite conversion of %d buckets took %.1f s", len(buckets), seconds)
    backend = TfliteBackend(path, source.encoder.pad_id)
    return Exported(
        files=[MODEL_FILE],
        inputs=[{**t, "dtype": "int32"} for t in spec.tensor_specs(source.pair, width="bucket", batch=1)],
        details={"converter": "litert-torch", "buckets": buckets, "batch": 1, "convert_seconds": round(seconds, 1)},
        run=backend.run,
        group=lambda e: f"bucket {backend.bucket(sequence_length(e))}",
    )


def fit(example: Example, size: int) -> Example:
    """The example cut to `size` tokens (a trace sample only needs plausible ids)."""
    return {k: (v[:size] if not isinstance(v, int) else min(v, size)) for k, v in example.items()}
