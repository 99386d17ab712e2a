"""ONNX export: the TorchScript exporter (`dynamo=False`: its graphs quantize cleanly), dynamic batch and sequence
axes, stable names, labels and tokenizer facts in the model's metadata, and optional ONNX Runtime transformer fusion."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.config import ExportConfig
from edgekd.errors import UnsupportedError
from edgekd.records import MODEL_FILES, Architecture
from edgekd.runtime.backends import OnnxBackend
from edgekd.runtime.encoder import collate

from edgekd.families import FamilySpec, to_torch
from .base import Exported, Source
from .stage import register

logger = logging.getLogger(__name__)

MODEL_FILE = MODEL_FILES["onnx"]


@register(ExportConfig, "onnx")
def export_onnx(model: nn.Module, spec: FamilySpec, source: Source, cfg: ExportConfig, directory: Path) -> Exported:
    pair = source.pair
    names = spec.inputs(pair)
    # Trace on real examples of different lengths, so no size is mistaken for a constant.
    sample = collate(source.trace_examples, source.encoder.pad_id)
    args = tuple(to_torch(sample)[name] for name in names)
    path = directory / MODEL_FILE
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter warns about its deprecation and about traced Python values on every call.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            spec.onnx_module(model).eval(),
            args,
            str(path),
            input_names=list(names),
            output_names=["logits"],
            dynamic_axes=spec.dynamic_axes(pair),
            opset_version=cfg.opset,
            do_constant_folding=True,
            dynamo=False,
        )
    details: dict[str, Any] = {"opset": cfg.opset, "exporter": "torch.onnx (TorchScript)"}
    if cfg.fuse:
        details["fusions"] = _fuse(path, spec, source.architecture)
    _set_metadata(path, source.metadata)
    backend = OnnxBackend(path, source.encoder.pad_id)
    return Exported(files=[MODEL_FILE], inputs=spec.tensor_specs(pair), details=details, run=backend.run)


def _fuse(path: Path, spec: FamilySpec, architecture: Architecture) -> dict[str, int]:
    """ONNX Runtime's transformer optimizer, in place; returns the count of each fused operator."""
    if spec.name != "bert":
        # The optimizer's "bert" patterns are tested here on BERT graphs only; another family's graph (RoBERTa's position
        # ids, DistilBERT's attention, a BiLSTM) may fuse partly or wrongly, so it is refused by name.
        raise UnsupportedError(f"--fuse applies ONNX Runtime's transformer fusion to BERT graphs only; this model is a "
                               f"{spec.name}. Export it without --fuse")
    from onnxruntime.transformers.optimizer import optimize_model

    # The optimizer's modules log every step at INFO under their own top-level names (fusion_*, onnx_model*).
    for name in list(logging.root.manager.loggerDict):
        if name.startswith(("fusion", "onnx_model")):
            logging.getLogger(name).setLevel(max(logging.WARNING, logger.getEffectiveLevel()))
    optimized = optimize_model(
        str(path), model_type="bert", num_heads=int(architecture.shape("heads")), hidden_size=int(architecture.shape("hidden")), opt_level=0
    )
    fused = {op: int(n) for op, n in optimized.get_fused_operator_statistics().items() if n}
    optimized.save_model_to_file(str(path))
    if not fused.get("Attention") and not fused.get("MultiHeadAttention"):
        logger.warning("no attention fusion fired (fused: %s); was the model exported with eager attention?", fused or "nothing")
    logger.info("ONNX Runtime fusions: %s", ", ".join(f"{k} {v}" for k, v in fused.items()) or "none")
    return fused


def _set_metadata(path: Path, metadata: dict[str, Any]) -> None:
    import onnx

    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {f"edgekd.{k}": v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()})
    onnx.save(model, str(path))
