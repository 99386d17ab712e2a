"""Benchmark protocol, reports and gates."""
