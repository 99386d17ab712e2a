"""LiteRT quantization through ai-edge-quantizer: dynamic INT8, static INT8 (calibrated on real training text), FP16."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.config import TfliteDynamicConfig, TfliteFp16Config, TfliteInt8Config
from edgekd.errors import DataError
from edgekd.runtime.backends import BUCKET_SIGNATURE
from edgekd.runtime.encoder import Example, collate, sequence_length

logger = logging.getLogger(__name__)

# Fewest calibration examples per sequence bucket: a bucket that real text rarely reaches still gets ranges.
MIN_PER_BUCKET = 8


def quantize_dynamic(source: Path, target: Path, cfg: TfliteDynamicConfig, calibration: list[Example], pad_id: int) -> dict[str, Any]:
    from ai_edge_quantizer import quantizer, recipe

    engine = quantizer.Quantizer(str(source))
    # INT8 weights of the fully-connected layers (per channel), float activations quantized on the fly.
    engine.load_quantization_recipe(recipe.dynamic_wi8_afp32())
    result = engine.quantize()
    target.write_bytes(bytes(result.quantized_model))
    return {"backend": "ai-edge-quantizer", "recipe": "dynamic_wi8_afp32", "weights": "int8", "activations": "float32, dynamic"}


def quantize_int8(source: Path, target: Path, cfg: TfliteInt8Config, calibration: list[Example], pad_id: int) -> dict[str, Any]:
    from ai_edge_quantizer import qtyping, quantizer, recipe
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    engine = quantizer.Quantizer(str(source))
    # INT8 weights (per channel) and INT8 activations of every operator the quantizer supports. The token inputs stay
    # int32 (the embedding lookup stays float; its output is quantized).
    engine.load_quantization_recipe(recipe.static_wi8_ai8())
    kept_float = _float_scopes(source)
    for scope in kept_float:
        engine.update_quantization_recipe(
            regex=f"^{re.escape(scope)}$", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, algorithm_key=AlgorithmName.NO_QUANTIZE,
        )
    data = representative_data(source, calibration, pad_id)
    # One thread: calibration runs the float model once per example, and edgekd runs on small shared machines.
    ranges = engine.calibrate(data, num_threads=1)
    result = engine.quantize(ranges)
    target.write_bytes(bytes(result.quantized_model))
    return {
        "backend": "ai-edge-quantizer", "recipe": "static_wi8_ai8", "weights": "int8", "activations": "int8, static ranges",
        "calibration_examples": {name: len(feeds) for name, feeds in data.items()}, "float_operators": len(kept_float),
    }


def _float_scopes(source: Path) -> list[str]:
    """Recipe scopes (an operator's `;`-joined output tensor names) of the operators static INT8 must leave float.

    - Those producing a signature's outputs: the quantizer would make the logits int8, and the runtime reads float
      logits; the classifier is a few hundred weights.
    - Those reading a constant beyond the calibrator's range (|x| >= 3e38, e.g. the attention mask's float32-min
      bias) and their consumers: the calibrator drops such values, so the mask's range comes out [0, 0] and padding
      would not be masked. Kept float, the masked scores clamp to the bottom of the next quantized range instead.
    """
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils

    model = tfl_flatbuffer_utils.read_model(str(source))
    scopes: list[str] = []
    for graph in model.subgraphs:
        huge: set[int] = set()  # outputs of the operators reading a constant beyond the calibrator's range
        for op in graph.operators:
            for index in op.inputs:
                tensor = graph.tensors[index] if index >= 0 else None
                data = tfl_flatbuffer_utils.get_tensor_data(tensor, model.buffers) if tensor is not None and tensor.buffer else None
                if data is not None and data.dtype == np.float32 and data.size and np.abs(data).max() >= 3e38:
                    huge.update(op.outputs)
        for op in graph.operators:
            if set(op.outputs) & (set(graph.outputs) | huge) or set(op.inputs) & huge:
                scopes.append(tfl_flatbuffer_utils.get_op_scope(op, graph.tensors))
    return scopes


def representative_data(source: Path, calibration: list[Example], pad_id: int) -> dict[str, list[dict[str, np.ndarray]]]:
    """Calibration feeds per seq<N> signature: each example in the bucket the runtime would run it in, padded to N and
    cast to the signature's input types; a bucket real text rarely reaches is topped up with its longest shorter ones."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(source))
    lengths = np.asarray([sequence_length(e) for e in calibration])
    buckets = sorted((int(m.group(1)), name) for name in interpreter.get_signature_list() if (m := BUCKET_SIGNATURE.match(name)))
    data: dict[str, list[dict[str, np.ndarray]]] = {}
    floor = 0
    for size, name in buckets:
        picks = [i for i in np.argsort(-lengths, kind="stable") if lengths[i] <= size]
        if not picks:
            raise DataError(
                f"{source}: no calibration example fits the {size}-token bucket {name!r} (the shortest has {lengths.min()} "
                "tokens); raise samples, or export without that bucket"
            )
        own = [i for i in picks if lengths[i] > floor]
        chosen = own if len(own) >= MIN_PER_BUCKET else picks[: max(MIN_PER_BUCKET, len(own))]
        dtypes = {n: d["dtype"] for n, d in interpreter.get_signature_runner(name).get_input_details().items()}
        feeds = [collate([calibration[i]], pad_id, width=size) for i in chosen]
        data[name] = [{n: f[n].astype(dtypes[n]) for n in dtypes} for f in feeds]
        floor = size
    return data


def quantize_fp16(source: Path, target: Path, cfg: TfliteFp16Config, calibration: list[Example], pad_id: int) -> dict[str, Any]:
    from ai_edge_quantizer import qtyping, quantizer
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    engine = quantizer.Quantizer(str(source))
    # ai-edge-quantizer has no FP16 recipe: float casting stores the weights of the operators it supports (fully
    # connected, convolutions, embedding lookup) as float16, each read through a DEQUANTIZE to float32.
    engine.add_weight_only_config(
        regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, num_bits=16, algorithm_key=AlgorithmName.FLOAT_CASTING,
    )
    result = engine.quantize()
    target.write_bytes(bytes(result.quantized_model))
    return {"backend": "ai-edge-quantizer", "recipe": "float_casting", "weights": "float16", "compute": "float32"}
