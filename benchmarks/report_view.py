"""What a reader sees of a benchmark report, shared by report.md, report.html and the plots: short display names, paths
that are not this machine's, sources in plain words, the results table as cells, the legend of its columns, and a flag
on every artifact measured slower than its parent.

Text here is markdown inline (`code`, **strong**): report.md prints it as it is, report.html turns it into tags.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekd.metrics import METRIC_FUNCTIONS

from .report_model import LatencySource, ModelResult, Ratio, Report
from .stats import paired_metric_difference

SOURCES: dict[LatencySource, str] = {
    "measured_host": "measured on this host",
    "measured_device": "measured on the device",
    "emulated": "emulated (functional only, not device latency)",
    "estimated": "estimated (not measured)",
}
BERT_BASE_SHAPE = "bert-base-shape"
# Longer names are shortened in the tables (the full identifier stays in a tooltip and the model list).
MAX_NAME = 32
REFERENCE = Ratio(median=1.0, low=1.0, high=1.0, pairs=0, confidence=0.95)


@dataclass(frozen=True)
class Cell:
    """One table cell: markdown inline text, a tooltip (the full identifier), a class for the page's style."""

    text: str
    title: str | None = None
    css: str | None = None


@dataclass(frozen=True)
class Table:
    head: list[str]
    rows: list[list[Cell]]


@dataclass(frozen=True)
class Slower:
    """An artifact measured slower than its parent in the same run: `factor` times its latency."""

    model: str
    parent: str
    threads: int
    factor: float
    headline: str
    detail: str


def source_words(source: LatencySource) -> str:
    return SOURCES[source]


def shown_path(path: str, base: Path | None = None) -> str:
    """A path as the report shows it: relative to the report folder when inside it, else to the current directory,
    else under `~`; never this machine's absolute path (a path already relative is shown as written)."""
    given = Path(path)
    if not given.is_absolute():
        return given.as_posix()
    for root in ([base] if base is not None else []) + [Path.cwd()]:
        for candidate, anchor in ((given, root.absolute()), (Path(os.path.realpath(given)), Path(os.path.realpath(root)))):
            if candidate.is_relative_to(anchor):
                return candidate.relative_to(anchor).as_posix() or "."
    home = Path.home()
    if given.is_relative_to(home) and home != Path("/"):
        return "~/" + given.relative_to(home).as_posix()
    return "…/" + "/".join(given.parts[-2:])


def shown_target(name: str, base: Path | None = None) -> str:
    """The target's name with a root filesystem path (qemu-aarch64:///srv/rootfs) shown as `shown_path` shows it."""
    scheme, sep, rest = name.partition("://")
    if not sep or not rest.startswith("/"):
        return name
    path, query_sep, query = rest.partition("?")
    return f"{scheme}://{shown_path(path, base)}{query_sep}{query}"


def display_names(report: Report) -> list[str]:
    """One short name per model (in the report's order): `bert-base-shape` for the architecture-only reference, long
    names cut in the middle; where two different models would read the same, their full names."""
    short = []
    for model in report.models:
        if model.architecture_only and model.name.startswith(BERT_BASE_SHAPE):
            short.append(BERT_BASE_SHAPE)
        elif len(model.name) > MAX_NAME:
            short.append(model.name[: MAX_NAME - 11] + "…" + model.name[-10:])
        else:
            short.append(model.name)
    full = {}
    for name, model in zip(short, report.models):
        full.setdefault(name, set()).add(model.name)
    return [name if len(full[name]) == 1 else model.name for name, model in zip(short, report.models)]


def reference_label(report: Report) -> str | None:
    """The latency reference by name (the measured reference's, or bert-base-shape), not by its path."""
    reference = report.settings.reference
    if reference is None:
        return None
    names = display_names(report)
    measured = next((names[i] for i, m in enumerate(report.models) if m.role == "reference"), None)
    return measured or (BERT_BASE_SHAPE if reference == BERT_BASE_SHAPE else Path(reference).name)


def ratio_of(model: ModelResult, threads: int) -> Ratio | None:
    """The model's latency ratio to the reference: exactly 1 for the reference itself."""
    return REFERENCE if model.role == "reference" else model.run_at(threads).vs_reference


def score(metric: str, value: float) -> str:
    """A dev score as the tables show it: accuracy in percent, a correlation as it is."""
    return f"{100 * value:.2f}%" if metric == "accuracy" else f"{value:.4f}"


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _tags(model: ModelResult) -> str:
    tags = (["reference"] if model.role == "reference" else []) + (["architecture only, random weights"] if model.architecture_only else [])
    return f" ({'; '.join(tags)})" if tags else ""


