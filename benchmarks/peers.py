"""Peers: a student's FP32 ONNX file quantized the ways a user gets without edgekd, measured beside edgekd's own files.

    python -m edgekd.benchmarks.peers STUDENT_ONNX -o DIR [--with BUNDLE ...] [--lengths 16 32 64 128] [data.path=...]

The peers are Optimum's `ORTQuantizer` with its `avx512_vnni` and `arm64` presets (dynamic INT8) and ONNX Runtime's
`quantize_dynamic` with its defaults, each written as a bundle under DIR (re-made only when the student or the method
changed). The student, the peers and every `--with` bundle are measured in ONE child on the target, in rounds: each
round runs every model once, in a random order, on real dev words cut to the length, so the per-round ratios to the
reference peer (Optimum's `avx512_vnni` file) pair them. Every file is also scored on the whole dev set through the
runtime, with the paired bootstrap difference from the reference. Writes DIR/peers.json and DIR/peers.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.bundle import Bundle
from edgekd.config import OnnxDynamicConfig, OptimumDynamicConfig
from edgekd.config.base import to_dict
from edgekd.data import lineage_data, load_task_data
from edgekd.errors import ConfigError, EdgekdError, UnsupportedError
from edgekd.footprint import footprint
from edgekd.records import MODEL_FILES
from edgekd.runtime.targets import ChildSession, parse_target

from .stats import paired_metric_difference, paired_ratio

logger = logging.getLogger(__name__)

# What a user gets without edgekd, by the name each peer's bundle gets under DIR.
PEERS = {
    "optimum-avx512-vnni": OptimumDynamicConfig(preset="avx512_vnni"),
    "optimum-arm64": OptimumDynamicConfig(preset="arm64"),
    "ort-quantize-dynamic": OnnxDynamicConfig(per_channel=False, operators="ort-defaults"),
}
REFERENCE = "optimum-avx512-vnni"


def _student(path: Path) -> Bundle:
    bundle = Bundle.open(path)
    m = bundle.manifest
    if m.format != "onnx" or m.architecture.quantize:
        what = "a quantized ONNX bundle" if m.architecture.quantize else f"a {m.format} bundle"
        raise UnsupportedError(f"{path}: is {what}; the peers quantize the student's FP32 ONNX export (edgekd export STUDENT --to onnx)")
    return bundle


def make_peers(student: Bundle, out: Path, overrides: Sequence[str] = ()) -> dict[str, Bundle]:
    """Each peer of `student` as a bundle under `out`: the one there when it was made from this student by the same
    method, else made now."""
    from edgekd.quantize.stage import quantize

    made = {}
    for name, cfg in PEERS.items():
        target = out / name
        try:
            existing = Bundle.open(target)
            current = existing.manifest.parent.sha256 == student.sha256 and existing.manifest.produced_by.config.get("quantize") == to_dict(cfg)
        except (EdgekdError, AttributeError):
            current = False
        made[name] = existing if current else quantize(student.path, cfg, target, overrides=overrides, force=True)
    return made


def measure(models: dict[str, Bundle], target_url: str, lengths: list[int], rounds: int, threads: int,
            texts: list[tuple[str, ...]], timeout: float = 3600) -> dict[str, Any]:
    """One child on the target measuring every model side by side (`runtime/rounds.py`)."""
    with parse_target(target_url) as target, ChildSession(target, texts) as session:
        args = ["--side-by-side", *[session.push(b.path) for b in models.values()], "--texts", session.texts,
                "--lengths", *map(str, lengths), "--rounds", str(rounds), "--threads", str(threads)]
        result = session.run(args, timeout)
        result["target"] = {"name": target.name, "latency_source": target.latency_source}
    return result


def summarize(models: dict[str, Bundle], measured: dict[str, Any], dev: Any, reference: str) -> list[dict[str, Any]]:
    """A row per model: size, start-up, dev metric with its difference from the reference, and per length p50, p90 and
    the paired ratio to the reference (None where the model cannot take that length)."""
    from edgekd import metrics
    from edgekd.runtime.classifier import Classifier

    names = list(models)
    metric = "accuracy" if models[reference].manifest.task.problem == "classification" else "pearson"
    outputs = {name: Classifier.load(bundle).logits(dev.texts) for name, bundle in models.items()}
    problem = models[reference].manifest.task.problem
    predictions = {n: o.reshape(-1) if problem == "regression" else np.argmax(o, axis=-1) for n, o in outputs.items()}
    score = metrics.METRIC_FUNCTIONS[metric]
    rows = []
    for index, name in enumerate(names):
        bundle = models[name]
        difference = paired_metric_difference(predictions[name], predictions[reference], dev.labels, score)
        latency: dict[str, Any] = {}
        for length, by_model in measured["latencies"].items():
            own, ref = by_model[str(index)], by_model[str(names.index(reference))]
            if own is None:
                latency[length] = None
                continue
            ms = np.asarray(own) * 1e3
            ratio = paired_ratio(np.asarray(own), np.asarray(ref)) if ref is not None else None
            latency[length] = {"p50_ms": round(float(np.median(ms)), 4), "p90_ms": round(float(np.quantile(ms, 0.9)), 4),
                               "vs_reference": None if ratio is None else {"median": ratio.median, "low": ratio.low, "high": ratio.high}}
        quantized = bundle.manifest.architecture.quantize or {}
        rows.append({
            "name": name, "path": str(bundle.path), "sha256": bundle.sha256, "format": bundle.manifest.format,
            "method": quantized.get("method", "none (float)"), "bytes": footprint(bundle.file(MODEL_FILES[bundle.manifest.format]))["bytes"],
            "startup_ms": round(measured["models"][index]["startup_seconds"] * 1e3, 2),
            "dev": {"metric": metric, "value": round(float(score(predictions[name], dev.labels)), 6), "examples": len(dev),
                    "vs_reference_points": {"value": difference.value, "low": difference.low, "high": difference.high}},
            "latency": latency,
        })
    return rows


def markdown(result: dict[str, Any]) -> str:
    lengths = result["lengths"]
    head = f"| file | method | MB | {' | '.join(f'p50 L{n} ms (x ref)' for n in lengths)} | dev {result['metric']} | vs ref (points, 95% CI) |"
    lines = [f"# Peers of {result['student']}", "",
             f"Measured on {result['target']['name']} ({result['target']['latency_source']}, {result['machine']['cpu']}, "
             f"CPU flags: {', '.join(result['machine'].get('flags') or ['none of interest'])}), "
             f"{result['threads']} thread(s), batch 1, {result['rounds']} interleaved rounds per length, all files in one "
             f"process; the reference is `{result['reference']}`. Dev: {result['dev_examples']} examples, whole split.",
             "", f"Command: `{result['command']}`", "", head, "|" + "---|" * (5 + len(lengths))]
    for row in result["models"]:
        cells = []
        for n in lengths:
            at = row["latency"].get(str(n))
            cells.append("-" if at is None else f"{at['p50_ms']:.2f} ({at['vs_reference']['median']:.2f}x)" if at["vs_reference"] else f"{at['p50_ms']:.2f}")
        diff = row["dev"]["vs_reference_points"]
        lines.append(f"| {row['name']} | {row['method']} | {row['bytes'] / 1e6:.1f} | {' | '.join(cells)} | "
                     f"{100 * row['dev']['value']:.2f} | {diff['value']:+.2f} [{diff['low']:+.2f}, {diff['high']:+.2f}] |")
    return "\n".join(lines) + "\n"


def peers(student_path: Path, out: Path, others: Sequence[Path] = (), *, lengths: Sequence[int] = (16, 32, 64, 128), rounds: int = 200,
          threads: int = 1, target: str = "local", overrides: Sequence[str] = (), command: str = "") -> dict[str, Any]:
    student = _student(student_path)
    with_bundles = {}
    for path in others:
        bundle = Bundle.open(path)
        if bundle.manifest.format not in MODEL_FILES or bundle.manifest.format == "torch":
            raise UnsupportedError(f"{path}: is a {bundle.manifest.format} bundle; --with takes ONNX or TFLite bundles")
        with_bundles[path.name] = bundle
    dev = load_task_data(lineage_data(student, list(overrides))).dev
    models = {student.path.name: student, **make_peers(student, out, overrides), **with_bundles}
    picks = np.random.default_rng(0).choice(len(dev), size=min(200, len(dev)), replace=False)
    measured = measure(models, target, list(lengths), rounds, threads, [dev.texts[i] for i in picks])
    result = {
        "student": str(student.path), "command": command, "target": measured["target"], "machine": measured["machine"],
        "threads": threads, "rounds": rounds, "lengths": list(lengths), "reference": REFERENCE, "dev_examples": len(dev),
        "metric": "accuracy" if student.manifest.task.problem == "classification" else "pearson",
        "models": summarize(models, measured, dev, REFERENCE),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "peers.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    (out / "peers.md").write_text(markdown(result), encoding="utf-8")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgekd.benchmarks.peers", description=__doc__.split("\n\n")[0])
    parser.add_argument("student", type=Path, help="the student's FP32 ONNX bundle (edgekd export STUDENT --to onnx)")
    parser.add_argument("overrides", nargs="*", metavar="data.key=value", help="where the dev text comes from")
    parser.add_argument("-o", "--output", type=Path, required=True, help="folder for the peers' bundles, peers.json and peers.md")
    parser.add_argument("--with", dest="others", type=Path, action="append", default=[], help="an edgekd bundle measured beside them")
    parser.add_argument("--lengths", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--target", default="local")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if any(n < 2 for n in args.lengths) or args.rounds < 10 or args.threads < 1:
            raise ConfigError(f"--lengths {args.lengths} --rounds {args.rounds} --threads {args.threads}: lengths of at least 2, "
                              "at least 10 rounds and 1 thread")
        result = peers(args.student, args.output, args.others, lengths=args.lengths, rounds=args.rounds, threads=args.threads,
                       target=args.target, overrides=args.overrides, command=" ".join(["python -m edgekd.benchmarks.peers", *(argv or sys.argv[1:])]))
    except EdgekdError as exc:
        print(f"edgekd peers: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
