"""The statistics of the benchmark protocol: latency summaries, MLPerf's early-stopping percentile estimate, the
median of paired ratios with a bootstrap confidence interval, and the difference of two models' dev metric on the same
examples with a paired bootstrap interval."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgekd.protocol import MIN_QUERIES, MIN_SECONDS

from .report_model import LatencySummary, Ratio


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space (stable for large n)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    log_p, log_q = math.log(p), math.log1p(-p)
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q for i in range(k + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def early_stopping_estimate(latencies: np.ndarray, percentile: float = 0.9, confidence: float = 0.99) -> float | None:
    """MLPerf's early-stopping estimate of a latency percentile: the smallest order statistic x_(k) such that, with
    the given confidence, the true percentile is at most x_(k) (P(Binomial(n, percentile) <= k - 1) >= confidence).
    None when there are too few queries for any order statistic to qualify."""
    ordered = np.sort(np.asarray(latencies, dtype=np.float64))
    n = len(ordered)
    for k in range(int(math.ceil(percentile * n)), n + 1):
        if binomial_cdf(k - 1, n, percentile) >= confidence:
            return float(ordered[k - 1])
    return None


def summarize(latencies_s: np.ndarray) -> LatencySummary:
    """Summary of per-query latencies given in seconds (reported in milliseconds)."""
    values = np.asarray(latencies_s, dtype=np.float64)
    assert values.size > 0, "no measured queries"
    ms = values * 1e3
    total = float(values.sum())
    estimate = early_stopping_estimate(ms)
    return LatencySummary(
        queries=int(values.size),
        seconds=round(total, 4),
        p50=float(np.percentile(ms, 50)),
        p90=float(np.percentile(ms, 90)),
        p99=float(np.percentile(ms, 99)),
        min=float(ms.min()),
        max=float(ms.max()),
        mean=float(ms.mean()),
        std=float(ms.std(ddof=1)) if ms.size > 1 else 0.0,
        p90_early_stopping=estimate,
        throughput_qps=float(values.size / total) if total > 0 else math.inf,
        valid_min_queries=bool(values.size >= MIN_QUERIES),
        valid_min_duration=bool(total >= MIN_SECONDS),
    )


def paired_ratio(candidate_s: np.ndarray, reference_s: np.ndarray, *, confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> Ratio:
    """Median of candidate[i] / reference[i] over pairs measured back to back; a percentile bootstrap interval."""
    candidate, reference = np.asarray(candidate_s, dtype=np.float64), np.asarray(reference_s, dtype=np.float64)
    assert candidate.shape == reference.shape and candidate.size > 0, "pairs must match"
    ratios = candidate / reference
    rng = np.random.default_rng(seed)
    medians = np.median(rng.choice(ratios, size=(resamples, ratios.size), replace=True), axis=1)
    tail = (1 - confidence) / 2
    return Ratio(
        median=float(np.median(ratios)),
        low=float(np.quantile(medians, tail)),
        high=float(np.quantile(medians, 1 - tail)),
        pairs=int(ratios.size),
        confidence=confidence,
    )


@dataclass(frozen=True)
class Difference:
    """metric(first) - metric(second) in points (100x the metric) over the same examples, with its paired percentile
    bootstrap interval."""

    value: float
    low: float
    high: float
    resamples: int
    confidence: float


def paired_metric_difference(first: np.ndarray, second: np.ndarray, gold: np.ndarray, metric: Callable[[np.ndarray, np.ndarray], float],
                             *, confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> Difference:
    """metric(first, gold) - metric(second, gold) in points, where first[i] and second[i] are two models' predictions
    of example i: each resample draws example indices with replacement (a fixed seed) and scores both models on the
    same draw, so what the two get right or wrong together cancels and only where they differ counts."""
    first, second, gold = np.asarray(first), np.asarray(second), np.asarray(gold)
    assert first.shape == second.shape == gold.shape and gold.ndim == 1 and gold.size > 0, "predictions must pair with the gold labels"
    rng = np.random.default_rng(seed)
    differences = np.empty(resamples)
    # One draw at a time: (resamples, examples) indices at once would take 160 MB for a 10k-example dev set.
    for r in range(resamples):
        drawn = rng.integers(0, gold.size, size=gold.size)
        differences[r] = metric(first[drawn], gold[drawn]) - metric(second[drawn], gold[drawn])
    tail = (1 - confidence) / 2
    return Difference(
        value=100 * (metric(first, gold) - metric(second, gold)),
        low=100 * float(np.quantile(differences, tail)),
        high=100 * float(np.quantile(differences, 1 - tail)),
        resamples=resamples,
        confidence=confidence,
    )
