"""Students trained under several seeds: where each lands and the summary (each run, mean and standard deviation).

`seeds: N` in a recipe (or `edgekd distill ... --seeds N`) distils every student N times, with seeds `seed`,
`seed + 1`, ... The first is written where the student always goes (`<output_dir>/<student>`, the bundle later stages
derive from); the others beside it as `<student>-seed<S>`. `<output_dir>/<student>.seeds.json` holds every run's
metrics on dev (and test), their mean and sample standard deviation, so a results page can say `85.9 ± 0.5 (3 seeds)`.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgekd.bundle import Bundle
from edgekd.writer import write_text_atomic

SUFFIX = ".seeds.json"


def seeds_of(first: int, count: int) -> list[int]:
    """The seeds of `count` runs starting at the recipe's seed."""
    return [first + offset for offset in range(count)]


def seeded_path(out: Path, seed: int, first: int) -> Path:
    """Where the run of `seed` goes: `out` for the recipe's own seed, `<out>-seed<S>` for the others."""
    return out if seed == first else out.parent / f"{out.name}-seed{seed}"


def summary_path(out: Path) -> Path:
    return out.parent / f"{out.name}{SUFFIX}"


def summarize(bundles: Sequence[Bundle]) -> dict[str, Any]:
    """Each run's seed, path and scores per reported split, and per split and metric the mean and the sample
    standard deviation over the runs (0 for one run)."""
    runs = []
    for bundle in bundles:
        metrics = bundle.manifest.metrics
        scores = {split: dict(getattr(metrics, split)) for split in ("dev", "test") if getattr(metrics, split) is not None}
        runs.append({"seed": bundle.manifest.produced_by.seed, "path": str(bundle.path), **scores})
    summary: dict[str, Any] = {"seeds": [run["seed"] for run in runs], "runs": runs}
    for split in ("dev", "test"):
        records = [run[split] for run in runs if split in run]
        if len(records) != len(runs):
            continue
        names = [k for k in records[0] if k != "examples"]
        values = {name: [float(r[name]) for r in records] for name in names}
        summary[split] = {
            "examples": records[0].get("examples"),
            "mean": {name: round(statistics.fmean(v), 6) for name, v in values.items()},
            "sd": {name: round(statistics.stdev(v), 6) if len(v) > 1 else 0.0 for name, v in values.items()},
        }
    return summary


def write_summary(out: Path, bundles: Sequence[Bundle]) -> dict[str, Any]:
    """Write `<out>.seeds.json` for the runs of one student (the first at `out`); return the summary."""
    summary = summarize(bundles)
    write_text_atomic(summary_path(out), json.dumps(summary, indent=1) + "\n")
    return summary


def read_summary(bundle_path: Path) -> dict[str, Any] | None:
    """The seeds summary beside a student bundle, when it was trained under several seeds and the summary names it."""
    path = summary_path(Path(bundle_path))
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict) or not summary.get("runs"):
        return None
    first = summary["runs"][0].get("path")
    return summary if first is not None and Path(first).resolve() == Path(bundle_path).resolve() else None


def mean_sd(summary: dict[str, Any], metric: str, split: str = "dev", scale: float = 100.0) -> str:
    """E.g. `85.93 ± 0.52 (3 seeds)`; empty when the summary lacks the metric."""
    record = summary.get(split) or {}
    if metric not in record.get("mean", {}):
        return ""
    return f"{scale * record['mean'][metric]:.2f} ± {scale * record['sd'][metric]:.2f} ({len(summary['runs'])} seeds)"
