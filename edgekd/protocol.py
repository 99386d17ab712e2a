"""The benchmark protocol's minimums (DESIGN.md), in one tiny module: the benchmark config, the report's schema and
validity flags, and the child that runs on a device all read them, and the child must not import the configs (YAML)."""

from __future__ import annotations

# Measured queries per measurement: enough for a p90 early-stopping estimate at 99% confidence, as MLPerf.
MIN_QUERIES = 64
# Measured seconds per measurement.
MIN_SECONDS = 1.0
# Warm-up queries before a measurement (it also lasts at least the measured seconds).
MIN_WARMUP = 10
