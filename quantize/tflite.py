"""LiteRT quantization through ai-edge-quantizer: dynamic INT8, static INT8 (calibrated on real training text), FP16."""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from edgekd import progress
from edgekd.config import TfliteDynamicConfig, TfliteFp16Config, TfliteInt8Config
from edgekd.errors import DataError
from edgekd.logs import native_stderr_filtered, root_filter
from edgekd.runtime.backends import BUCKET_SIGNATURE
from edgekd.runtime.encoder import Example, collate, sequence_length

from .stage import register


@contextmanager
def _their_bars() -> Iterator[None]:
    """ai-edge-quantizer's own tqdm bars (calibration, parameters, transformations): shown where edgekd's bars are (a
    terminal); elsewhere each redraw would be one more line of a CI log. Not every step passes the quantizer's
    `enable_progress_bar` on, so its ProgressBar is made with enable=False in the block."""
    from ai_edge_quantizer.utils import progress_utils

    if progress.bars_shown():
        yield
        return
    original = progress_utils.ProgressBar

    def off(*args: Any, **kwargs: Any) -> Any:
        return original(*args, **{**kwargs, "enable": False})

    progress_utils.ProgressBar = off
    try:
        yield
    finally:
        progress_utils.ProgressBar = original


def _same_weights_rewritten(record: logging.LogRecord) -> bool:
    """ai-edge-quantizer's warning, once per weight, that the seq<N> signatures' shared weight buffer is written again.

    Each signature quantizes the same weights to the same values (the quantizer duplicates a buffer whose tensors get
    different parameters, such as INT8 biases scaled by each signature's input range), so nothing is lost.
    """
    return "is overriding other previously quantized data" in record.getMessage()


@register(TfliteDynamicConfig)
def quantize_dynamic(source: Path, target: Path, cfg: TfliteDynamicConfig, calibration: list[Example], pad_id: int) -> dict[str, Any]:
    from ai_edge_quantizer import quantizer, recipe

    engine = quantizer.Quantizer(str(source))
    # INT8 weights of the fully-connected layers (per channel), float activations quantized on the fly.
    engine.load_quantization_recipe(recipe.dynamic_wi8_afp32())
    with root_filter(_same_weights_rewritten), _their_bars():
        result = engine.quantize(enable_progress_report=False)
    target.write_bytes(bytes(result.quantized_model))
    return {"backend": "ai-edge-quantizer", "recipe": "dynamic_wi8_afp32", "weights": "int8", "activations": "float32, dynamic"}


@register(TfliteInt8Config)
def quantize_int8(source: Path, target: Path, cfg: TfliteInt8Config, calibration: list[Example], pad_id: int) -> dict[str, Any]:
    from ai_edge_quantizer import calibrator as aeq_calibrator, qtyping, quantizer, recipe, recipe_manager
    from ai_edge_quantizer.algorithm_manager import AlgorithmName
    from ai_edge_quantizer.utils import qsv_utils

    ops = qtyping.TFLOperationName
    engine = quantizer.Quantizer(str(source))
    # INT8 weights (per channel) and INT8 activations (per tensor) of every operator the static recipe supports.
    engine.load_quantization_recipe(recipe.static_wi8_ai8())
    # The static recipe leaves the embedding lookup float (most of a small BERT's bytes); LiteRT's hybrid lookup reads
    # an INT8 table (per row) and gives float rows, which the next operator quantizes. The token inputs stay int32.
    engine.add_dynamic_config(regex=".*", operation_name=ops.EMBEDDING_LOOKUP, num_bits=8)
    # The logits stay float32 (a DEQUANTIZE after the INT8 classifier): the runtime reads float logits.
    engine.update_quantization_recipe(regex=".*", operation_name=ops.OUTPUT, algorithm_key=AlgorithmName.NO_QUANTIZE)
    kept_float = _beyond_calibration_range(source)
    for scope in kept_float:
        engine.update_quantization_recipe(regex=f"^{re.escape(scope)}$", operation_name=ops.ALL_SUPPORTED, algorithm_key=AlgorithmName.NO_QUANTIZE)
    data = representative_data(source, calibration, pad_id)
    ranges_recipe = recipe_manager.RecipeManager()
    ranges_recipe.load_quantization_recipe(engine.get_quantization_recipe())
    with warnings.catch_warnings(), root_filter(_same_weights_rewritten), _their_bars():
        # Calibration, and the quantizer's check of its ranges, run an interpreter that keeps every intermediate
        # tensor: what they need, not the debugging the interpreter warns of.
        warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors", category=UserWarning)
        # Quantizer.calibrate keeps a moving average (0.95) of each tensor's min and max over the examples, which
        # shrinks a range only some examples reach: the BiLSTM's step mask (1 while the step is inside the sentence)
        # came out [0, 0.9], so every state update was scaled wrong (SQNR 2 dB). This keeps the true min and max.
        # One thread: calibration runs the float model once per example, and edgekd runs on small shared machines.
        calibrator = aeq_calibrator.Calibrator(source.read_bytes(), num_threads=1, qsv_update_func=qsv_utils.min_max_update)
        calibrator.calibrate(data, ranges_recipe)
        result = engine.quantize(calibrator.get_model_qsvs(), enable_progress_report=False)
    target.write_bytes(bytes(result.quantized_model))
    return {
        "backend": "ai-edge-quantizer", "recipe": "static_wi8_ai8", "weights": "int8", "activations": "int8, static ranges",
        "embedding": "int8 table, float rows", "outputs": "float32", "float_operators": len(kept_float),
        "calibration_examples": {name: len(feeds) for name, feeds in data.items()},
    }


