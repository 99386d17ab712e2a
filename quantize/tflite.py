"""LiteRT quantization through ai-edge-quantizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekd.config import TfliteDynamicConfig
from edgekd.runtime.encoder import Example


def quantize_dynamic(source: Path, target: Path, cfg: TfliteDynamicConfig, calibration: list[Example], pad_id: int) -> dict[str, Any]:
    from ai_edge_quantizer import quantizer, recipe

    engine = quantizer.Quantizer(str(source))
    # INT8 weights of the fully-connected layers (per channel), float activations quantized on the fly.
    engine.load_quantization_recipe(recipe.dynamic_wi8_afp32())
    result = engine.quantize()
    target.write_bytes(bytes(result.quantized_model))
    return {"backend": "ai-edge-quantizer", "recipe": "dynamic_wi8_afp32", "weights": "int8", "activations": "float32, dynamic"}
