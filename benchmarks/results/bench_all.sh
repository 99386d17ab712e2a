#!/usr/bin/env bash
# The SST-2 benchmark reports of this folder, on a quiet machine (nothing else running), 1 thread, batch 1.
# Run from the repository root after train_all.sh, export_all.sh and quantize_all.sh. About 15 min on 2 cores.
set -eu
E=.venv/bin/edgekd
R=runs/sst2-export
B="$R/teacher-onnx $R/tinybert-onnx $R/tinybert-onnx-static-minmax $R/tinybert-vocab1-onnx-int4 $R/tinybert-pruned-rec-onnx
   $R/tinybert-tflite $R/tinybert-tflite-dynamic $R/bilstm-onnx $R/bilstm-onnx-dynamic $R/bilstm-tflite-dynamic"
$E bench $B --reference bert-base-shape --teacher runs/sst2/teacher -o benchmarks/results/sst2-bench data.path=../shared/data/sst2
$E bench $B --reference $R/teacher-onnx --teacher runs/sst2/teacher -o benchmarks/results/sst2-bench-vs-teacher data.path=../shared/data/sst2
# The gate on its own report, with the example budget's shape.
$E gate benchmarks/results/sst2-bench-vs-teacher/report.json --budget benchmarks/results/sst2-budget.yaml \
  --junit benchmarks/results/sst2-bench-vs-teacher/gate.xml --summary benchmarks/results/sst2-bench-vs-teacher/gate.md || true
# How far the gate can be trusted here, and what the harness itself costs.
python=.venv/bin/python
$python -m edgekd.benchmarks.gate_trust $R/tinybert-pruned-rec-onnx $R/tinybert-onnx --trials 20 data.path=../shared/data/sst2 \
  > benchmarks/results/gate_trust.json
for b in $R/tinybert-onnx-static-minmax $R/teacher-onnx; do
  $python -m edgekd.benchmarks.harness_overhead $b data.path=../shared/data/sst2
done > benchmarks/results/harness_overhead.json
