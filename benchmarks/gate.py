"""`edgekd gate REPORT --budget BUDGET.yaml`: every budget line judged PASS, FAIL, INCONCLUSIVE or SKIP, with the
measured value and the budget beside it; JUnit XML and a markdown summary for a CI job.

A latency ratio is judged on its bootstrap interval: PASS when the whole interval is within the budget, FAIL when it
is wholly outside, INCONCLUSIVE otherwise; an inconclusive model is measured again once with four times the pairs
(`remeasure`). The accuracy drop from the teacher is judged the same way, on a paired bootstrap interval over the dev
examples (both models' per-example predictions in the report), in the budget's metric or the task's (MRPC f1, more
than two classes macro_f1, regression pearson, otherwise accuracy); and every judged model with an accuracy must be
significantly better than the majority-class (regression: mean) predictor. Exit 0 when nothing failed or stayed
inconclusive, 1 otherwise, 2 on bad input. `publish` rewrites report.html beside the report with the verdict at its
top. `gate_baseline` judges a report against another report.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from edgekd.config import BenchConfig, Budget, ModelBudget, read_yaml, shorten, validate_config
from edgekd.errors import ConfigError
from edgekd.metrics import METRIC_FUNCTIONS
from edgekd.tasks import gate_metric

from .report_model import ModelResult, Ratio, Report, Run
from .report_view import reference_label, shown_path, source_words, teacher_predictions
from .stats import Difference, paired_metric_difference

logger = logging.getLogger(__name__)
Verdict = Literal["PASS", "FAIL", "INCONCLUSIVE", "SKIP"]
# Measures a model's latency ratio again against the report's reference, with more pairs.
Remeasure = Callable[[ModelResult], Ratio]


@dataclass(frozen=True)
class Check:
    model: str
    name: str
    verdict: Verdict
    measured: str
    budget: str
    note: str = ""

    def line(self) -> str:
        return f"{self.verdict:<12} {self.model} {self.name}: measured {self.measured}, budget {self.budget}" + (f" ({self.note})" if self.note else "")


def load_budget(path: Path) -> Budget:
    """Read and validate a budget file: at most 1 MiB of YAML, no aliases, no key written twice, finite numbers."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such budget file")
    return validate_config(Budget, read_yaml(path, "budget"), source=str(path))


def remeasurer(report: Report, budget: Budget, target: str | None = None) -> Remeasure:
    """`remeasure(model)` for `judge`: the model measured again against the report's reference, with 4x the pairs."""
    settings = report.settings

    def remeasure(model: ModelResult) -> Ratio:
        from .bench import bench

        logger.warning("%s: latency ratio inconclusive; measuring again with 4x the pairs", model.name)
        again = BenchConfig(
            target=target or report.target.name, reference=settings.reference, threads=[budget.threads],
            queries=4 * max(settings.queries, settings.texts), seconds=settings.seconds, texts=settings.texts,
        )
        fresh = bench([Path(model.path)], again, settings.data_overrides)
        ratio = fresh.candidates()[0].runs[0].vs_reference
        assert ratio is not None, "a model measured against a reference has a paired ratio"
        return ratio

    return remeasure


def judge(report: Report, budget: Budget, remeasure: Remeasure | None = None, *, require_checks: bool = True) -> list[Check]:
    """Every check of every candidate model with a budget; `remeasure(model)` gives a model's new ratio (4x the pairs).
    Architecture-only models (bert-base-shape: random weights) are measured for comparison and never judged.
    `require_checks=False` (a baseline gate judges too): a budget that checks nothing is not an error."""
    candidates = [m for m in report.models if m.judged]
    names = {m.name for m in candidates}
    unknown = sorted(set(budget.models) - names)
    if unknown:
        raise ConfigError(f"budget names models the report does not have: {shorten(', '.join(unknown), 500)}; "
                          f"the report has {shorten(', '.join(sorted(names)), 500)}")
    if budget.threads not in report.settings.threads:
        raise ConfigError(f"the budget judges the run at {budget.threads} thread(s); the report has runs at {report.settings.threads}")
    checks: list[Check] = []
    for model in candidates:
        limits = budget.models.get(model.name, budget.default)
        if limits is not None:
            metric = metric_for(report, limits, budget)
            checks += _checks(model, model.run_at(budget.threads), limits, metric, report, remeasure)
            floor = majority_check(model, metric, report)
            if floor is not None:
                checks.append(floor)
    if not checks and require_checks:
        raise ConfigError("the budget checks nothing: name the report's models under `models:` or give a `default:`")
    return checks


