#!/usr/bin/env bash
# Reproduce the training results of this folder, one run after another (each alone on the machine's cores).
# Run from the repository root after `make setup`, with ../shared/data beside the checkout. About 2 h on 2 cores.
# Logs go to runs/<name>.log, wall times to runs/train_all.times.
set -u
E=.venv/bin/edgekd
mkdir -p runs
t() { local name=$1; shift; local start; start=$(date +%s); "$@" > "runs/$name.log" 2>&1; echo "$name rc=$? seconds=$(( $(date +%s) - start ))" >> runs/train_all.times; }
t sst2-teacher $E teacher sst2 data.path=../shared/data/sst2
t sst2-tinybert $E distill sst2-tinybert data.path=../shared/data/sst2 --student tinybert
t sst2-bilstm $E distill sst2-bilstm data.path=../shared/data/sst2 --student bilstm --student bilstm-hard
t mrpc-teacher $E teacher mrpc data.path=../shared/data/mrpc
t mrpc-bilstm $E distill mrpc-bilstm data.path=../shared/data/mrpc --student bilstm
t mrpc-tinybert $E distill mrpc-tinybert data.path=../shared/data/mrpc --student tinybert
