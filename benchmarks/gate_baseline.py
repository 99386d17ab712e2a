"""`edgekd gate REPORT --baseline OLD_REPORT.json`: each judged model against the same model name in a baseline report
(the report of the main branch, say), so that a CI can reject a change that makes a model worse or slower.

- accuracy: metric(baseline model) - metric(model) in points over the same dev examples (both reports' per-example
  predictions), with a paired bootstrap 95% interval; PASS when the whole interval is at or below the budget's
  `max_accuracy_regression` (default 0.5), FAIL when it is wholly above, INCONCLUSIVE otherwise;
- latency: when both bundles are at hand (the paths the reports name exist and their manifests' sha256 are the ones
  the reports recorded), the model is measured now against the baseline's bundle as the reference, in one bench run,
  pair by pair; the median ratio's interval against `max_slowdown` (default 1.05). Latencies of two reports measured
  in two runs are never compared: a bundle not at hand is a SKIP that says why.
A baseline of another task, label set, dev set or report schema is bad input (one line, exit 2).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from edgekd.bundle import Bundle
from edgekd.config import BenchConfig, Budget, ModelBudget
from edgekd.errors import BundleError, ConfigError

from . import report as report_module
from .gate import BENCH_AGAIN, Check, Verdict, difference, interval_verdict, metric_for, shown_difference
from .report_model import REPORT_SCHEMA_VERSION, ModelResult, Ratio, Report

logger = logging.getLogger(__name__)
DEFAULT_MAX_ACCURACY_REGRESSION = 0.5
DEFAULT_MAX_SLOWDOWN = 1.05
# A model's latency ratio to a baseline bundle as the reference, measured in one bench run: (model, baseline model,
# factor of the report's pairs, threads).
MeasurePair = Callable[[ModelResult, ModelResult, int, int], Ratio]


def load_baseline(path: Path, report: Report) -> Report:
    """The baseline report, refused in one line when it cannot be compared with `report` example by example: not a
    report, another schema version, another task, label set or dev set."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"--baseline {path}: no such report") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BundleError(f"--baseline {path}: not a readable JSON report ({str(exc)[:200]})") from None
    version = raw.get("schema_version") if isinstance(raw, dict) else None
    if version != REPORT_SCHEMA_VERSION:
        raise BundleError(f"--baseline {path}: report schema version {str(version)[:20]}; this edgekd writes and compares version "
                          f"{REPORT_SCHEMA_VERSION}: bench the baseline again with this edgekd")
    try:
        baseline = report_module.load(path)
    except BundleError as exc:
        lines = str(exc).splitlines()
        raise BundleError(f"--baseline {path}: not a valid report ({' '.join(line.strip() for line in lines[:3])[:300]})") from None
    _comparable(report, baseline, path)
    return baseline


def _comparable(report: Report, baseline: Report, path: Path) -> None:
    now, before = report.dev, baseline.dev
    if now is None or before is None:
        return  # a report without its dev set (written before it was recorded): its accuracy checks say INCONCLUSIVE
    if (now.task, now.problem) != (before.task, before.problem):
        raise ConfigError(f"--baseline {path}: a report of task {before.task} ({before.problem}); this report is of {now.task} "
                          f"({now.problem}): compare reports of one task")
    if now.labels != before.labels:
        raise ConfigError(f"--baseline {path}: labels {before.labels}; this report's are {now.labels}: the label ids would not mean "
                          "the same classes")
    if now.sha256 != before.sha256:
        raise ConfigError(f"--baseline {path}: dev examples with sha256 {before.sha256[:12]}...; this report's are "
                          f"{now.sha256[:12]}... ({len(before.gold)} vs {len(now.gold)} examples): bench both on the same dev set")


def measurer(report: Report, target: str | None = None) -> MeasurePair:
    """`measure(model, old, factor)`: the model's latency ratio to the baseline's bundle, measured now in one bench run
    (the report's protocol, `factor` times its pairs; no accuracy)."""
    settings = report.settings

    def measure(model: ModelResult, old: ModelResult, factor: int, threads: int = 1) -> Ratio:
        from .bench import bench

        with tempfile.TemporaryDirectory(prefix="edgekd-baseline-") as scratch:
            # The two bundles share their folder name (that is how they are paired), and a target holds its pushed
            # bundles by folder name: the baseline's goes under another name, as links to its files (no copy).
            reference = _linked(Path(old.path), Path(scratch) / f"baseline-{Path(old.path).name}")
            cfg = BenchConfig(target=target or report.target.name, reference=str(reference), threads=[threads], accuracy=False,
                              queries=factor * max(settings.queries, settings.texts), seconds=settings.seconds, texts=settings.texts)
            fresh = bench([Path(model.path)], cfg, settings.data_overrides)
        ratio = fresh.candidates()[0].runs[0].vs_reference
        assert ratio is not None, "a model measured against a reference has a paired ratio"
        return ratio

    return measure