def _checks(model: ModelResult, run: Run, limits: ModelBudget, metric: str, report: Report, remeasure: Remeasure | None) -> list[Check]:
    name = model.name
    out: list[Check] = []

    def limit(check: str, value: float, budget: float, unit: str, fmt: str = "{:.2f}") -> None:
        verdict: Verdict = "PASS" if value <= budget else "FAIL"
        out.append(Check(name, check, verdict, fmt.format(value) + unit, "<= " + fmt.format(budget) + unit))

    if limits.max_accuracy_drop is not None:
        out.append(_drop_check(model, limits.max_accuracy_drop, metric, report))
    if limits.max_bytes is not None:
        limit("size", model.size.bytes, limits.max_bytes, " bytes", "{:,.0f}")
    if limits.max_memory_mb is not None:
        if run.memory_kb is None:
            raise ConfigError(f"{name}: the report has no memory figure (VmHWM is read from Linux's /proc)")
        limit("peak memory", run.memory_kb / 1024, limits.max_memory_mb, " MB", "{:.1f}")
    if limits.max_latency_ratio is not None:
        out.append(_ratio_check(model, run, limits.max_latency_ratio, report, remeasure))
    if limits.max_p90_ms is not None:
        target = report.target
        p90 = run.real.p90_early_stopping
        if target.latency_source != "measured_device" or target.name != limits.device:
            out.append(Check(name, "p90 latency", "SKIP", f"{run.real.p90:.2f} ms on {target.name} ({target.latency_source})",
                             f"<= {limits.max_p90_ms:.2f} ms on {limits.device}", "absolute latency is judged only on its device"))
        elif p90 is None:
            out.append(Check(name, "p90 latency", "INCONCLUSIVE", "too few queries for an early-stopping estimate", f"<= {limits.max_p90_ms:.2f} ms"))
        else:
            limit("p90 latency (early-stopping estimate)", p90, limits.max_p90_ms, " ms")
    return out


def _ratio_check(model: ModelResult, run: Run, budget: float, report: Report, remeasure: Remeasure | None) -> Check:
    ratio = run.vs_reference
    if ratio is None:
        raise ConfigError(f"{model.name}: the budget limits the latency ratio but the report has no reference; bench with --reference")
    verdict = interval_verdict(ratio, budget)
    note = ""
    if verdict == "INCONCLUSIVE" and remeasure is not None:
        ratio = remeasure(model)
        verdict = interval_verdict(ratio, budget)
        note = f"measured again with {ratio.pairs} pairs"
    shown = f"{ratio.median:.3f} (95% CI {ratio.low:.3f}-{ratio.high:.3f}) of {reference_label(report)}"
    return Check(model.name, "latency ratio", verdict, shown, f"<= {budget:.3f}", note)


def interval_verdict(ratio: Ratio | Difference, budget: float) -> Verdict:
    """PASS when the whole interval is at or below the budget, FAIL when it is wholly above, INCONCLUSIVE otherwise."""
    if ratio.high <= budget:
        return "PASS"
    if ratio.low > budget:
        return "FAIL"
    return "INCONCLUSIVE"


# The metrics of a score (regression); the others are of label ids.
CORRELATIONS = ("pearson", "spearman")
# What an accuracy check says of a report written before per-example predictions were recorded.
BENCH_AGAIN = "the report has no per-example predictions (written before edgekd recorded them): bench again to judge it with an interval"


def metric_for(report: Report, limits: ModelBudget | None, budget: Budget) -> str:
    """The metric a model's accuracy is judged in: its budget entry's, the budget's, else the task's default."""
    chosen = (limits.metric if limits is not None else None) or budget.metric
    dev = report.dev
    if chosen and dev is not None and (dev.problem == "regression") != (chosen in CORRELATIONS):
        fits = ", ".join(CORRELATIONS) if dev.problem == "regression" else ", ".join(m for m in METRIC_FUNCTIONS if m not in CORRELATIONS)
        raise ConfigError(f"the budget's metric {chosen} does not fit the {dev.problem} task {dev.task}; use one of {fits}")
    if chosen:
        return chosen
    if dev is not None:
        return gate_metric(dev.task, dev.problem, dev.labels)
    scored = next((m.accuracy.metric for m in report.models if m.accuracy is not None), None)
    return scored or "accuracy"


def difference(first: list[int] | list[float], second: list[int] | list[float] | np.ndarray, report: Report, metric: str) -> Difference:
    """metric(first) - metric(second) in points over the report's dev examples, with its paired bootstrap interval."""
    assert report.dev is not None, "predictions come with the report's dev set"
    return paired_metric_difference(np.asarray(first), np.asarray(second), np.asarray(report.dev.gold), METRIC_FUNCTIONS[metric])


def shown_difference(metric: str, what: str, diff: Difference) -> str:
    """e.g. `f1 drop 1.23 pts (95% CI 0.40 to 2.10)`."""
    return f"{metric} {what} {diff.value:.2f} pts (95% CI {diff.low:.2f} to {diff.high:.2f})"


def _drop_check(model: ModelResult, budget: float, metric: str, report: Report) -> Check:
    """The drop metric(teacher) - metric(model) in points, judged on its paired bootstrap interval."""
    shown_budget = f"<= {budget:.2f} pts"
    teacher = teacher_predictions(report)
    if model.accuracy is None or (model.accuracy.drop is None and teacher is None):
        raise ConfigError(f"{model.name}: the budget limits the accuracy drop but the report has no teacher accuracy; bench with --teacher")
    if report.dev is None or model.accuracy.predictions is None or teacher is None:
        drop = model.accuracy.drop
        shown = f"{model.accuracy.metric} drop {100 * drop:.2f} pts (a point estimate)" if drop is not None else "no interval"
        return Check(model.name, "accuracy drop", "INCONCLUSIVE", shown, shown_budget, BENCH_AGAIN)
    diff = difference(teacher, model.accuracy.predictions, report, metric)
    return Check(model.name, "accuracy drop", interval_verdict(diff, budget), shown_difference(metric, "drop", diff), shown_budget)