def _title(model: ModelResult, base: Path | None) -> str:
    return f"{model.name}\n{shown_path(model.path, base)}"


def accuracy_header(report: Report) -> str:
    metrics = {m.accuracy.metric for m in report.models if m.accuracy is not None}
    return f"{metrics.pop() if len(metrics) == 1 else 'metric'} (dev)"


def results_table(report: Report, threads: int, base: Path | None = None) -> Table:
    """The results at one thread count: one row per model, the reference's ratio 1.000 and speed-up 1.0x."""
    names = display_names(report)
    flagged = {flag.model: flag for flag in slower_than_parent(report) if flag.threads == threads}
    head = ["model", "format", accuracy_header(report), "drop vs teacher (pts)", "size MB (gzip)", "parameters",
            "p50 / p90 ms (real)", "p50 / p90 ms (text in)", "p90 early-stop ms", "p50 ms (padded)", "start-up ms", "peak memory MiB",
            "latency vs reference (95% CI)", "speed-up"]
    rows = []
    for name, model in zip(names, report.models):
        run = model.run_at(threads)
        accuracy, size, real = model.accuracy, model.size, run.real
        ratio = ratio_of(model, threads) if report.settings.reference is not None else None
        flag = flagged.get(model.name) if model.role == "candidate" else None
        label = name + _tags(model) + (" ⚠ slower than its parent" if flag else "")
        title = _title(model, base) + (f"\n{flag.headline}" if flag else "")
        valid = real.valid_min_queries and real.valid_min_duration
        rows.append([
            Cell(label, title, "flagged" if flag else None),
            Cell(model.format),
            Cell(score(accuracy.metric, accuracy.value) if accuracy else "n/a"),
            Cell(drop_text(report, model)),
            Cell(f"{size.bytes / 1e6:.2f} ({size.gzip_bytes / 1e6:.2f})"),
            Cell(f"{size.parameters:,}"),
            Cell(f"{_ms(real.p50)} / {_ms(real.p90)}" + ("" if valid else " (invalid: too few queries or too short)")),
            Cell(f"{_ms(run.end_to_end.p50)} / {_ms(run.end_to_end.p90)}" if run.end_to_end else "not measured"),
            Cell(_ms(real.p90_early_stopping)),
            Cell(_ms(run.padded.p50)),
            Cell(_ms(run.startup_ms)),
            Cell(f"{run.memory_kb / 1024:.1f}" if run.memory_kb is not None else ""),
            Cell("1.000 (reference)" if model.role == "reference" and ratio else
                 f"{ratio.median:.3f} ({ratio.low:.3f}-{ratio.high:.3f})" if ratio else "n/a"),
            Cell(_times(1 / ratio.median) if ratio and ratio.median > 0 else "n/a"),
        ])
    return Table(head, rows)


def teacher_predictions(report: Report) -> list[int] | list[float] | None:
    """The teacher's per-example predictions: the --teacher scored in the run, else the reference measured in it
    (as bench compares drops against the reference when no teacher is given)."""
    if report.settings.teacher is not None:
        return report.settings.teacher.predictions
    reference = next((m for m in report.models if m.role == "reference" and m.accuracy is not None), None)
    return reference.accuracy.predictions if reference is not None and reference.accuracy is not None else None


def drop_text(report: Report, model: ModelResult) -> str:
    """The drop from the teacher in points, with its paired bootstrap 95% interval when the report has per-example
    predictions of both (the gate's statistic, in the report's metric)."""
    accuracy = model.accuracy
    if accuracy is None or accuracy.drop is None:
        return ""
    teacher = teacher_predictions(report)
    if report.dev is None or accuracy.predictions is None or teacher is None or model.role == "reference":
        return f"{100 * accuracy.drop:.2f}"
    diff = paired_metric_difference(np.asarray(teacher), np.asarray(accuracy.predictions), np.asarray(report.dev.gold),
                                    METRIC_FUNCTIONS[accuracy.metric])
    return f"{diff.value:.2f} ({diff.low:.2f} to {diff.high:.2f})"


def _times(value: float) -> str:
    return f"{value:.1f}x" if value >= 0.95 else f"{value:.2f}x"


def models_table(report: Report, base: Path | None = None) -> Table:
    """The footnote of the results: each short name with its full identifier, bundle folder, parent and hash."""
    rows = [[Cell(name + _tags(model)), Cell(f"`{model.name}`"), Cell(f"`{shown_path(model.path, base)}`"),
             Cell(model.parent or ""), Cell(f"`{model.sha256[:12]}`", model.sha256)]
            for name, model in zip(display_names(report), report.models)]
    return Table(["model", "full identifier", "bundle", "parent", "sha256"], rows)