def _linked(bundle: Path, destination: Path) -> Path:
    """The bundle's folder at `destination`: hard links to its files where the file system allows, copies elsewhere."""
    def link(source: str, target: str) -> None:
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)

    shutil.copytree(bundle, destination, copy_function=link)
    return destination


def judge_baseline(report: Report, baseline: Report, budget: Budget, measure: MeasurePair | None, *,
                   remeasure: bool = True) -> list[Check]:
    """The accuracy and latency checks of every judged model that the baseline also has, and a SKIP line for each
    model only one of the two reports has. `measure=None`: latency is not measured (a SKIP says so)."""
    before = {m.name: m for m in baseline.models if m.judged}
    judged = [m for m in report.models if m.judged]
    checks: list[Check] = []
    for model in judged:
        old = before.get(model.name)
        if old is None:
            checks.append(Check(model.name, "vs baseline", "SKIP", "not in the baseline report", "-", "a new model: nothing to compare"))
            continue
        limits = budget.models.get(model.name, budget.default) or ModelBudget()
        checks.append(_regression_check(model, old, report, baseline, limits, metric_for(report, limits, budget)))
        checks.append(_slowdown_check(model, old, limits, budget.threads, measure, remeasure))
    for name in sorted(set(before) - {m.name for m in judged}):
        checks.append(Check(name, "vs baseline", "SKIP", "only in the baseline report", "-", "the model is gone from this report"))
    return checks


def _regression_check(model: ModelResult, old: ModelResult, report: Report, baseline: Report, limits: ModelBudget, metric: str) -> Check:
    budget = DEFAULT_MAX_ACCURACY_REGRESSION if limits.max_accuracy_regression is None else limits.max_accuracy_regression
    name, shown_budget = "accuracy vs baseline", f"<= {budget:.2f} pts"
    if model.accuracy is None and old.accuracy is None:
        return Check(model.name, name, "SKIP", "neither report has its accuracy", shown_budget, "benched with accuracy off")
    now = model.accuracy.predictions if model.accuracy is not None else None
    then = old.accuracy.predictions if old.accuracy is not None else None
    if now is None or then is None or report.dev is None or baseline.dev is None:
        which = "this report" if now is None or report.dev is None else "the baseline"
        return Check(model.name, name, "INCONCLUSIVE", "no interval", shown_budget, BENCH_AGAIN.replace("the report", which, 1))
    diff = difference(then, now, report, metric)
    verdict: Verdict = interval_verdict(diff, budget)
    return Check(model.name, name, verdict, shown_difference(metric, "loss", diff), shown_budget)


def _slowdown_check(model: ModelResult, old: ModelResult, limits: ModelBudget, threads: int, measure: MeasurePair | None,
                    remeasure: bool) -> Check:
    budget = DEFAULT_MAX_SLOWDOWN if limits.max_slowdown is None else limits.max_slowdown
    name, shown_budget = "latency vs baseline", f"<= {budget:.3f} of the baseline's"
    missing = _not_at_hand(model, "this report's") or _not_at_hand(old, "the baseline's")
    if missing or measure is None:
        note = missing or "not measured (no measuring here)"
        return Check(model.name, name, "SKIP", "not measured", shown_budget,
                     f"{note}; latencies of two runs are never compared, only pairs measured in one run")
    ratio = measure(model, old, 1, threads)
    verdict = interval_verdict(ratio, budget)
    note = ""
    if verdict == "INCONCLUSIVE" and remeasure:
        logger.warning("%s: latency against the baseline inconclusive; measuring again with 4x the pairs", model.name)
        ratio = measure(model, old, 4, threads)
        verdict = interval_verdict(ratio, budget)
        note = f"measured again with {ratio.pairs} pairs"
    shown = f"{ratio.median:.3f} (95% CI {ratio.low:.3f}-{ratio.high:.3f}) of the baseline's bundle, measured now"
    return Check(model.name, name, verdict, shown, shown_budget, note)


def _not_at_hand(model: ModelResult, whose: str) -> str | None:
    """Why the bundle a report names cannot be measured now: missing, not a bundle, or altered since; None when it can."""
    path = Path(model.path)
    if not path.is_dir():
        return f"{whose} bundle {model.path} is not here"
    try:
        opened = Bundle.open(path)
    except BundleError as exc:
        return f"{whose} bundle {model.path} does not open ({str(exc).splitlines()[0][:200]})"
    if opened.sha256 != model.sha256:
        return f"{whose} bundle {model.path} changed since it was benched (manifest sha256 {opened.sha256[:12]}..., the report has {model.sha256[:12]}...)"
    return None
