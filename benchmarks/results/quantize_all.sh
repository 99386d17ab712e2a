#!/usr/bin/env bash
# Quantize and prune the SST-2 exports of export_all.sh; each output is evaluated on the whole dev set (872).
# Run from the repository root after train_all.sh and export_all.sh. About 25 min on 2 cores (the recovery
# distillation is most of it).
set -eu
E=.venv/bin/edgekd
D=data.path=../shared/data/sst2
R=runs/sst2-export
q() { $E quantize "$@" --force $D; }
q $R/tinybert-onnx --preset x86-vnni -o $R/tinybert-onnx-dynamic
q $R/tinybert-onnx-fused --preset x86-vnni -o $R/tinybert-onnx-fused-dynamic
for c in minmax entropy percentile; do q $R/tinybert-onnx --method onnx-static --calibration $c -o $R/tinybert-onnx-static-$c; done
q $R/tinybert-onnx --method onnx-fp16 -o $R/tinybert-onnx-fp16
q $R/tinybert-onnx --method onnx-int4 -o $R/tinybert-onnx-int4
for m in dynamic int8 fp16; do q $R/tinybert-tflite --method tflite-$m -o $R/tinybert-tflite-$m; done
q $R/bilstm-onnx --preset x86-vnni -o $R/bilstm-onnx-dynamic
q $R/bilstm-onnx --method onnx-static -o $R/bilstm-onnx-static-minmax
for m in dynamic int8 fp16; do q $R/bilstm-tflite --method tflite-$m -o $R/bilstm-tflite-$m; done
q runs/sst2/tinybert --method inc -o $R/tinybert-inc
q runs/sst2/bilstm --method inc -o $R/bilstm-inc
# Vocabulary pruning, then export and static INT8; min count trades size for [UNK]s.
for n in 1 20 100; do
  $E prune runs/sst2/tinybert --method vocab --min-count $n -o $R/tinybert-vocab$n --force $D
  $E -q export $R/tinybert-vocab$n --to onnx -o $R/tinybert-vocab$n-onnx --force $D
  q $R/tinybert-vocab$n-onnx --method onnx-static -o $R/tinybert-vocab$n-onnx-static
done
q $R/tinybert-vocab1-onnx --method onnx-int4 -o $R/tinybert-vocab1-onnx-int4
# 40% of heads and FFN neurons removed, a one-epoch prediction-layer distillation from the teacher to recover.
$E prune runs/sst2/tinybert --method structured --heads 0.4 --ffn 0.4 -o $R/tinybert-pruned --force $D
$E distill sst2-tinybert $D --student tinybert -o $R/tinybert-pruned-rec --force "students.tinybert.student.init=$R/tinybert-pruned" \
  "students.tinybert.stages=[{kind: prediction, train: {epochs: 1, learning_rate: 5.0e-5, batch_size: 32, eval_every: 700, keep_best: true}}]"
$E -q export $R/tinybert-pruned-rec --to onnx -o $R/tinybert-pruned-rec-onnx --parity-samples all --force $D
# Latency: benchmarks/results/bench_all.sh (edgekd bench).
