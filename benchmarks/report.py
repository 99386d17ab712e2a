"""Writing a benchmark report: report.json (validated through the typed records of `report_model`, whose JSON schema is
shipped beside this module as report.schema.json), report.md and report.html.

Both pages show what `report_view` makes of the report: where every latency was measured, in words; the results with
the reference's own row at 1.000; a legend of every column; short names with the full identifiers in a list; paths
relative to the report folder; a flag on an artifact slower than its parent. report.html starts with the gate's verdict
once a budget has judged the report (`edgekd gate` and `edgekd run` rewrite it), or says that none has.
"""

from __future__ import annotations

import html
import importlib.util
import json
import logging
import math
import re
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from edgekd.errors import BundleError
from edgekd.writer import write_text_atomic

from . import report_view as view
from .report_model import Report

if TYPE_CHECKING:
    from .gate import Outcome

logger = logging.getLogger(__name__)
SCHEMA = "report.schema.json"


def schema() -> dict[str, Any]:
    """The shipped JSON schema (generated from `Report`; a test keeps the two equal)."""
    return json.loads(resources.files("edgekd.benchmarks").joinpath(SCHEMA).read_text(encoding="utf-8"))


def validate(report: Report | Mapping[str, Any]) -> Report:
    """The report as typed records. A BundleError names every place where it breaks the schema, or every number that
    is not finite (NaN and infinities are not JSON, and the schema's number type accepts them)."""
    # Non-finite numbers first: NaN also breaks the schema's minimums, and "measure again" is the message that helps.
    bad = list(non_finite(report.dump() if isinstance(report, Report) else report))
    if bad:
        where = ", ".join(f"{_where(path)} = {value}" for path, value in bad[:5])
        raise BundleError(f"the benchmark report holds {len(bad)} number(s) that are not finite ({where}); a measurement "
                          "went wrong: measure again")
    if isinstance(report, Report):
        return report
    try:
        return Report.model_validate(report)
    except ValidationError as exc:
        version = report.get("schema_version") if isinstance(report, Mapping) else None
        lines = "\n".join(f"  - {_where(e['loc']) or '(top)'}: {e['msg'][:200]}" for e in exc.errors(include_url=False)[:20])
        raise BundleError(f"the benchmark report does not match {SCHEMA} (version {str(version)[:20]}):\n{lines}") from None


def _where(path: tuple[Any, ...]) -> str:
    return "/".join(str(p)[:80] for p in path)