def _beyond_calibration_range(source: Path) -> list[str]:
    """Recipe scopes (an operator's `;`-joined output tensor names) of the operators that read a float constant of
    magnitude >= 3e38, and of those that read their outputs: static INT8 leaves them float.

    Such a constant is the attention mask's float32-min bias. ai-edge-quantizer's min/max calibration drops values
    outside (-3e38, 3e38), so the mask's range comes out [0, 0], the quantized mask is 0 and padding is attended to
    (TinyBERT on SST-2: SQNR 8 dB). Kept float, the masked scores clamp to the bottom of the softmax input's range.
    """
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils

    model = tfl_flatbuffer_utils.read_model(str(source))
    scopes: list[str] = []
    for graph in model.subgraphs:
        huge: set[int] = set()  # outputs of the operators reading such a constant
        for op in graph.operators:
            for index in op.inputs:
                tensor = graph.tensors[index] if index >= 0 else None
                data = tfl_flatbuffer_utils.get_tensor_data(tensor, model.buffers) if tensor is not None and tensor.buffer else None
                if data is not None and data.dtype == np.float32 and data.size and np.abs(data).max() >= 3e38:
                    huge.update(op.outputs)
        scopes += [tfl_flatbuffer_utils.get_op_scope(op, graph.tensors) for op in graph.operators if huge & (set(op.outputs) | set(op.inputs))]
    return scopes


def representative_data(source: Path, calibration: list[Example], pad_id: int) -> dict[str, list[dict[str, np.ndarray]]]:
    """Calibration feeds per seq<N> signature: every example that fits in N tokens, padded to N (as the runtime pads
    to its bucket) and cast to the signature's input types.

    A large bucket also sees the short examples: real text rarely reaches it (a few of 128 SST-2 examples reach seq64),
    and with the padded short ones its SQNR rose from 29.9 to 32.8 dB.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(source))
    # The first interpreter of the process to allocate creates LiteRT's XNNPACK delegate and announces it from C++ on
    # stderr; calibration's interpreters would print that line: it is printed (and filtered out) here instead.
    with native_stderr_filtered():
        interpreter.allocate_tensors()
    lengths = [sequence_length(e) for e in calibration]
    data: dict[str, list[dict[str, np.ndarray]]] = {}
    for name in interpreter.get_signature_list():
        match = BUCKET_SIGNATURE.match(name)
        if not match:
            continue
        size = int(match.group(1))
        fitting = [e for e, length in zip(calibration, lengths) if length <= size]
        if not fitting:
            raise DataError(
                f"{source}: no calibration example fits the {size}-token signature {name!r} (the shortest has {min(lengths)} "
                "tokens); raise samples, or export without that bucket"
            )
        dtypes = {n: d["dtype"] for n, d in interpreter.get_signature_runner(name).get_input_details().items()}
        feeds = [collate([example], pad_id, width=size) for example in fitting]
        data[name] = [{n: f[n].astype(dtypes[n]) for n in dtypes} for f in feeds]
    return data


@register(TfliteFp16Config)
def quantize_fp16(source: Path, target: Path, cfg: TfliteFp16Config, calibration: list[Example], pad_id: int) -> dict[str, Any]:
    from ai_edge_quantizer import qtyping, quantizer
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    engine = quantizer.Quantizer(str(source))
    # ai-edge-quantizer has no FP16 recipe: float casting stores the weights of the operators it supports (fully
    # connected, convolutions, embedding lookup) as float16, each read through a DEQUANTIZE to float32: half the file,
    # float32 compute (the interpreter holds float32 copies of the weights).
    engine.add_weight_only_config(
        regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, num_bits=16, algorithm_key=AlgorithmName.FLOAT_CASTING,
    )
    with root_filter(_same_weights_rewritten), _their_bars():
        result = engine.quantize(enable_progress_report=False)
    target.write_bytes(bytes(result.quantized_model))
    return {"backend": "ai-edge-quantizer", "recipe": "float_casting", "weights": "float16", "compute": "float32"}
