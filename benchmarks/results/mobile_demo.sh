#!/usr/bin/env bash
# Issue 24: the demo's students (runs/demo, from `make demo`) as ExecuTorch programs (TinyBERT FP32, INT8 static and
# dynamic; the BiLSTM FP32 only: its unrolled recurrence took 10 min to lower in FP32 and over 20 in INT8)
# beside the demo's ONNX and TFLite files: `edgekd bench` (model-only and end-to-end p50, memory, dev accuracy through
# each runtime) and, for TinyBERT, the side-by-side child of edgekd.peers at lengths 16/32/64 against the FP32 ONNX file.
# Run on a quiet machine; copy runs/mobile-demo/{bench,tinybert} into benchmarks/results/mobile-demo/ afterwards.
set -euo pipefail
cd "$(dirname "$0")/../.."
E=${E:-.venv/bin/edgekd}; P=${P:-.venv/bin/python}; D=runs/demo
x() { local out=$1; shift; test -e "$D/$out" || $E -q export "$@" --to executorch -o "$D/$out"; }
x tinybert-executorch $D/tinybert
x tinybert-executorch-int8 $D/tinybert --int8 static
x tinybert-executorch-int8-dynamic $D/tinybert --int8 dynamic
x bilstm-executorch $D/bilstm
$E -q bench $D/tinybert-onnx $D/tinybert-int8 $D/tinybert-tflite $D/tinybert-tflite-int8 \
  $D/tinybert-executorch $D/tinybert-executorch-int8 $D/tinybert-executorch-int8-dynamic \
  $D/bilstm-onnx $D/bilstm-int8 $D/bilstm-executorch \
  --teacher $D/teacher -o runs/mobile-demo/bench || true   # exit 1 is a budget's business, not this page's
$P -m edgekd.peers $D/tinybert-onnx -o runs/mobile-demo/tinybert --rounds 100 --lengths 16 32 64 \
  --with $D/tinybert-int8 --with $D/tinybert-tflite-int8 --with $D/tinybert-executorch \
  --with $D/tinybert-executorch-int8 --with $D/tinybert-executorch-int8-dynamic
