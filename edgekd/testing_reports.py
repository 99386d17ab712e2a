"""Reports in the form `edgekd bench` writes them (report.json), built in code for the tests of the gate, the baseline
gate and the CI example: models with per-example predictions on a dev set, latency summaries and ratios to the
reference. One builder, so a change of the report's schema is made once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def timing(p50: float = 2.0) -> dict[str, Any]:
    """A latency summary (one `real` or `padded` entry of a run) centred on `p50` ms, valid by the protocol."""
    return {"queries": 64, "seconds": 1.2, "p50": p50, "p90": p50 * 1.2, "p99": p50 * 1.5, "min": p50 * 0.8, "max": p50 * 2,
            "mean": p50, "std": 0.1, "p90_early_stopping": p50 * 1.3, "throughput_qps": 1000 / p50,
            "valid_min_queries": True, "valid_min_duration": True}


def _vs_reference(ratio: float | tuple[float, float, float] | None) -> dict[str, Any] | None:
    if ratio is None:
        return None
    median, low, high = (ratio, ratio * 0.95, ratio * 1.05) if isinstance(ratio, (int, float)) else ratio
    return {"median": median, "low": low, "high": high, "pairs": 200, "confidence": 0.95}


def report_model(name: str, predictions: Sequence[Any] | None, *, gold: Sequence[Any] | None = None,
                 ratio: float | tuple[float, float, float] | None = None, role: str = "candidate", threads: Sequence[int] = (1,),
                 path: str | None = None, sha256: str = "0" * 64, fmt: str = "onnx", size: int = 1000, memory_kb: int = 1000,
                 architecture_only: bool = False, accuracy: dict[str, Any] | None = None) -> dict[str, Any]:
    """One model of a report: its per-example `predictions` (None: a model without accuracy, such as an architecture-only
    shape), scored against `gold` when given; `accuracy` overrides fields of its accuracy entry; `ratio` is its latency
    against the reference (a median, or median, low and high of the interval)."""
    scored = None
    if predictions is not None and not architecture_only:
        value = float(np.mean(np.asarray(predictions) == np.asarray(gold))) if gold is not None else 0.5
        scored = {"metric": "accuracy", "value": value, "examples": len(predictions), "predictions": list(predictions), **(accuracy or {})}
    runs = [{"threads": t, "startup_ms": 100.0, "first_inference_ms": 3.0, "real": timing(2.0), "padded": timing(4.0),
             "padded_tokens": 64, "memory_kb": memory_kb, "latencies_ms": {"real": [2.0], "padded": [4.0]},
             "vs_reference": _vs_reference(ratio)} for t in threads]
    return {"name": name, "path": path or f"/nowhere/{name}", "sha256": sha256, "format": fmt, "role": role,
            "architecture_only": architecture_only, "family": "bert", "macs": {}, "accuracy": scored, "runs": runs,
            "size": {"bytes": size, "gzip_bytes": size // 2, "parameters": 1, "nonzero_parameters": 1}}


def report_data(models: Sequence[dict[str, Any]], gold: Sequence[Any], *, teacher: Sequence[Any] | None = None, task: str = "sst2",
                labels: Sequence[str] = ("negative", "positive"), problem: str = "classification", reference: str | None = None,
                source: str = "measured_host", target: str = "local", threads: Sequence[int] = (1,)) -> dict[str, Any]:
    """A report's JSON form: `models` (from `report_model`) measured on a dev set with these `gold` labels, the teacher's
    per-example predictions when `teacher` is given."""
    scored = None if teacher is None else {
        "path": "/nowhere/teacher", "metric": "accuracy", "examples": len(gold), "predictions": list(teacher),
        "value": float(np.mean(np.asarray(teacher) == np.asarray(gold))) if problem == "classification" else 0.9}
    return {
        "schema_version": 1, "edgekd_version": "0.1.0", "created": "2026-11-30T00:00:00+00:00",
        "target": {"name": target, "latency_source": source},
        "machine": {"arch": "x86_64", "cpu": "test CPU", "flags": [], "cores": 2, "python": "3.11", "system": "Linux", "versions": {}},
        "settings": {"threads": list(threads), "queries": 64, "seconds": 1.0, "texts": 200, "batch": 1, "reference": reference,
                     "teacher": scored, "data_overrides": []},
        "baseline_vm_hwm_kb": 50_000, "models": list(models),
        "dev": {"task": task, "problem": problem, "labels": list(labels), "sha256": "a" * 64, "gold": list(gold)},
    }


def worse(predictions: Sequence[int], gold: Sequence[int], points: float, seed: int = 0) -> np.ndarray:
    """Binary `predictions` with `points` percent of all examples, chosen among the correct ones, turned wrong: exactly
    that many points less accurate."""
    predictions, gold = np.asarray(predictions), np.asarray(gold)
    turned = np.random.default_rng(seed).choice(np.flatnonzero(predictions == gold), size=round(points / 100 * gold.size), replace=False)
    result = predictions.copy()
    result[turned] = 1 - result[turned]
    return result
