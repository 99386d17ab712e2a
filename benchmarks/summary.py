"""The results table of a benchmark report: accuracy, size, p50/p90 latency, and speed-ups against the teacher and
against bert-base-shape, whichever of them was the report's reference.

Every candidate's latency ratio is paired against the one reference in the same run. A speed-up against another model
measured in that run (the teacher's export when the reference is bert-base-shape, or the other way round) is the
quotient of the two paired medians: ratio(other) / ratio(model). `edgekd run` prints this table; the README's
results table is this table of the shipped reports.

It reads the report's JSON form, so that a partial report (the speed-up arithmetic's tests) is enough; `table` takes a
typed `Report` too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .report_model import Report


def _run_at(model: Mapping[str, Any], threads: int) -> Mapping[str, Any]:
    return next(r for r in model["runs"] if r["threads"] == threads)


def ratio(model: Mapping[str, Any], threads: int) -> float | None:
    """A model's median latency ratio against the report's reference (1 for the reference itself)."""
    if model["role"] == "reference":
        return 1.0
    paired = _run_at(model, threads)["vs_reference"]
    return None if paired is None else float(paired["median"])


def speedup(model: Mapping[str, Any], other: Mapping[str, Any] | None, threads: int) -> float | None:
    """How many times faster `model` is than `other` (both in the same report), from their paired ratios."""
    if other is None:
        return None
    mine, theirs = ratio(model, threads), ratio(other, threads)
    return None if mine is None or theirs is None or mine <= 0 else theirs / mine


def find_bert_base_shape(report: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return next((m for m in report["models"] if m["architecture_only"]), None)


def find_model(report: Mapping[str, Any], name: str | None) -> Mapping[str, Any] | None:
    return next((m for m in report["models"] if m["name"] == name), None) if name else None


def table(report: Report | Mapping[str, Any], teacher_export: str | None = None, threads: int | None = None) -> str:
    """A markdown table: one row per model of the report (bert-base-shape last). `teacher_export` names the teacher's
    ONNX/TFLite export in the report, against which speed-ups are given."""
    report = report.dump() if isinstance(report, Report) else report
    threads = threads or report["settings"]["threads"][0]
    teacher = find_model(report, teacher_export)
    base = find_bert_base_shape(report)
    header = ["model", "format", "dev accuracy", "drop (pts)", "size MB", "p50 ms", "p90 ms", "speed-up vs teacher", "speed-up vs bert-base-shape"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    ordered = sorted(report["models"], key=lambda m: m["architecture_only"])
    for model in ordered:
        run = _run_at(model, threads)
        accuracy = model["accuracy"]
        drop = accuracy.get("drop") if accuracy else None
        name = "bert-base-shape (architecture only)" if model["architecture_only"] else model["name"] + (" (teacher)" if model is teacher else "")
        lines.append("| " + " | ".join([
            name,
            model["format"],
            f"{100 * accuracy['value']:.2f}%" if accuracy else "n/a",
            f"{100 * drop:.2f}" if drop is not None else "",
            f"{model['size']['bytes'] / 1e6:.1f}",
            f"{run['real']['p50']:.2f}",
            f"{run['real']['p90']:.2f}",
            _times(speedup(model, teacher, threads)),
            _times(speedup(model, base, threads)),
        ]) + " |")
    return "\n".join(lines)


def _times(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}x" if value >= 1 else f"{value:.3f}x"
