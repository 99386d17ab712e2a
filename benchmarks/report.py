"""Writing a benchmark report: report.json (validated through the typed records of `report_model`, whose JSON schema is
shipped beside this module as report.schema.json) and report.md.

The markdown says where every latency was measured (`latency_source`) and labels architecture-only references.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edgekd.errors import BundleError
from edgekd.writer import write_text_atomic

from .report_model import Report

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
    texts = {"md": markdown(report), "html": page(report, plots), "json": json.dumps(report.dump(), indent=1, allow_nan=False) + "\n"}
    paths = {kind: out / f"report.{kind}" for kind in texts}
    for kind, path in paths.items():
        write_text_atomic(path, texts[kind])
    return {**paths, **{f"plot_{k}": v for k, v in plots.items()}}


def page(report: Report, plots: dict[str, Path]) -> str:
    """report.html: the markdown's facts as HTML tables and the plots embedded (it opens offline, alone)."""
    import base64
    import html

    from .plots import PLOTS

    md = markdown(report).splitlines()
    body: list[str] = []
    table: list[list[str]] = []
    for line in [*md, ""]:
        if line.startswith("|"):
            if not set(line) <= set("|-"):
                table.append([html.escape(cell.strip()) for cell in line.strip("|").split("|")])
            continue
        if table:
            head, *rows = table
            body.append("<table><thead><tr>" + "".join(f"<th>{c}</th>" for c in head) + "</tr></thead><tbody>"
                        + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows) + "</tbody></table>")
            table = []
        if line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("- "):
            body.append(f"<p>{html.escape(line[2:]).replace('**', '')}</p>")
    for key, path in plots.items():
        data = base64.b64encode(path.read_bytes()).decode()
        body.append(f'<figure id="plot-{key}"><img alt="{html.escape(PLOTS[key])}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{html.escape(PLOTS[key])}</figcaption></figure>")
    style = ("body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:3px 6px}figure{margin:1.5em 0}img{max-width:100%}")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>edgekd benchmark report</title><style>{style}</style></head><body>" + "\n".join(body) + "</body></html>\n"


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def markdown(report: Report) -> str:
    machine, target, settings = report.machine, report.target, report.settings
    flags = ", ".join(machine.flags) or "none of note"
    versions = ", ".join(f"{k} {v}" for k, v in machine.versions.items())
    lines = [
        "# edgekd benchmark report",
        "",
        f"- target: `{target.name}`; latencies are **{target.latency_source}**"
        + (" (functional emulation: not device latency)" if target.latency_source == "emulated" else ""),
        f"- machine: {machine.arch}, {machine.cpu}, {machine.cores} cores (flags: {flags}); Python {machine.python}; {versions}",
        f"- protocol: batch 1, {settings.queries}+ queries and {settings.seconds:g}+ s per measurement after warm-up, "
        f"{settings.texts} real dev sentences and a padded worst case; threads {settings.threads}; a fresh process per "
        "artifact; ratios are medians of interleaved pairs against the reference with a bootstrap 95% interval.",
        f"- teacher (accuracy drops): {settings.teacher.path if settings.teacher else 'none'}; latency reference: "
        f"{settings.reference or 'none'}; created {report.created} by edgekd {report.edgekd_version}",
        "",
    ]
    for threads in settings.threads:
        lines += [
            f"## {threads} thread(s)",
            "",
            "| model | format | accuracy | drop vs teacher | size MB (gzip) | parameters | p50 / p90 ms (real) | p90 early-stop ms | "
            "p50 ms (padded) | start-up ms | memory MB | latency vs reference (95% CI) | speed-up |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for model in report.models:
            run = model.run_at(threads)
            accuracy, ratio, size, real = model.accuracy, run.vs_reference, model.size, run.real
            name = model.name + (" (architecture only, random weights)" if model.architecture_only else "")
            flags_ok = real.valid_min_queries and real.valid_min_duration
            lines.append("| " + " | ".join([
                name,
                model.format,
                f"{100 * accuracy.value:.2f}%" if accuracy else "n/a",
                f"{100 * accuracy.drop:.2f} pts" if accuracy and accuracy.drop is not None else "",
                f"{size.bytes / 1e6:.2f} ({size.gzip_bytes / 1e6:.2f})",
                f"{size.parameters:,}",
                f"{_ms(real.p50)} / {_ms(real.p90)}" + ("" if flags_ok else " (invalid: too few queries or too short)"),
                _ms(real.p90_early_stopping),
                _ms(run.padded.p50),
                _ms(run.startup_ms),
                f"{run.memory_kb / 1024:.1f}" if run.memory_kb is not None else "",
                f"{ratio.median:.3f} ({ratio.low:.3f}-{ratio.high:.3f})" if ratio else "",
                f"{1 / ratio.median:.1f}x" if ratio else "",
            ]) + " |")
        lines.append("")
    return "\n".join(lines)
