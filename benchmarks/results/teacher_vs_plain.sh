#!/usr/bin/env bash
# Issue 22: the shipped teacher recipe against a plain fine-tuning loop (plain_teacher.py), 3 seeds each, SST-2 dev
# reported once per model (the recipe chooses nothing on dev: its evaluations during training are on the selection
# split). Writes JSON lines to $OUT (default /tmp/teacher-vs-plain).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/teacher-vs-plain}
DATA=${DATA:-../shared/data}
BIN=${BIN:-.venv/bin}
mkdir -p "$OUT"
"$BIN/python" benchmarks/results/plain_teacher.py sst2 "$DATA/sst2" --seeds 0 1 2 --epochs 1 --max-length 64 >> "$OUT/plain-sst2.jsonl"
for seed in 0 1 2; do
  "$BIN/edgekd" -q teacher sst2 data.path="$DATA/sst2" seed=$seed teacher.train.epochs=1 teacher.cache_logits=false \
    -o "$OUT/sst2-recipe-seed$seed" --force
done
# MRPC: the plain loop with the mrpc recipe's schedule (5 epochs, max length 128, 10% warm-up), against the recipe.
"$BIN/python" benchmarks/results/plain_teacher.py mrpc "$DATA/mrpc" --seeds 0 1 2 --epochs 5 --max-length 128 --warmup 0.1 \
  >> "$OUT/plain-mrpc.jsonl"
# The recipe's own seed 42 and the next two (seed 42's teacher is the one runs/mrpc/teacher holds for the students).
for seed in 42 43 44; do
  "$BIN/edgekd" -q teacher mrpc data.path="$DATA/mrpc" seed=$seed teacher.cache_logits=false -o "$OUT/mrpc-recipe-seed$seed" --force
done
# Each arm's mean ± sd (stderr) and the recipe runs' JSON lines (stdout).
"$BIN/python" benchmarks/results/teacher_vs_plain_table.py "$OUT" > "$OUT/recipe.jsonl"
