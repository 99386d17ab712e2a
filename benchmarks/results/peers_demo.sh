#!/usr/bin/env bash
# Issue 23: the demo's students (runs/demo, from `make demo`) against what a user gets from Optimum and from ONNX
# Runtime's plain quantize_dynamic, side by side in one child (edgekd/peers.py), with the ONNX INT8 variants edgekd
# can make. Candidates go to runs/peers-demo/cand, the reports to runs/peers-demo/{tinybert,bilstm}; run on a quiet
# machine. Copy each folder's peers.json and peers.md to benchmarks/results/peers-demo/<folder>.{json,md} afterwards.
set -euo pipefail
cd "$(dirname "$0")/../.."
E=${E:-.venv/bin/edgekd}; P=${P:-.venv/bin/python}; D=runs/demo; C=runs/peers-demo/cand
mkdir -p $C
q() { local out=$1; shift; test -e "$C/$out" || $E -q quantize "$@" -o "$C/$out"; }
test -e $C/tinybert-onnx-fused || $E -q export $D/tinybert --to onnx --fuse -o $C/tinybert-onnx-fused
q tinybert-static-minmax $D/tinybert-onnx --method onnx-static --calibration minmax --samples 128   # the demo's INT8 before
q tinybert-dynamic-per-channel $D/tinybert-onnx --method onnx-dynamic                               # the x86-vnni preset
q tinybert-dynamic-per-tensor $D/tinybert-onnx --method onnx-dynamic --per-tensor                   # the demo's INT8 now
q tinybert-fused-dynamic-per-tensor $C/tinybert-onnx-fused --method onnx-dynamic --per-tensor
q tinybert-int4 $D/tinybert-onnx --method onnx-int4
test -e $C/tinybert-tflite-b16 || $E -q export $D/tinybert --to tflite --buckets 16,32,64 -o $C/tinybert-tflite-b16
q tinybert-tflite-b16-dynamic $C/tinybert-tflite-b16 --method tflite-dynamic
q tinybert-tflite-b16-int8 $C/tinybert-tflite-b16 --method tflite-int8    # full integer, through XNNPACK
q bilstm-dynamic-per-channel $D/bilstm-onnx --method onnx-dynamic
q bilstm-dynamic-per-tensor $D/bilstm-onnx --method onnx-dynamic --per-tensor
$P -m edgekd.peers $D/tinybert-onnx -o runs/peers-demo/tinybert --rounds 200 \
  --with $C/tinybert-static-minmax --with $C/tinybert-dynamic-per-channel --with $C/tinybert-dynamic-per-tensor \
  --with $C/tinybert-onnx-fused --with $C/tinybert-fused-dynamic-per-tensor --with $C/tinybert-int4 --with $D/tinybert-tflite-int8
$P -m edgekd.peers $D/bilstm-onnx -o runs/peers-demo/bilstm --rounds 200 \
  --with $C/bilstm-dynamic-per-channel --with $C/bilstm-dynamic-per-tensor
$P -m edgekd.peers $D/tinybert-onnx -o runs/peers-demo/tflite --rounds 100 --lengths 16 32 64 \
  --with $C/tinybert-dynamic-per-tensor --with $D/tinybert-tflite-int8 --with $C/tinybert-tflite-b16-dynamic --with $C/tinybert-tflite-b16-int8
# The BERT-base shape (built by `edgekd bench --reference bert-base-shape`, cached in ~/.cache/edgekd) beside the best files.
B=$($P -c "from pathlib import Path; from edgekd.bundle import Bundle; from edgekd.benchmarks.reference import bert_base_shape; print(bert_base_shape(Bundle.open(Path('$D/tinybert-onnx'))).path)")
ln -sfn "$B" $C/bert-base-shape
$P -m edgekd.peers $D/tinybert-onnx -o runs/peers-demo/vs-bert-base --rounds 60 --with $C/bert-base-shape \
  --with $C/tinybert-dynamic-per-tensor --with $C/tinybert-tflite-b16-dynamic