def majority_check(model: ModelResult, metric: str, report: Report) -> Check | None:
    """The floor every judged model with an accuracy meets: metric(model) - metric(always the most frequent dev label;
    regression: always the mean score) with its paired bootstrap interval wholly above 0. None without an accuracy."""
    if model.accuracy is None:
        return None
    name, shown_budget = "better than majority baseline", "> 0 pts (whole interval)"
    if report.dev is None or model.accuracy.predictions is None:
        return Check(model.name, name, "INCONCLUSIVE", f"{model.accuracy.metric} {100 * model.accuracy.value:.2f}", shown_budget, BENCH_AGAIN)
    gold = np.asarray(report.dev.gold)
    if report.dev.problem == "regression":
        constant, what = np.full(gold.size, gold.mean()), f"always answering the mean score {gold.mean():.3g}"
    else:
        label = int(np.bincount(gold.astype(np.int64)).argmax())
        shown_label = report.dev.labels[label] if label < len(report.dev.labels) else str(label)
        constant, what = np.full(gold.size, label), f"always answering {shown_label!r}"
    diff = difference(model.accuracy.predictions, constant, report, metric)
    verdict: Verdict = "PASS" if diff.low > 0 else "FAIL"
    note = "" if verdict == "PASS" else f"not significantly better than {what}"
    shown = f"{metric} {diff.value:+.2f} pts over {what} (95% CI {diff.low:+.2f} to {diff.high:+.2f})"
    return Check(model.name, name, verdict, shown, shown_budget, note)


def exit_code(checks: list[Check]) -> int:
    return 1 if any(c.verdict in ("FAIL", "INCONCLUSIVE") for c in checks) else 0


def markdown(checks: list[Check], report: Report) -> str:
    icon = {"PASS": "✅ PASS", "FAIL": "❌ FAIL", "INCONCLUSIVE": "⚠️ INCONCLUSIVE", "SKIP": "⏭️ SKIP"}
    failed = sum(c.verdict in ("FAIL", "INCONCLUSIVE") for c in checks)
    lines = [
        f"## edgekd gate: {'FAIL' if failed else 'PASS'} ({len(checks) - failed}/{len(checks)} checks pass or skip)",
        "",
        f"Latencies {source_words(report.target.latency_source)} (target `{report.target.name}`), {report.machine.cpu}.",
        "",
        "| model | check | measured | budget | verdict |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {c.model} | {c.name} | {c.measured} | {c.budget} | {icon[c.verdict]}{' (' + c.note + ')' if c.note else ''} |" for c in checks]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Outcome:
    """The gate's decision as report.html shows it at its top: the checks, the thread count judged, the budget's
    source as the reader sees it (markdown inline)."""

    checks: list[Check]
    threads: int
    budget: str

    @property
    def verdict(self) -> Literal["PASS", "FAIL"]:
        return "FAIL" if exit_code(self.checks) else "PASS"


def publish(report_path: Path, report: Report, checks: list[Check], budget: Budget, budget_path: Path | None = None,
            baseline_path: Path | None = None) -> Path:
    """Rewrite the page beside the report (report.json -> report.html) with the verdict at its top; `budget_path` is
    the budget file, None for a recipe's `gate:` section (or no budget beside a `baseline_path`)."""
    from .report import write_page

    page = report_path.with_suffix(".html")
    source = f"`{shown_path(str(budget_path.absolute()), page.parent)}`" if budget_path else "the recipe's `gate:` budget"
    if baseline_path is not None:
        against = f"the baseline report `{shown_path(str(baseline_path.absolute()), page.parent)}`"
        source = f"{source} and {against}" if budget_path else against
    return write_page(report, page, Outcome(checks, budget.threads, source))


def junit(checks: list[Check]) -> str:
    failures = sum(c.verdict == "FAIL" for c in checks)
    errors = sum(c.verdict == "INCONCLUSIVE" for c in checks)
    skipped = sum(c.verdict == "SKIP" for c in checks)
    cases = []
    for c in checks:
        body = ""
        message = html.escape(c.line(), quote=True)
        if c.verdict == "FAIL":
            body = f'<failure message="{message}"/>'
        elif c.verdict == "INCONCLUSIVE":
            body = f'<error message="{message}"/>'
        elif c.verdict == "SKIP":
            body = f'<skipped message="{message}"/>'
        cases.append(f'  <testcase classname="edgekd.gate.{html.escape(c.model, quote=True)}" name="{html.escape(c.name, quote=True)}">{body}</testcase>')
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<testsuite name="edgekd gate" tests="{len(checks)}" failures="{failures}" errors="{errors}" skipped="{skipped}">\n'
        + "\n".join(cases) + "\n</testsuite>\n"
    )