def non_finite(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], float]]:
    """Where a JSON-like tree holds NaN or an infinity: (path of keys and indexes, value), in document order. A stack,
    not recursion: the tree is walked before the schema has refused whatever a hostile file nests."""
    stack: list[tuple[tuple[Any, ...], Any]] = [(path, node)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            yield where, value
        elif isinstance(value, dict):
            stack.extend(((*where, key), child) for key, child in reversed(value.items()))
        elif isinstance(value, (list, tuple)):
            stack.extend(((*where, index), child) for index, child in reversed(list(enumerate(value))))


def _refuse_constant(name: str) -> float:
    """`json.loads`' hook for NaN, Infinity and -Infinity, which Python's json reads by default and JSON has not."""
    raise ValueError(f"{name} is not a JSON number")


def load(path: Path) -> Report:
    try:
        report = json.loads(path.read_text(encoding="utf-8"), parse_constant=_refuse_constant)
    except FileNotFoundError:
        raise BundleError(f"{path}: no such report; write one with `edgekd bench ... -o DIR`") from None
    except RecursionError:
        raise BundleError(f"{path}: not a JSON report (nested too deeply)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: not a JSON report ({exc})") from None
    except ValueError as exc:
        raise BundleError(f"{path}: not a JSON report ({exc}: a measurement went wrong; measure again)") from None
    if not isinstance(report, dict):
        raise BundleError(f"{path}: not a JSON object")
    return validate(report)


def write(report: Report | Mapping[str, Any], out: Path) -> dict[str, Path]:
    """Validate, then write report.json, report.md, the plots and report.html into `out`; returns their paths."""
    from .plots import draw

    report = validate(report)
    out.mkdir(parents=True, exist_ok=True)
    # report.json is the mark of a finished set: removed first, written last, so a writer killed halfway leaves
    # no report.json beside a mix of old and new pages (each file is also written atomically).
    (out / "report.json").unlink(missing_ok=True)
    plots = draw(report, out)
    texts = {"md": markdown(report, out), "html": page(report, plots, base=out),
             "json": json_text(report)}
    paths = {kind: out / f"report.{kind}" for kind in texts}
    for kind, path in paths.items():
        write_text_atomic(path, texts[kind])
    return {**paths, **{f"plot_{k}": v for k, v in plots.items()}}


# A JSON list of numbers as json.dumps(indent=1) lays it out: one number per line.
_NUMBER_LIST = re.compile(r"\[\n(?:[ ]*-?[0-9][0-9.eE+-]*,\n)*[ ]*-?[0-9][0-9.eE+-]*\n[ ]*\]")


def json_text(report: Report) -> str:
    """report.json's text: indented, with each list of numbers (latencies, per-example predictions, gold labels) on one
    line, so that a 10k-example dev set adds about 2 bytes per example and model instead of 8."""
    text = json.dumps(report.dump(), indent=1, allow_nan=False)
    return _NUMBER_LIST.sub(lambda match: json.dumps(json.loads(match.group(0)), separators=(",", ":")), text) + "\n"


def write_page(report: Report | Mapping[str, Any], path: Path, gate: Outcome | None = None) -> Path:
    """Write report.html alone at `path` (the gate puts its verdict at the top); the plots are drawn again from the
    report into a scratch folder and embedded, so no other file beside it changes."""
    import tempfile

    from .plots import draw

    report = validate(report)
    if importlib.util.find_spec("matplotlib") is None:
        # The gate installs without the benchmark stage's plotting library: the page says what is missing.
        logger.warning("%s: written without plots (matplotlib is not installed)", path)
        text = page(report, {}, gate, base=path.parent, no_plots="matplotlib is not installed here (pip install matplotlib)")
    else:
        with tempfile.TemporaryDirectory(prefix="edgekd-plots-") as scratch:
            text = page(report, draw(report, Path(scratch)), gate, base=path.parent)
    write_text_atomic(path, text)
    return path


def markdown(report: Report, base: Path | None = None) -> str:
    """report.md: the facts, a results table per thread count with its flags, the legend and the model list. Paths are
    shown relative to `base` (the report folder) or to the current directory."""
    lines = ["# edgekd benchmark report", "", *(f"- {fact}" for fact in view.facts(report, base)), ""]
    flags = view.slower_than_parent(report)
    for threads in report.settings.threads:
        lines += [f"## {threads} thread(s)", "", *_md_table(view.results_table(report, threads, base)), ""]
        lines += [f"- ⚠ **{flag.headline}.** {flag.detail}" for flag in flags if flag.threads == threads]
        lines += [""] if any(flag.threads == threads for flag in flags) else []
    lines += ["## How to read the table", "", *(f"- **{term}**: {words}" for term, words in view.legend(report)), ""]
    lines += ["## Models", "", *_md_table(view.models_table(report, base)), ""]
    return "\n".join(lines)


def _md_table(table: view.Table) -> list[str]:
    def row(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

    return [row(table.head), "|" + "---|" * len(table.head), *(row([c.text for c in cells]) for cells in table.rows)]


def _inline(text: str) -> str:
    """Markdown inline code and strong as tags; no backtick or `**` is left in the page."""
    escaped = html.escape(text, quote=False)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
    return escaped.replace("`", "").replace("**", "")


def _html_table(table: view.Table, css: str) -> str:
    def cell(c: view.Cell) -> str:
        title = f' title="{html.escape(c.title)}"' if c.title else ""
        kind = f' class="{c.css}"' if c.css else ""
        return f"<td{title}{kind}>{_inline(c.text)}</td>"

    head = "".join(f"<th>{_inline(h)}</th>" for h in table.head)
    rows = "".join("<tr>" + "".join(cell(c) for c in row) + "</tr>" for row in table.rows)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def _gate_html(report: Report, gate: Outcome | None) -> str:
    """The verdict and its table, failures first; or one line saying that no budget has judged the report."""
    if gate is None:
        return ('<p id="gate" class="ungated">Not gated: no budget has judged this report '
                f"({_inline('`edgekd gate report.json --budget BUDGET.yaml`')} puts its verdict here).</p>")
    names = dict(zip((m.name for m in report.models), view.display_names(report)))
    severity = {"FAIL": 0, "INCONCLUSIVE": 1, "PASS": 2, "SKIP": 3}
    counts = ", ".join(f"{n} {v}" for v in severity if (n := sum(c.verdict == v for c in gate.checks)))
    rows = [[view.Cell(names.get(c.model, c.model), c.model if names.get(c.model, c.model) != c.model else None), view.Cell(c.name), view.Cell(c.measured), view.Cell(c.budget),
             view.Cell(f"**{c.verdict}**" + (f" ({c.note})" if c.note else ""), css=f"v-{c.verdict.lower()}")]
            for c in sorted(gate.checks, key=lambda c: severity[c.verdict])]
    table = _html_table(view.Table(["model", "check", "measured", "budget", "verdict"], rows), "verdicts")
    return (f'<section id="gate" class="gate-{gate.verdict.lower()}"><h2>Gate: {gate.verdict}</h2>'
            f"<p>{len(gate.checks)} checks: {counts}. Judged at {gate.threads} thread(s) against {_inline(gate.budget)}; "
            f"latencies {html.escape(view.source_words(report.target.latency_source))}. A latency ratio passes when its "
            "whole 95% interval is within the budget, fails when the whole interval is outside it, and is inconclusive "
            "otherwise (then measured once more with 4x the pairs, unless the gate was told not to).</p>"
            f"{table}</section>")


def page(report: Report, plots: dict[str, Path], gate: Outcome | None = None, base: Path | None = None,
         no_plots: str | None = None) -> str:
    """report.html: the gate's verdict first (or a line saying it was never gated), the facts, the results with their
    flags, the legend, the model list, and the plots embedded (it opens offline, alone); `no_plots` says why there
    are none."""
    import base64

    from .plots import PLOTS

    body = ["<h1>edgekd benchmark report</h1>", _gate_html(report, gate)]
    body.append("<ul class='facts'>" + "".join(f"<li>{_inline(fact)}</li>" for fact in view.facts(report, base)) + "</ul>")
    flags = view.slower_than_parent(report)
    for threads in report.settings.threads:
        body.append(f"<h2>{threads} thread(s)</h2>" + _html_table(view.results_table(report, threads, base), "results"))
        body += [f'<p class="flag">⚠ <strong>{html.escape(flag.headline)}.</strong> {html.escape(flag.detail)}</p>'
                 for flag in flags if flag.threads == threads]
    body.append("<h2>How to read the table</h2><dl class='legend'>"
                + "".join(f"<dt>{_inline(term)}</dt><dd>{_inline(words)}</dd>" for term, words in view.legend(report)) + "</dl>")
    body.append("<h2>Models</h2>" + _html_table(view.models_table(report, base), "models"))
    if no_plots:
        body.append(f'<p class="ungated">No plots: {html.escape(no_plots)}.</p>')
    for key, path in plots.items():
        data = base64.b64encode(path.read_bytes()).decode()
        body.append(f'<figure id="plot-{key}"><img alt="{html.escape(PLOTS[key])}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{html.escape(PLOTS[key])}</figcaption></figure>")
    style = ("body{font-family:sans-serif;margin:2em;max-width:1400px;color:#222}table{border-collapse:collapse;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}th{background:#f3f3f3}td.flagged{background:#fff3cd}"
             "table.results td{text-align:right;white-space:nowrap}table.results td:nth-child(-n+2){text-align:left;white-space:normal}"
             "code{background:#f3f3f3;padding:0 2px}figure{margin:1.5em 0}img{max-width:100%}"
             "#gate{border:2px solid #999;padding:0.5em 1em;margin:1em 0}#gate.gate-pass{border-color:#2e7d32}"
             "#gate.gate-fail{border-color:#c62828}.gate-pass h2{color:#2e7d32}.gate-fail h2{color:#c62828}"
             "p.ungated{color:#555;font-style:italic}td.v-pass{color:#2e7d32}td.v-fail{color:#c62828;background:#fdecea}"
             "td.v-inconclusive{color:#8a6d00;background:#fff8e1}td.v-skip{color:#666}"
             "p.flag{background:#fff3cd;border-left:4px solid #e0a800;padding:0.4em 0.8em}"
             "dl.legend dt{font-weight:bold;margin-top:0.4em}dl.legend dd{margin-left:1.5em}")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>edgekd benchmark report</title>"
            f"<style>{style}</style></head><body>" + "\n".join(body) + "</body></html>\n")
