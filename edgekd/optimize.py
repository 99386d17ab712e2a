"""`edgekd optimize STUDENT_ONNX --budget BUDGET.yaml [-o DIR]`: the fastest file within a budget, found by measuring.

The search space is the student's FP32 ONNX file quantized every way edgekd can (`SPACE`: dynamic INT8 per-tensor and
per-channel, static QDQ INT8 with two calibrations, weight-only INT4, FP16). Each candidate is made by the quantize
stage under DIR/candidates (re-made only when the student or the method changed) and evaluated there on the whole dev
set through the runtime. The search then goes in the order that skips what cannot win:
1. accuracy first: a candidate whose dev metric is more than the budget's `max_accuracy_drop` points below the FP32
   file, or larger than `max_bytes`, is out without a latency measurement;
2. the rest are measured side by side with the FP32 file in one child on the target (`edgekd.benchmarks.peers`: rounds
   at fixed lengths, the median per-round ratio to the FP32 file with its 95% interval);
3. the winner is the candidate with the lowest geometric mean of its ratios over the lengths among those within every
   limit (`max_latency_ratio` applies to the ratio against the FP32 file at every length). Every candidate's row, the
   Pareto front (metric, mean ratio, bytes) and the choice go to DIR/optimize.json and DIR/optimize.md, and the winner
   is copied to DIR/best. No candidate within the budget: exit 1, naming the nearest candidate for each limit.

The budget is the gate's file; its `default` entry holds the limits (points below the FP32 file, not the teacher).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.benchmarks.bench import task_metric, timing_texts
from edgekd.benchmarks.peers import measure, summarize
from edgekd.config import (
    Budget,
    ModelBudget,
    OnnxDynamicConfig,
    OnnxFp16Config,
    OnnxInt4Config,
    OnnxStaticConfig,
    QuantizeConfig,
)
from edgekd.data import lineage_data, load_task_data
from edgekd.errors import ConfigError, EdgekdError
from edgekd.peers import derived_under, fp32_onnx
from edgekd.records import MODEL_FILES
from edgekd.writer import BundleWriter, check_output

# The candidates, by the name of their bundle under DIR/candidates.
SPACE: dict[str, QuantizeConfig] = {
    "dynamic-per-tensor": OnnxDynamicConfig(per_channel=False),
    "dynamic-per-channel": OnnxDynamicConfig(per_channel=True),
    "static-minmax": OnnxStaticConfig(calibration="minmax"),
    "static-percentile": OnnxStaticConfig(calibration="percentile"),
    "int4": OnnxInt4Config(),
    "fp16": OnnxFp16Config(),
}


class NothingFits(EdgekdError):
    """No candidate is within the budget (exit 1, like a failed gate)."""

    exit_code = 1


def limits(budget: Budget) -> ModelBudget:
    """The budget's limits for the search: its `default` entry, which must limit something optimize can check."""
    entry = budget.default
    if entry is None or all(v is None for v in (entry.max_accuracy_drop, entry.max_bytes, entry.max_latency_ratio)):
        raise ConfigError("optimize: the budget's `default` entry must set max_accuracy_drop, max_bytes or max_latency_ratio "
                          "(points below the FP32 file, bytes of the file, latency against the FP32 file)")
    return entry


def _mean_ratio(row: dict[str, Any]) -> float:
    ratios = [at["vs_reference"]["median"] for at in row["latency"].values() if at is not None]
    return float(np.exp(np.mean(np.log(ratios)))) if ratios else float("inf")


def misses(row: dict[str, Any], limit: ModelBudget) -> list[str]:
    """The limits a candidate's row is over, each as a short phrase."""
    over = []
    drop = -row["dev"]["vs_reference_points"]["value"]
    if limit.max_accuracy_drop is not None and drop > limit.max_accuracy_drop:
        over.append(f"{drop:.2f} points below the FP32 file (limit {limit.max_accuracy_drop:g})")
    if limit.max_bytes is not None and row["bytes"] > limit.max_bytes:
        over.append(f"{row['bytes']:,} bytes (limit {limit.max_bytes:,})")
    if limit.max_latency_ratio is not None and "latency" in row:
        worst = max((at["vs_reference"]["median"] for at in row["latency"].values() if at is not None), default=float("inf"))
        if worst > limit.max_latency_ratio:
            over.append(f"latency {worst:.2f}x the FP32 file at its worst length (limit {limit.max_latency_ratio:g})")
    return over


def pareto(rows: list[dict[str, Any]]) -> list[str]:
    """The rows no other row beats on all of: dev metric (higher), mean latency ratio (lower), bytes (lower)."""
    def key(r: dict[str, Any]) -> tuple[float, float, float]:
        return (-r["dev"]["value"], r["mean_ratio"], r["bytes"])

    front = []
    for row in rows:
        mine = key(row)
        if not any(all(a <= b for a, b in zip(key(o), mine)) and key(o) != mine for o in rows):
            front.append(row["name"])
    return front


