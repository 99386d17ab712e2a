"""What a model file costs on a device: bytes, gzip bytes (an app download), parameters and non-zero parameters.

Parameters are the elements of the file's constant tensors (ONNX initializers, TFLite buffers; a buffer shared by
several TFLite signatures counts once; an ExecuTorch program's counts are stored in it by its exporter); 4-bit weights packed two to a byte count one per byte. Non-zero counts stored values: for a quantized tensor that is the non-zero
integer codes, which equals the non-zero weights when the zero point is 0 (symmetric INT8 weights).
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.errors import BundleError
from edgekd.logs import native_stderr_filtered

# The constant methods in which edgekd's ExecuTorch export stores the program's weight counts.
PARAMETERS_METHOD, NONZERO_METHOD = "edgekd_parameters", "edgekd_nonzero_parameters"
# TFLite TensorType codes (schema.fbs) and their numpy types.
_TFLITE_TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 6: np.bool_, 7: np.int16, 9: np.int8, 10: np.float64}


def footprint(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    counters = {".onnx": lambda: _onnx_counts(path), ".tflite": lambda: _tflite_counts(data, path),
                ".safetensors": lambda: _safetensors_counts(path), ".pte": lambda: _pte_counts(path)}
    if path.suffix not in counters:
        raise BundleError(f"{path}: not a model file edgekd measures (.onnx, .tflite, .pte or .safetensors)")
    counts = counters[path.suffix]()
    parameters, nonzero = counts
    return {
        "file": path.name,
        "bytes": len(data),
        "gzip_bytes": len(gzip.compress(data, compresslevel=6)),
        "parameters": parameters,
        "nonzero_parameters": nonzero,
    }


def _pte_counts(path: Path) -> tuple[int, int]:
    """An ExecuTorch program's counts, as its exporter stored them (constant methods; see `export/executorch.py`)."""
    from executorch.runtime import Runtime

    try:
        with native_stderr_filtered():
            program = Runtime.get().load_program(path)
            return tuple(int(program.load_method(name).execute([])[0]) for name in (PARAMETERS_METHOD, NONZERO_METHOD))  # type: ignore[return-value]
    except (RuntimeError, ValueError) as exc:
        raise BundleError(f"{path}: not an ExecuTorch program edgekd exported (no {PARAMETERS_METHOD} method: {exc})") from None


def _safetensors_counts(path: Path) -> tuple[int, int]:
    from safetensors.numpy import load_file

    tensors = load_file(str(path))
    return sum(t.size for t in tensors.values()), sum(int(np.count_nonzero(t)) for t in tensors.values())


def _onnx_counts(path: Path) -> tuple[int, int]:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    total = nonzero = 0
    for tensor in model.graph.initializer:
        values = numpy_helper.to_array(tensor)
        total += values.size
        nonzero += int(np.count_nonzero(values))
    return total, nonzero


def _tflite_counts(data: bytes, path: Path) -> tuple[int, int]:
    from ai_edge_litert import schema_py_generated as schema

    try:
        model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(bytearray(data), 0))
    except Exception as exc:  # a damaged flatbuffer fails anywhere inside the generated parser
        raise BundleError(f"{path}: not a readable TFLite flatbuffer ({exc})") from None
    seen: set[int] = set()
    total = nonzero = 0
    for subgraph in model.subgraphs or []:
        for tensor in subgraph.tensors or []:
            buffer = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers or []) else None
            if tensor.buffer in seen or buffer is None:
                continue
            if buffer.data is not None and len(buffer.data):
                raw = np.asarray(buffer.data, dtype=np.uint8).tobytes()
            elif (buffer.offset or 0) > 1 and (buffer.size or 0) > 0:
                # Large constants may live after the flatbuffer, addressed by offset and size (ai-edge-quantizer).
                raw = data[buffer.offset : buffer.offset + buffer.size]
            else:
                continue
            seen.add(tensor.buffer)
            dtype = _TFLITE_TYPES.get(tensor.type)
            values = np.frombuffer(raw, dtype=dtype) if dtype is not None else np.frombuffer(raw, dtype=np.uint8)
            total += values.size
            nonzero += int(np.count_nonzero(values))
    return total, nonzero
