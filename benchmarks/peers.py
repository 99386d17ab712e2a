"""The measurement of peers (`python -m edgekd.peers`, which makes them): a student's FP32 ONNX file quantized the ways
a user gets without edgekd, measured beside edgekd's own files.

The student, the peers and every `--with` bundle are measured in ONE child on the target, in rounds: each
round runs every model once, in a random order, on real dev words cut to the length, so the per-round ratios to the
reference peer (Optimum's `avx512_vnni` file) pair them. Every file is also scored on the whole dev set through the
runtime, with the paired bootstrap difference from the reference. Writes DIR/peers.json and DIR/peers.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgekd.bundle import Bundle
from edgekd.footprint import footprint
from edgekd.records import MODEL_FILES
from edgekd.runtime.targets import ChildSession, parse_target

from .bench import task_metric
from .stats import paired_metric_difference, paired_ratio

# The peer the others are measured against: Optimum's dynamic INT8 for x86 with VNNI.
REFERENCE = "optimum-avx512-vnni"


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
    metric = task_metric(models[reference].manifest)
    # An architecture-only model (bert-base-shape: random weights) is timed, never scored.
    outputs = {name: Classifier.load(bundle).logits(dev.texts) for name, bundle in models.items()
               if not bundle.manifest.architecture.architecture_only}
    problem = models[reference].manifest.task.problem
    predictions = {n: o.reshape(-1) if problem == "regression" else np.argmax(o, axis=-1) for n, o in outputs.items()}
    score = metrics.METRIC_FUNCTIONS[metric]
    rows = []
    for index, name in enumerate(names):
        bundle = models[name]
        scored = name in predictions
        difference = paired_metric_difference(predictions[name], predictions[reference], dev.labels, score) if scored else None
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
        # An export that quantized while converting (ExecuTorch's --int8) records it with the export.
        int8 = (bundle.manifest.architecture.export or {}).get("int8")
        method = quantized.get("method") or (f"{bundle.manifest.format} int8 {int8['mode']}" if int8 else "none (float)")
        rows.append({
            "name": name, "path": str(bundle.path), "sha256": bundle.sha256, "format": bundle.manifest.format,
            "method": method, "bytes": footprint(bundle.file(MODEL_FILES[bundle.manifest.format]))["bytes"],
            "startup_ms": round(measured["models"][index]["startup_seconds"] * 1e3, 2),
            "dev": None if difference is None else {
                "metric": metric, "value": round(float(score(predictions[name], dev.labels)), 6), "examples": len(dev),
                "vs_reference_points": {"value": difference.value, "low": difference.low, "high": difference.high}},
            "latency": latency,
        })
    return rows


def markdown(result: dict[str, Any]) -> str:
    lengths = result["lengths"]
    head = f"| file | method | MB | {' | '.join(f'p50 L{n} ms (x ref)' for n in lengths)} | dev {result['metric']} | vs ref (points, 95% CI) |"
    lines = [f"# Peers of {result['student']}", "",
             (f"Measured on {result['target']['name']} ({result['target']['latency_source']}, {result['machine']['cpu']}, "
             f"CPU flags: {', '.join(result['machine'].get('flags') or ['none of interest'])}), "
             f"{result['threads']} thread(s), batch 1, {result['rounds']} interleaved rounds per length, all files in one "
             f"process; the reference is `{result['reference']}`. Dev: {result['dev_examples']} examples, whole split."),
             "", f"Command: `{result['command']}`", "", head, "|" + "---|" * (5 + len(lengths))]
    for row in result["models"]:
        cells = []
        for n in lengths:
            at = row["latency"].get(str(n))
            cells.append("-" if at is None else f"{at['p50_ms']:.2f} ({at['vs_reference']['median']:.2f}x)" if at["vs_reference"] else f"{at['p50_ms']:.2f}")
        if row["dev"] is None:
            scored = "n/a (architecture only) | |"
        else:
            diff = row["dev"]["vs_reference_points"]
            scored = f"{100 * row['dev']['value']:.2f} | {diff['value']:+.2f} [{diff['low']:+.2f}, {diff['high']:+.2f}] |"
        lines.append(f"| {row['name']} | {row['method']} | {row['bytes'] / 1e6:.1f} | {' | '.join(cells)} | {scored}")
    return "\n".join(lines) + "\n"


