"""The benchmark protocol's measurements inside one fresh process (the child): start-up, first inference, warm-up,
measured queries at batch 1, interleaved pairs against a reference, and the peak resident set."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .classifier import Classifier
from .encoder import Example

Clock = Callable[[], float]


def peak_rss_kb() -> int | None:
    """VmHWM of this process (Linux); None elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def one_query(classifier: Classifier, example: Example) -> float:
    """Seconds of one query at batch 1, as every measurement times it."""
    started = time.perf_counter()
    classifier.backend.run([example])
    return time.perf_counter() - started


def warm_up(classifier: Classifier, examples: list[Example], runs: int, seconds: float) -> int:
    """At least `runs` queries and `seconds` of them; returns how many ran."""
    done, started = 0, time.perf_counter()
    while done < runs or time.perf_counter() - started < seconds:
        one_query(classifier, examples[done % len(examples)])
        done += 1
    return done


def measure(classifier: Classifier, examples: list[Example], queries: int, seconds: float) -> list[float]:
    """Per-query latencies (s) over at least `queries` queries whose latencies add up to at least `seconds`,
    cycling through the examples."""
    return _repeated(lambda i: one_query(classifier, examples[i % len(examples)]), queries, seconds)


def _repeated(query: Callable[[int], float], queries: int, seconds: float) -> list[float]:
    """`query(i)`'s latencies (s) for i = 0, 1, ... until at least `queries` ran and they add up to `seconds`."""
    latencies: list[float] = []
    total = 0.0
    while len(latencies) < queries or total < seconds:
        latencies.append(query(len(latencies)))
        total += latencies[-1]
    return latencies


def measure_end_to_end(classifier: Classifier, texts: list[tuple[str, ...]], queries: int, seconds: float) -> list[float]:
    """Per-query latencies (s) from text to label probabilities, as an app calls it: tokenization (the BiLSTM's
    word tokenizer is pure Python), the model, the softmax; over at least `queries` queries and `seconds`, cycling
    through the texts."""
    def query(i: int) -> float:
        started = time.perf_counter()
        classifier.predict([texts[i % len(texts)]])
        return time.perf_counter() - started

    return _repeated(query, queries, seconds)


def measure_pairs(
    candidate: Classifier, reference: Classifier, candidate_examples: list[Example], reference_examples: list[Example], pairs: int, seed: int = 0
) -> tuple[list[float], list[float]]:
    """The same text through both models back to back, the order of each pair random (so neither is always warm)."""
    rng = np.random.default_rng(seed)
    first, second = [], []
    for i in range(pairs):
        a, b = candidate_examples[i % len(candidate_examples)], reference_examples[i % len(reference_examples)]
        if rng.random() < 0.5:
            ta = one_query(candidate, a)
            tb = one_query(reference, b)
        else:
            tb = one_query(reference, b)
            ta = one_query(candidate, a)
        first.append(ta)
        second.append(tb)
    return first, second


def repeated_words(texts: list[tuple[str, ...]], length: int) -> tuple[str, ...]:
    """A text (a pair where the texts are pairs) of real words repeated past `length` tokens, for truncation to cut."""
    words = " ".join(part for text in texts[:50] for part in text).split() or ["word"]
    long_text = " ".join(words * (length * 2 // len(words) + 1))
    return (long_text,) * (len(texts[0]) if texts else 1)


def padded_worst_case(classifier: Classifier, texts: list[tuple[str, ...]]) -> Example:
    """An input at the tokenizer's maximum length: real words repeated until truncation cuts them."""
    return classifier.encoder.encode([repeated_words(texts, classifier.encoder.max_length)])[0]
