#!/usr/bin/env bash
# The README's results table: the shipped student recipes run end to end by `edgekd run` on the local GLUE files, on a
# quiet machine (nothing else running). Finished bundles are reused: with the teachers and students of train_all.sh in
# place, only the artifacts, benchmarks and gates run (13 min 31 s measured on 2 cores); from nothing, add the training times
# of sst2-students.md and mrpc.md. The reports are copied here afterwards.
set -eu
E=.venv/bin/edgekd
$E run sst2-tinybert data.path=../shared/data/sst2 || true          # exit 1 is a failed gate: the report is still written
# The BiLSTM with 100k GloVe words (train_all.sh) was distilled into runs/sst2-glove100k from the runs/sst2 teacher.
mkdir -p runs/sst2-glove100k && { test -e runs/sst2-glove100k/teacher || cp -a runs/sst2/teacher runs/sst2-glove100k/teacher; }
$E run sst2-bilstm -o runs/sst2-glove100k data.path=../shared/data/sst2 \
  students.bilstm.teacher=runs/sst2/teacher students.bilstm-hard.teacher=runs/sst2/teacher || true
$E run mrpc-tinybert data.path=../shared/data/mrpc || true
$E run mrpc-bilstm data.path=../shared/data/mrpc || true
for r in sst2/report-tinybert sst2-glove100k/report-bilstm mrpc/report-tinybert mrpc/report-bilstm; do
  d=benchmarks/results/run-$(dirname $r | cut -d- -f1)-$(basename $r | cut -d- -f2)
  mkdir -p $d && cp runs/$r/report.md runs/$r/report.json runs/$r/gate.md $d/
done
