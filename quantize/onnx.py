"""ONNX Runtime quantization: dynamic INT8, static INT8 (QDQ, calibrated on real training text), FP16, weight-only INT4."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.config import OnnxDynamicConfig, OnnxFp16Config, OnnxInt4Config, OnnxStaticConfig
from edgekd.progress import Progress, bar
from edgekd.runtime.encoder import Example, collate, sequence_length

from .stage import register

logger = logging.getLogger(__name__)

# Quantize MatMuls only where B is a weight: the attention scores' activation-by-activation products stay float
# (quantizing them costs accuracy for little speed in models this size). ONNX shape inference cannot type the
# outputs of ONNX Runtime's fused operators (Attention, SkipLayerNormalization): they are float32 in our graphs.
_COMMON = {"MatMulConstBOnly": True, "DefaultTensorType": 1}  # onnx.TensorProto.FLOAT
# Static QDQ: the weight-bearing operators and the embedding lookup; LayerNorm, Softmax and GELU stay float.
_STATIC_OPS = ["MatMul", "Gemm", "Gather"]


@register(OnnxDynamicConfig)
def quantize_dynamic(source: Path, target: Path, cfg: OnnxDynamicConfig, calibration: list[Example], pad_id: int) -> dict[str, Any]:
    from onnxruntime.quantization import QuantType, quantize_dynamic as ort_quantize_dynamic

    if cfg.operators == "ort-defaults":
        # (DefaultTensorType only types the outputs of fused operators, which shape inference cannot: no other change.)
        ort_quantize_dynamic(source, target, per_channel=cfg.per_channel, reduce_range=cfg.reduce_range, weight_type=QuantType.QInt8,
                             extra_options={"DefaultTensorType": _COMMON["DefaultTensorType"]})
        return {"backend": "onnxruntime.quantization", "weights": "int8", "activations": "uint8, dynamic ranges",
                "operators": "quantize_dynamic's defaults (every operator it quantizes)"}
    shared_lstm = _shared_lstm_weights(source)
    # A sentence-pair BiLSTM runs both sentences through one LSTM's weights (two LSTM nodes); ONNX Runtime's
    # DynamicQuantizeLSTM then gets mis-shaped per-channel scales, so such LSTMs stay float (a small share of the
    # parameters: the embedding table dominates).
    ops = [op for op in ("MatMul", "Attention", "Gather", "EmbedLayerNormalization", "LSTM") if not (op == "LSTM" and shared_lstm)]
    ort_quantize_dynamic(
        source, target, op_types_to_quantize=ops, per_channel=cfg.per_channel, reduce_range=cfg.reduce_range,
        weight_type=QuantType.QInt8, extra_options=_COMMON,
    )
    return {
        "backend": "onnxruntime.quantization", "weights": "int8", "activations": "uint8, dynamic ranges", "operators": ops,
    }


def _shared_lstm_weights(path: Path) -> bool:
    """Whether two LSTM nodes read the same weight initializer."""
    import onnx

    readers: dict[str, int] = {}
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        if node.op_type == "LSTM":
            for name in node.input[1:3]:
                readers[name] = readers.get(name, 0) + 1
    return any(count > 1 for count in readers.values())


@register(OnnxStaticConfig)
def quantize_static(source: Path, target: Path, cfg: OnnxStaticConfig, calibration: list[Example], pad_id: int) -> dict[str, Any]:
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static as ort_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # MinMax takes one example per call unpadded (padded positions never widen a range). The histogram calibrators
    # (entropy, percentile) stack every call's activations into one array, so their inputs share one padded width.
    width = None if cfg.calibration == "minmax" else max(sequence_length(e) for e in calibration)

    class Reader(CalibrationDataReader):
        """One real example per call; only the inputs the graph takes (a single-sentence BERT has no token_type_ids)."""

        def __init__(self, names: set[str], shown: Progress) -> None:
            self.examples, self.names, self.shown = iter(calibration), names, shown

        def get_next(self) -> dict[str, Any] | None:
            example = next(self.examples, None)
            if example is None:
                return None
            self.shown.update(1)
            return {k: v for k, v in collate([example], pad_id, width=width).items() if k in self.names}

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}
    activation = QuantType.QInt8 if cfg.activations == "int8" else QuantType.QUInt8
    # `target.parent` is the BundleWriter's build folder: ONNX Runtime's own temporary folders (`pre.quant.*` from
    # pre-processing, `ort.quant.*` with the augmented calibration model, 79 MB for a MiniLM) go there too, so a killed
    # quantization leaves them where the next writer to this output removes them, not in /tmp for ever.
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch, _temporary_files_in(Path(scratch)), \
            bar(len(calibration), "quantize: calibration", unit="ex") as shown:
        prepared = Path(scratch) / "prepared.onnx"
        # Shape inference and graph clean-up before calibration, as ONNX Runtime recommends for static quantization.
        # Static quantization takes unfused graphs only (the stage refuses fused ones), where ONNX's own shape
        # inference suffices; ONNX Runtime's symbolic one gives up on the attention mask's Min(512, sequence)
        # broadcast, and on giving up it dumps sym_shape_infer_temp.onnx and its weights into the working directory.
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        ort_static(
            prepared,
            target,
            Reader(_input_names(prepared), shown),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=_STATIC_OPS,
            per_channel=cfg.per_channel,
            reduce_range=cfg.reduce_range,
            activation_type=activation,
            weight_type=QuantType.QInt8,
            calibrate_method=methods[cfg.calibration],
            extra_options={
                **_COMMON,
                "ActivationSymmetric": cfg.activations == "int8",
                "WeightSymmetric": True,
                "CalibPercentile": cfg.percentile,
                "CalibTensorRangeSymmetric": False,
            },
        )
    return {
        "backend": "onnxruntime.quantization",
        "format": "QDQ",
        "weights": "int8",
        "activations": cfg.activations,
        "calibration": cfg.calibration,
        "calibration_examples": len(calibration),
        "operators": _STATIC_OPS,
    }


@contextmanager
def _temporary_files_in(folder: Path) -> Iterator[None]:
    """Point `tempfile`'s default folder at `folder` for the block: onnxruntime.quantization makes its temporary
    folders there and offers no argument to choose (process-wide: a stage runs one quantization at a time)."""
    previous = tempfile.tempdir
    tempfile.tempdir = str(folder)
    try:
        yield
    finally:
        tempfile.tempdir = previous


def _input_names(path: Path) -> set[str]:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    return {i.name for i in graph.input if i.name not in initializers}


@register(OnnxFp16Config)
def quantize_fp16(source: Path, target: Path, cfg: OnnxFp16Config, calibration: list[Example], pad_id: int) -> dict[str, Any]:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(model, str(target))
    return {"backend": "onnxruntime.transformers.float16", "weights": "float16", "compute": "float16 where the runtime has kernels"}


@register(OnnxInt4Config)
def quantize_int4(source: Path, target: Path, cfg: OnnxInt4Config, calibration: list[Example], pad_id: int) -> dict[str, Any]:
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    ops = ("MatMul", "Gather") if cfg.embeddings else ("MatMul",)
    # Symmetric blocks along the input dimension of MatMul weights and along the hidden dimension of embedding rows.
    quantizer = MatMulNBitsQuantizer(
        onnx.load(str(source)), bits=4, block_size=cfg.block_size, is_symmetric=True, op_types_to_quantize=ops,
        quant_axes=(("MatMul", 0), ("Gather", 1)),
    )
    # An all-zero block (the [PAD] embedding row) has scale 0: its codes come from 0/0, harmless since they are
    # multiplied by that zero scale again; numpy's warning about it is noise.
    with np.errstate(invalid="ignore"):
        quantizer.process()
    quantizer.model.save_model_to_file(str(target), use_external_data_format=False)
    return {
        "backend": "onnxruntime.quantization.matmul_nbits_quantizer", "weights": "int4 (symmetric blocks)", "block_size": cfg.block_size,
        "operators": list(ops), "activations": "float32",
    }
