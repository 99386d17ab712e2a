"""`edgekd gate REPORT --budget BUDGET.yaml`: every budget line judged PASS, FAIL, INCONCLUSIVE or SKIP, with the
measured value and the budget beside it; JUnit XML and a markdown summary for a CI job.

A latency ratio is judged on its bootstrap interval: PASS when the whole interval is within the budget, FAIL when it
is wholly outside, INCONCLUSIVE otherwise; an inconclusive model is measured again once with four times the pairs
(`remeasure`). Exit 0 when nothing failed or stayed inconclusive, 1 otherwise, 2 on bad input. `publish` rewrites
report.html beside the report with the verdict at its top.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edgekd.config import BenchConfig, Budget, ModelBudget, read_yaml, shorten, validate_config
from edgekd.errors import ConfigError

from .report_model import ModelResult, Ratio, Report, Run
from .report_view import reference_label, shown_path, source_words

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


def judge(report: Report, budget: Budget, remeasure: Remeasure | None = None) -> list[Check]:
    """Every check of every candidate model with a budget; `remeasure(model)` gives a model's new ratio (4x the pairs).
    Architecture-only models (bert-base-shape: random weights) are measured for comparison and never judged."""
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
            checks += _checks(model, model.run_at(budget.threads), limits, report, remeasure)
    if not checks:
        raise ConfigError("the budget checks nothing: name the report's models under `models:` or give a `default:`")
    return checks


def _checks(model: ModelResult, run: Run, limits: ModelBudget, report: Report, remeasure: Remeasure | None) -> list[Check]:
    name = model.name
    out: list[Check] = []

    def limit(check: str, value: float, budget: float, unit: str, fmt: str = "{:.2f}") -> None:
        verdict: Verdict = "PASS" if value <= budget else "FAIL"
        out.append(Check(name, check, verdict, fmt.format(value) + unit, "<= " + fmt.format(budget) + unit))

    if limits.max_accuracy_drop is not None:
        if model.accuracy is None or model.accuracy.drop is None:
            raise ConfigError(f"{name}: the budget limits the accuracy drop but the report has no teacher accuracy; bench with --teacher")
        limit("accuracy drop", 100 * model.accuracy.drop, limits.max_accuracy_drop, " pts")
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
    verdict = _interval_verdict(ratio, budget)
    note = ""
    if verdict == "INCONCLUSIVE" and remeasure is not None:
        ratio = remeasure(model)
        verdict = _interval_verdict(ratio, budget)
        note = f"measured again with {ratio.pairs} pairs"
    shown = f"{ratio.median:.3f} (95% CI {ratio.low:.3f}-{ratio.high:.3f}) of {reference_label(report)}"
    return Check(model.name, "latency ratio", verdict, shown, f"<= {budget:.3f}", note)


def _interval_verdict(ratio: Ratio, budget: float) -> Verdict:
    if ratio.high <= budget:
        return "PASS"
    if ratio.low > budget:
        return "FAIL"
    return "INCONCLUSIVE"


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


def publish(report_path: Path, report: Report, checks: list[Check], budget: Budget, budget_path: Path | None = None) -> Path:
    """Rewrite the page beside the report (report.json -> report.html) with the verdict at its top; `budget_path` is
    the budget file, None for a recipe's `gate:` section."""
    from .report import write_page

    page = report_path.with_suffix(".html")
    source = f"`{shown_path(str(budget_path.absolute()), page.parent)}`" if budget_path else "the recipe's `gate:` budget"
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
