#!/usr/bin/env bash
# Export the SST-2 students of train_all.sh (and the teacher) to ONNX and TFLite, each compared with its PyTorch
# parent on the whole dev set (872 sentences). Run from the repository root after train_all.sh. About 5 min on 2 cores.
set -eu
E=".venv/bin/edgekd -q export"
D="data.path=../shared/data/sst2 --parity-samples all --force"
mkdir -p runs/sst2-export
for m in teacher tinybert bilstm; do $E runs/sst2/$m --to onnx -o runs/sst2-export/$m-onnx $D; done
for m in teacher tinybert; do $E runs/sst2/$m --to onnx --fuse -o runs/sst2-export/$m-onnx-fused $D; done
for m in tinybert bilstm; do $E runs/sst2/$m --to tflite -o runs/sst2-export/$m-tflite $D; done
