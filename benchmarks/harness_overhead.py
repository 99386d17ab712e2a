"""The harness's own cost: the per-query latency the benchmark child measures (`runtime/latency.py`: encoded example
-> padding -> backend -> logits) against a bare `session.run` on pre-built feeds, in one process, the two interleaved
query by query in random order (ONNX bundles).

    python -m edgekd.benchmarks.harness_overhead BUNDLE data.path=...
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np


def overhead(bundle: Path, texts: list[tuple[str, ...]], queries: int = 2000) -> dict[str, float]:
    from edgekd.runtime.classifier import Classifier
    from edgekd.runtime.encoder import collate
    from edgekd.runtime.latency import one_query, warm_up

    classifier = Classifier.load(bundle)
    session = classifier.backend.session  # type: ignore[attr-defined]
    names = classifier.backend.input_names
    examples = classifier.encoder.encode(texts)
    feeds = [{n: v for n, v in collate([e], classifier.encoder.pad_id).items() if n in names} for e in examples]
    warm_up(classifier, examples, 50, 1.0)
    rng = np.random.default_rng(0)
    harness, bare = [], []
    for i in range(queries):
        example, feed = examples[i % len(examples)], feeds[i % len(feeds)]
        for which in (("h", "b") if rng.random() < 0.5 else ("b", "h")):
            if which == "h":
                harness.append(one_query(classifier, example))
            else:
                started = time.perf_counter()
                session.run(["logits"], feed)
                bare.append(time.perf_counter() - started)
    h, b = float(np.median(harness) * 1e3), float(np.median(bare) * 1e3)
    return {"harness_p50_ms": h, "bare_session_run_p50_ms": b, "overhead": h / b - 1,
            "median_pair_ratio": float(np.median(np.asarray(harness) / np.asarray(bare))), "queries": queries}


def main(argv: list[str] | None = None) -> int:
    from edgekd.bundle import Bundle
    from edgekd.data import lineage_data, load_task_data

    args = sys.argv[1:] if argv is None else argv
    bundle, overrides = Path(args[0]), tuple(args[1:])
    dev = load_task_data(lineage_data(Bundle.open(bundle), overrides)).dev
    rng = np.random.default_rng(0)
    texts = [dev.texts[i] for i in rng.choice(len(dev), size=min(200, len(dev)), replace=False)]
    print(json.dumps({"bundle": bundle.name, **overhead(bundle, texts)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