def facts(report: Report, base: Path | None = None) -> list[str]:
    """The lines above the tables: where it was measured, on what, how, against what."""
    machine, target, settings = report.machine, report.target, report.settings
    versions = ", ".join(f"{k} {v}" for k, v in machine.versions.items())
    teacher = settings.teacher
    reference = reference_label(report)
    return [
        f"Latencies are **{source_words(target.latency_source)}** (target `{shown_target(target.name, base)}`).",
        f"Machine: {machine.arch}, {machine.cpu}, {machine.cores} cores (CPU flags: {', '.join(machine.flags) or 'none of note'}); "
        f"Python {machine.python}" + (f"; {versions}" if versions else "") + ".",
        (f"Protocol: batch 1; at least {settings.queries} queries and {settings.seconds:g} s per measurement after warm-up; "
         f"{settings.texts} real dev sentences and a padded worst case; {', '.join(map(str, settings.threads))} thread(s); "
         "a fresh process per artifact."),
        "Accuracy drops against the teacher "
        + (f"`{shown_path(teacher.path, base)}`" if teacher else "(none given: drops, if any, are against the reference)")
        + "; latency ratios against " + (f"`{reference}`" if reference else "nothing (no reference was measured)")
        + f". Created {report.created} by edgekd {report.edgekd_version}.",
    ]


def legend(report: Report) -> list[tuple[str, str]]:
    """Every column of the results table, in words, with this report's numbers (examples, queries, pairs)."""
    settings = report.settings
    scored = [m.accuracy for m in report.models if m.accuracy is not None]
    examples = ", ".join(sorted({f"{a.examples:,}" for a in scored})) or "no"
    teacher = settings.teacher
    metric = accuracy_header(report).removesuffix(" (dev)")
    pairs = sorted({r.pairs for m in report.models for run in m.runs if (r := run.vs_reference) is not None})
    padded = sorted({run.padded_tokens for m in report.models for run in m.runs})
    reference = reference_label(report)
    if teacher is not None:
        against = (f"the teacher's dev {teacher.metric} ({score(teacher.metric, teacher.value)}"
                   + (f" on {teacher.examples:,} examples" if teacher.examples else "") + ") minus this model's")
    else:
        against = "the reference's dev score (measured in this run) minus this model's; blank when there is none"
    judged_apart = "; architecture only: random weights in BERT-base's shape, measured for latency and never judged"
    ratio = (
        f"this model's latency divided by `{reference}`'s, the two measured back to back in the same process, query "
        f"after query; the median over {', '.join(map(str, pairs)) or 'the'} pairs and, in parentheses, its bootstrap "
        "95% confidence interval. Below 1.000 is faster; the reference's own row is 1.000 by definition."
    ) if reference else "n/a: no reference was measured in this run (bench with --reference)."
    others = "; ".join(words for key, words in SOURCES.items() if key != report.target.latency_source)
    return [
        ("model", (
            "the bundle's folder name, shortened when long (hover it for the full identifier; the model list below has "
            "it with its bundle folder). (reference) marks the latency reference"
            + (judged_apart if any(m.architecture_only for m in report.models) else "") + "."
        )),
        ("format", "the file measured: onnx (ONNX Runtime) or tflite (LiteRT)."),
        (accuracy_header(report), (
            f"{metric} of this exact file run through edgekd's runtime on the whole dev split ({examples} examples); "
            "n/a for a model with random weights."
        )),
        ("drop vs teacher (pts)", f"{against}, in percentage points: positive is worse than the teacher; in parentheses "
                                  "its paired bootstrap 95% interval over the dev examples, when the report has every "
                                  "example's prediction (what `edgekd gate` judges)."),
        ("size MB (gzip)", (
            "the model file on disk in MB (10^6 bytes); in parentheses its gzip size (level 6), about what it adds to "
            "an app download."
        )),
        ("parameters", "weights stored in the file (report.json also counts the non-zero ones)."),
        ("p50 / p90 ms (real)", (
            f"median and 90th-percentile latency of one query (batch 1) over at least {settings.queries} measured "
            f"queries and {settings.seconds:g} s, on {settings.texts} real dev sentences at their own lengths, after "
            "warm-up."
        )),
        ("p50 / p90 ms (text in)", (
            "the same texts from the string: tokenization (the BiLSTM's word tokenizer is pure Python), the model and "
            "the softmax, as an app calls `Classifier.predict`; 'not measured' in reports written before it was."
        )),
        ("p90 early-stop ms", (
            "MLPerf's early-stopping estimate: with 99% confidence the true p90 is at most this, given how many "
            "queries were measured (blank when too few); an absolute p90 budget is judged on it, and only on its device."
        )),
        ("p50 ms (padded)", (
            f"median latency with every input padded to the maximum length ({', '.join(map(str, padded))} tokens): the "
            "worst case."
        )),
        ("start-up ms", (
            "creating the runtime session from the file in a fresh process (reading it, optimizing the graph), before "
            "the first inference, which report.json gives apart; the runtime's library is imported before the clock starts."
        )),
        ("peak memory MiB", (
            "peak resident memory (VmHWM) of the process that measured the model minus that of a baseline process that "
            "imported the runtime and loaded nothing, in MiB (2^20 bytes); blank where Linux's /proc is absent. An "
            "executorch file's includes the torch that ExecuTorch's Python bindings import (an app's C++ runtime has none)."
        )),
        ("latency vs reference (95% CI)", ratio),
        ("speed-up", (
            "1 / that median: how many times faster than the reference (1.0x for the reference itself, below 1x is slower)."
        )),
        ("latency source", (
            f"where the latencies were measured: this report's are **{source_words(report.target.latency_source)}**. "
            f"The others a report can hold: {others}."
        )),
    ]