def optimize(student_path: Path, budget: Budget, out: Path, *, target: str = "local", lengths: Sequence[int] = (16, 32, 64, 128),
             rounds: int = 100, threads: int = 1, overrides: Sequence[str] = (), space: dict[str, QuantizeConfig] | None = None) -> dict[str, Any]:
    limit = limits(budget)
    student = fp32_onnx(student_path)
    check_output(out / "best", overwrite=True)  # what the winner would replace, refused before any candidate is made
    dev = load_task_data(lineage_data(student, list(overrides))).dev
    candidates = derived_under(student, space or SPACE, out / "candidates", overrides)
    # 1. Accuracy and size from the quantize stage's own evaluation (whole dev set, through the runtime): no latency
    # is measured for a candidate that cannot be within the budget.
    screened: dict[str, list[str]] = {}
    facts: dict[str, dict[str, Any]] = {}
    for name, bundle in candidates.items():
        metrics = bundle.manifest.metrics
        metric = task_metric(student.manifest)
        drop = 100 * (metrics.parent_dev[metric] - metrics.dev[metric])
        row = {"dev": {"vs_reference_points": {"value": -drop}}, "bytes": bundle.file(MODEL_FILES[bundle.manifest.format]).stat().st_size}
        screened[name], facts[name] = misses(row, limit), row
    survivors = {name: b for name, b in candidates.items() if not screened[name]}
    models = {student.path.name: student, **survivors}
    measured = measure(models, target, list(lengths), rounds, threads, timing_texts(dev.texts))
    rows = summarize(models, measured, dev, student.path.name)
    for row in rows:
        row["mean_ratio"] = _mean_ratio(row)
        row["baseline"] = row["name"] == student.path.name
        row["over_budget"] = [] if row["baseline"] else misses(row, limit)
        row["slower_than_fp32"] = row["mean_ratio"] > 1.0 and not row["baseline"]
    skipped = [{"name": name, "over_budget": over, "screened_out": True, **facts[name]} for name, over in screened.items() if over]
    fitting = [r for r in rows if not r["baseline"] and not r["over_budget"]]
    best = min(fitting, key=lambda r: r["mean_ratio"]) if fitting else None
    result = {
        "student": str(student.path), "target": measured["target"], "machine": measured["machine"], "threads": threads,
        "rounds": rounds, "lengths": list(lengths), "budget": limit.model_dump(exclude_none=True), "dev_examples": len(dev),
        "candidates": rows, "screened_out": skipped, "pareto": pareto(rows), "best": best["name"] if best else None,
    }
    out.mkdir(parents=True, exist_ok=True)
    if best is not None:
        # The winner's copy is checked against its manifest before it replaces the previous one (atomically).
        with BundleWriter(out / "best", overwrite=True) as writer:
            shutil.copytree(candidates[best["name"]].path, writer.path, dirs_exist_ok=True)
            writer.commit_existing()
    (out / "optimize.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    (out / "optimize.md").write_text(markdown(result), encoding="utf-8")
    if best is None:
        tried = [r for r in rows if not r["baseline"]] + skipped
        raise NothingFits(f"optimize: no candidate is within the budget; {nearest(tried, limit)} (every row: {out / 'optimize.md'})")
    return result


def nearest(rows: list[dict[str, Any]], limit: ModelBudget) -> str:
    """For each limit some candidate misses, the candidate closest to it."""
    phrases = []
    for field, measure_of in (("max_accuracy_drop", lambda r: -r["dev"]["vs_reference_points"]["value"] if "dev" in r else None),
                              ("max_bytes", lambda r: r.get("bytes")),
                              ("max_latency_ratio", lambda r: max((at["vs_reference"]["median"] for at in r["latency"].values() if at), default=None)
                               if "latency" in r else None)):
        if getattr(limit, field) is None:
            continue
        values = [(measure_of(r), r["name"]) for r in rows if measure_of(r) is not None]
        if values:
            value, name = min(values)
            phrases.append(f"{field} {getattr(limit, field):g}: nearest {name} ({round(value, 4) + 0.0:g})")
    return "; ".join(phrases)


def markdown(result: dict[str, Any]) -> str:
    lengths = result["lengths"]
    lines = [f"# edgekd optimize: {result['student']}", "",
             (f"Measured on {result['target']['name']} ({result['target']['latency_source']}, {result['machine']['cpu']}), "
              f"{result['threads']} thread(s), {result['rounds']} interleaved rounds per length; ratios are to the FP32 "
              f"file. Budget: {result['budget']}. Dev: {result['dev_examples']} examples."), "",
             f"**Chosen: {result['best'] or 'none within the budget'}.** Pareto front: {', '.join(result['pareto'])}.", "",
             f"| candidate | method | MB | {' | '.join(f'L{n} ratio' for n in lengths)} | mean ratio | dev | vs FP32 (points) | over budget |",
             "|" + "---|" * (7 + len(lengths))]
    for row in result["candidates"]:
        cells = [("-" if row["latency"].get(str(n)) is None else f"{row['latency'][str(n)]['vs_reference']['median']:.2f}") for n in lengths]
        flag = " (slower than FP32)" if row["slower_than_fp32"] else ""
        diff = row["dev"]["vs_reference_points"]
        lines.append(f"| {row['name']}{flag} | {row['method']} | {row['bytes'] / 1e6:.1f} | {' | '.join(cells)} | {row['mean_ratio']:.2f} | "
                     f"{100 * row['dev']['value']:.2f} | {diff['value']:+.2f} [{diff['low']:+.2f}, {diff['high']:+.2f}] | "
                     f"{'the FP32 file: the baseline' if row['baseline'] else '; '.join(row['over_budget']) or '-'} |")
    for row in result["screened_out"]:
        lines.append(f"| {row['name']} | not measured | | {' | '.join('' for _ in lengths)} | | | | {'; '.join(row['over_budget'])} |")
    return "\n".join(lines) + "\n"
