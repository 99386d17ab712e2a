"""Optimum's ONNX Runtime quantizer as a method: `ORTQuantizer` with an `AutoQuantizationConfig` preset, dynamic INT8,
exactly as Optimum's documentation writes it. edgekd's own files are judged against this one (benchmarks/peers)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from edgekd.config import OptimumDynamicConfig
from edgekd.runtime.encoder import Example

from .stage import register


@register(OptimumDynamicConfig)
def quantize_optimum(source: Path, target: Path, cfg: OptimumDynamicConfig, calibration: list[Example], pad_id: int) -> dict[str, Any]:
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    preset = getattr(AutoQuantizationConfig, cfg.preset)
    config = preset(is_static=False, per_channel=cfg.per_channel)
    # ORTQuantizer reads a folder and writes <name>_quantized.onnx into another (beside it, in the writer's build
    # folder, so that a killed run leaves nothing behind that the next writer does not remove).
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        folder, out = Path(scratch) / "in", Path(scratch) / "out"
        folder.mkdir()
        (folder / "model.onnx").symlink_to(source.resolve())
        written = ORTQuantizer.from_pretrained(folder, file_name="model.onnx").quantize(config, out)
        shutil.move(str(written / "model_quantized.onnx"), target)
    return {
        "backend": "optimum.onnxruntime.ORTQuantizer", "preset": cfg.preset, "weights": "int8",
        "activations": "uint8, dynamic ranges", "per_channel": cfg.per_channel, "operators": list(config.operators_to_quantize),
    }