def slower_than_parent(report: Report) -> list[Slower]:
    """Every candidate whose latency ratio is above its parent's, measured in the same run, with the two 95% intervals
    apart (a difference within the noise is not flagged), at each thread count."""
    if report.settings.reference is None:
        return []
    names = dict(zip((id(m) for m in report.models), display_names(report)))
    # A model measured twice (as a candidate and as the reference) is compared as the candidate.
    by_name: dict[str, ModelResult] = {}
    for model in sorted(report.models, key=lambda m: m.role != "candidate"):
        by_name.setdefault(model.name, model)
    flags = []
    for model in report.candidates():
        parent = by_name.get(model.parent) if model.parent else None
        if parent is None or parent is model:
            continue
        for threads in report.settings.threads:
            mine, theirs = ratio_of(model, threads), ratio_of(parent, threads)
            if mine is None or theirs is None or theirs.median <= 0 or mine.low <= theirs.high:
                continue
            factor = mine.median / theirs.median
            child, elder = names[id(model)], names[id(parent)]
            flags.append(Slower(model.name, parent.name, threads, factor,
                                f"{child} is slower than its parent {elder} ({factor:.2f}x its latency)",
                                _why(model, parent, threads, mine, theirs, factor, child, elder)))
    return flags


def _bytes_per_parameter(model: ModelResult) -> float | None:
    return model.size.bytes / model.size.parameters if model.size.parameters > 1 else None


def _why(model: ModelResult, parent: ModelResult, threads: int, mine: Ratio, theirs: Ratio, factor: float, child: str, elder: str) -> str:
    measured = (f"{child} is {factor:.2f}x as slow as its parent {elder} at {threads} thread(s): latency vs reference "
                f"{mine.median:.3f} ({mine.low:.3f}-{mine.high:.3f}) against {theirs.median:.3f} "
                f"({theirs.low:.3f}-{theirs.high:.3f}); the intervals do not overlap.")
    own, elders = _bytes_per_parameter(model), _bytes_per_parameter(parent)
    if model.format != parent.format:
        cause = (f"It runs on another runtime ({model.format}, its parent {parent.format}); that runtime's kernels for "
                 "this graph are slower on this target. Compare the padded column to see whether it holds at the "
                 "longest input.")
    elif own is not None and elders is not None and own < 1.5 and elders >= 2.5:
        cause = (f"Its file holds {own:.1f} bytes per parameter against its parent's {elders:.1f}: 8-bit weights from "
                 "a float parent. The usual cause: dynamic INT8 quantizes every activation at run time, and on a small "
                 "or recurrent model with short inputs the quantize and dequantize steps cost more than the integer "
                 "matrix products save. Static (calibrated) INT8, or keeping the float file on this target, usually "
                 "does better; the padded column shows whether it holds at the longest input.")
    elif own is not None and elders is not None and own < 2.5 and elders >= 3.5:
        cause = (f"Its file holds {own:.1f} bytes per parameter against its parent's {elders:.1f}: 16-bit weights. "
                 "On a CPU without native FP16 arithmetic the runtime converts them back to FP32 at run time, which "
                 "costs more than the smaller file saves.")
    else:
        cause = ("Same format and about the same bytes per parameter: a graph change (pruning that left the matrix "
                 "shapes, an optimization that no longer applies) costs time here.")
    return f"{measured} {cause}"
