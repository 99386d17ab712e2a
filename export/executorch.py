"""ExecuTorch export: a `.pte` program lowered to the XNNPACK delegate, one method per fixed sequence bucket.

Like TFLite, each bucket (seq16, seq32, ...) is its own method of one program, batch 1, traced by `torch.export` from
the same exportable module (`FamilySpec.tflite_module`: the BiLSTM unrolled); the runtime pads an example to the
smallest bucket that holds it. XNNPACK runs what it takes; the rest stays on ExecuTorch's portable kernels.
`int8: static | dynamic` quantizes before lowering with ExecuTorch's XNNPACK quantizer (PT2E, through torchao):
static INT8 weights and activations with ranges calibrated on real training text, or INT8 weights with activations
quantized per call. ExecuTorch quantizes the torch graph, not a written program, so INT8 is a choice of the export
(there is no `.pte` to `.pte` quantizer).
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.config import ExportConfig
from edgekd.families import FamilySpec, to_torch
from edgekd.footprint import NONZERO_METHOD, PARAMETERS_METHOD
from edgekd.records import MODEL_FILES
from edgekd.runtime.encoder import Example, collate, sequence_length
from edgekd.runtime.pte import PteBackend

from .base import Exported, Source
from .stage import register
from .tflite import buckets_for, fit

logger = logging.getLogger(__name__)

MODEL_FILE = MODEL_FILES["executorch"]


@register(ExportConfig, "executorch")
def export_executorch(model: nn.Module, spec: FamilySpec, source: Source, cfg: ExportConfig, directory: Path) -> Exported:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import (
        XnnpackPartitioner,
    )
    from executorch.exir import to_edge_transform_and_lower

    buckets = buckets_for(cfg.buckets, source.encoder.max_length)
    names = spec.inputs(source.pair)
    module = spec.tflite_module(model).eval()
    started = time.perf_counter()
    programs = {}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # deprecations inside torch.export and the quantizer
        for size in buckets:
            args = _bucket_args(source.trace_examples[-1], size, source.encoder.pad_id, names)
            program = torch.export.export(module, args)
            if cfg.int8:
                # Dynamic INT8 observes the weights only: one run of the trace sample sets them.
                examples = _fitting(source.calibration, size) if cfg.int8 == "static" else []
                calibration = [_bucket_args(e, size, source.encoder.pad_id, names) for e in examples] or [args]
                program = torch.export.export(_quantized(program.module(), cfg.int8, calibration), args)
            programs[f"seq{size}"] = program
        counts = _parameter_counts(programs[f"seq{buckets[-1]}"])
        lowered = to_edge_transform_and_lower(programs, partitioner=[XnnpackPartitioner()], constant_methods=counts).to_executorch()
    path = directory / MODEL_FILE
    path.write_bytes(lowered.buffer)
    seconds = time.perf_counter() - started
    logger.info("ExecuTorch lowering of %d buckets took %.1f s", len(buckets), seconds)
    backend = PteBackend(path, source.encoder.pad_id, names)
    details: dict[str, Any] = {"converter": "executorch (XNNPACK)", "buckets": buckets, "batch": 1, "convert_seconds": round(seconds, 1)}
    if cfg.int8:
        details["int8"] = {"mode": cfg.int8, "quantizer": "XNNPACKQuantizer, Linear layers (symmetric, per-channel weights)",
                           **({"calibration_examples": len(source.calibration)} if cfg.int8 == "static" else {})}
    return Exported(
        files=[MODEL_FILE],
        inputs=spec.tensor_specs(source.pair, width="bucket", batch=1),
        details=details,
        run=backend.run,
        group=lambda e: f"bucket {backend.bucket(sequence_length(e))}",
    )


def _parameter_counts(program: torch.export.ExportedProgram) -> dict[str, int]:
    """The weights one bucket's program holds (every bucket holds the same ones), stored in the file as constant
    methods for `edgekd.footprint`: XNNPACK's payload keeps its tensor table in a flatbuffer with no Python reader.
    Counted on the graph before lowering: a quantized program's weights are the same elements, and their non-zero
    count is that of the float weights the lowering quantizes."""
    # Parameters, and the constants a quantized graph holds its INT8 weights in; not buffers, nor the int64 index
    # tensors (position and type ids) a graph lifts as constants: the parent's safetensors counts neither.
    constants = [t for t in program.constants.values() if isinstance(t, torch.Tensor) and t.dtype != torch.int64]
    weights = [program.state_dict[name] for name in program.graph_signature.parameters] + constants
    # Keyed by storage: a tied weight (one tensor under two names) counts once, as in the parent's safetensors.
    tensors = {(t.untyped_storage().data_ptr(), t.storage_offset(), t.shape): t for t in weights}
    return {PARAMETERS_METHOD: sum(t.numel() for t in tensors.values()),
            NONZERO_METHOD: sum(int(torch.count_nonzero(t)) for t in tensors.values())}


def _bucket_args(example: Example, size: int, pad_id: int, names: tuple[str, ...]) -> tuple[torch.Tensor, ...]:
    feeds = to_torch(collate([fit(example, size)], pad_id, width=size))
    return tuple(feeds[name] for name in names)


def _fitting(examples: list[Example], size: int) -> list[Example]:
    """Calibration examples for one bucket: those that run in it (no longer than it), or, where none are that short,
    the shortest ones cut to it, so every bucket's activation ranges come from real text of its lengths."""
    held = [e for e in examples if sequence_length(e) <= size]
    return held or sorted(examples, key=sequence_length)[:16]


def _quantized(graph: nn.Module, mode: str, calibration: list[tuple[torch.Tensor, ...]]) -> nn.Module:
    """The graph through ExecuTorch's XNNPACK quantizer: static (calibrated) or dynamic INT8."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    # The Linear layers only (nearly all of the compute). A global annotation also quantizes the adds, among them the
    # attention mask's (a float32-min mask and the scores in one INT8 range: top-1 agreement with the parent fell to
    # 0.70 on the demo student), and its dynamic mode fails in convert_pt2e on BERT's graph.
    config = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=mode == "dynamic")
    quantizer = XNNPACKQuantizer().set_module_type(nn.Linear, config)
    prepared = prepare_pt2e(graph, quantizer)
    for args in calibration:
        prepared(*args)
    return convert_pt2e(prepared)
