"""The harness's own cost: the p50 the benchmark child reports for a model against a bare `session.run` loop over the
same inputs in one process (ONNX bundles).

    python -m edgekd.benchmarks.harness_overhead BUNDLE data.path=...
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from .bench import BenchSettings, bench


def bare_p50(bundle: Path, texts: list[tuple[str, ...]], queries: int) -> float:
    from edgekd.runtime.classifier import Classifier
    from edgekd.runtime.encoder import collate

    classifier = Classifier.load(bundle)
    session = classifier.backend.session  # type: ignore[attr-defined]
    names = classifier.backend.input_names
    feeds = [{n: v for n, v in collate([e], classifier.encoder.pad_id).items() if n in names} for e in classifier.encoder.encode(texts)]
    for i in range(50):
        session.run(["logits"], feeds[i % len(feeds)])
    times = []
    for i in range(queries):
        started = time.perf_counter()
        session.run(["logits"], feeds[i % len(feeds)])
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1e3)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    bundle, overrides = Path(args[0]), tuple(args[1:])
    report = bench([bundle], BenchSettings(accuracy=False, overrides=overrides, texts=200))
    run = report["models"][0]["runs"][0]
    harness = run["real"]["p50"]
    from edgekd.bundle import Bundle
    from edgekd.data import lineage_data, load_task_data

    dev = load_task_data(lineage_data(Bundle.open(bundle), overrides)).dev
    rng = np.random.default_rng(0)
    texts = [dev.texts[i] for i in rng.choice(len(dev), size=min(200, len(dev)), replace=False)]
    bare = bare_p50(bundle, texts, run["real"]["queries"])
    print(json.dumps({"bundle": bundle.name, "harness_p50_ms": harness, "bare_session_run_p50_ms": bare, "overhead": harness / bare - 1}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
