"""Several bundles measured side by side in one process, at fixed sequence lengths: each round runs every model once, in
a fresh random order, on the same text cut to that length, so slow drift of the machine (another process, the clock,
the caches) falls on all of them alike and the per-round ratios pair them. It imports only the runtime.

    python -m edgekd.runtime.child --side-by-side BUNDLE [BUNDLE ...] --texts texts.jsonl --lengths 16 32 64 128 --out r.json
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgekd.protocol import MIN_SECONDS, MIN_WARMUP

from .child import machine
from .classifier import Classifier
from .encoder import Example, bundle_encoder, sequence_length
from .latency import one_query, repeated_words, warm_up


def at_length(classifier: Classifier, texts: list[tuple[str, ...]], length: int) -> Example | None:
    """An input of exactly `length` tokens (words, for the BiLSTM) made of real dev words repeated until the cut, or
    None where the model cannot take that length (past a TFLite file's largest bucket)."""
    buckets = getattr(classifier.backend, "buckets", None)
    if buckets and length > max(buckets):
        return None
    example = bundle_encoder(classifier.bundle, max_length=length).encode([repeated_words(texts, length)])[0]
    return example if sequence_length(example) == length else None


def rounds(classifiers: list[Classifier], texts: list[tuple[str, ...]], lengths: list[int], count: int, seed: int = 0) -> dict[str, dict[str, list[float] | None]]:
    """Per length, each model's latencies (s) over `count` rounds (None where it cannot take that length)."""
    rng = np.random.default_rng(seed)
    result: dict[str, dict[str, list[float] | None]] = {}
    for length in lengths:
        inputs = [at_length(c, texts, length) for c in classifiers]
        live = [i for i, example in enumerate(inputs) if example is not None]
        for i in live:
            warm_up(classifiers[i], [inputs[i]], MIN_WARMUP, MIN_SECONDS / 4)  # type: ignore[list-item]
        times: dict[int, list[float]] = {i: [] for i in live}
        for _ in range(count):
            for i in rng.permutation(live):
                times[int(i)].append(one_query(classifiers[int(i)], inputs[int(i)]))  # type: ignore[arg-type]
        result[str(length)] = {str(i): times.get(i) for i in range(len(classifiers))}
    return result


def side_by_side(paths: list[Path], texts: list[tuple[str, ...]], lengths: list[int], count: int, threads: int) -> dict[str, object]:
    """The child's `--side-by-side` result: each bundle's start-up and, per length, its latencies over the rounds."""
    classifiers, startup = [], []
    for path in paths:
        started = time.perf_counter()
        classifiers.append(Classifier.load(path, threads=threads, verify=False))
        startup.append(time.perf_counter() - started)
    measured = rounds(classifiers, texts, lengths, count)
    models = [{"sha256": c.bundle.sha256, "startup_seconds": s} for c, s in zip(classifiers, startup)]
    return {"machine": machine(), "threads": threads, "models": models, "latencies": measured}
