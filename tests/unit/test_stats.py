"""Benchmark statistics against hand-computed values and synthetic data with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgekd.benchmarks.stats import binomial_cdf, early_stopping_estimate, paired_ratio, summarize


def test_binomial_cdf_matches_the_closed_forms() -> None:
    assert binomial_cdf(63, 64, 0.9) == pytest.approx(1 - 0.9**64)
    assert binomial_cdf(62, 64, 0.9) == pytest.approx(1 - 0.9**64 - 64 * 0.1 * 0.9**63)
    assert binomial_cdf(-1, 10, 0.5) == 0.0 and binomial_cdf(10, 10, 0.5) == 1.0
    assert binomial_cdf(5, 10, 0.5) == pytest.approx(sum(math.comb(10, i) for i in range(6)) / 2**10)


def test_early_stopping_estimate_by_hand() -> None:
    latencies = np.arange(1, 65, dtype=float)  # 1..64 ms
    # n = 64: P(Bin(64, .9) <= 62) = 0.9904 >= 0.99 while P(<= 61) = 0.966: k = 63, the second largest.
    assert early_stopping_estimate(latencies) == 63.0
    # n = 43: even the largest does not qualify (1 - 0.9**43 = 0.989 < 0.99).
    assert early_stopping_estimate(np.arange(43.0)) is None
    assert early_stopping_estimate(np.arange(44.0)) == 43.0


def test_summary_percentiles_and_validity() -> None:
    summary = summarize(np.full(100, 0.002))
    assert summary.p50 == pytest.approx(2.0) and summary.std == pytest.approx(0.0) and summary.queries == 100
    assert summary.valid_min_queries and not summary.valid_min_duration  # 100 x 2 ms = 0.2 s < 1 s
    assert summary.throughput_qps == pytest.approx(500)
    short = summarize(np.full(10, 0.2))
    assert not short.valid_min_queries and short.valid_min_duration and short.p90_early_stopping is None


def test_bootstrap_interval_covers_the_true_ratio() -> None:
    """On synthetic pairs whose true median ratio is 0.7, the 95% interval should cover it in about 95% of trials."""
    rng = np.random.default_rng(1)
    covered = 0
    for trial in range(100):
        reference = rng.lognormal(mean=np.log(3e-3), sigma=0.2, size=128)
        candidate = reference * 0.7 * rng.lognormal(mean=0.0, sigma=0.05, size=128)
        ratio = paired_ratio(candidate, reference, resamples=500, seed=trial)
        covered += ratio.low <= 0.7 <= ratio.high
        assert ratio.low <= ratio.median <= ratio.high
    assert covered >= 88
