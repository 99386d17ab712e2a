"""Interim paired latency of two ONNX bundles (until `edgekd bench` exists): one ONNX Runtime thread each, the same
400 SST-2 dev sentences at batch 1, A and B interleaved in random order per sentence, the median of per-sentence B/A
ratios with a bootstrap 95% interval. Run from the repository root:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/results/paired_onnx_latency.py BUNDLE_A BUNDLE_B
"""

import sys
import time

import numpy as np

from edgekd.bundle import Bundle
from edgekd.runtime.backends import OnnxBackend
from edgekd.runtime.encoder import load_encoder
from edgekd.data import load_task_data
from edgekd.config import DataConfig
a, b = Bundle.open(sys.argv[1]), Bundle.open(sys.argv[2])
dev = load_task_data(DataConfig(task="sst2", path="../shared/data/sst2")).dev
def setup(bundle):
    t = bundle.manifest.tokenizer
    enc = load_encoder(bundle.tokenizer_dir, t.type, t.max_length, 1)
    return enc, OnnxBackend(bundle.file("model.onnx"), enc.pad_id, threads=1)
ea, ba = setup(a); eb, bb = setup(b)
texts = dev.texts[:400]
xa, xb = ea.encode(texts), eb.encode(texts)
for i in range(20): ba.run([xa[i]]); bb.run([xb[i]])
ratios, ta, tb = [], [], []
rng = np.random.default_rng(0)
for i in range(len(texts)):
    order = [0, 1] if rng.random() < 0.5 else [1, 0]
    times = {}
    for k in order:
        be, x = (ba, xa) if k == 0 else (bb, xb)
        s = time.perf_counter(); be.run([x[i]]); times[k] = time.perf_counter() - s
    ratios.append(times[1] / times[0]); ta.append(times[0]); tb.append(times[1])
ratios = np.array(ratios)
boot = [np.median(rng.choice(ratios, len(ratios))) for _ in range(2000)]
print(f"A p50 {np.median(ta)*1e3:.2f} ms  B p50 {np.median(tb)*1e3:.2f} ms  ratio B/A median {np.median(ratios):.3f} CI95 [{np.percentile(boot,2.5):.3f}, {np.percentile(boot,97.5):.3f}] n={len(ratios)}")
