"""`edgekd bench`: the benchmark protocol of DESIGN.md over bundles on a target, written as report.json and report.md.

Each artifact is measured in a fresh child process on the target (start-up, first inference, warm-up, at least
`MIN_QUERIES` queries at batch 1 on real dev text and on a padded worst case, peak resident set), and in the same child
against the reference, interleaved pair by pair; a baseline child that imported the runtime and loaded nothing gives
the memory floor. Accuracy is of the exact file through the runtime on the whole dev set (on this machine).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from edgekd import __version__
from edgekd.bundle import Bundle
from edgekd.config import BenchConfig
from edgekd.data import lineage_data, load_task_data
from edgekd.errors import UnsupportedError
from edgekd.footprint import footprint
from edgekd.runtime.targets import Target, parse_target

from .macs import macs
from .stats import paired_ratio, summarize

logger = logging.getLogger(__name__)
MODEL_FILES = {"onnx": "model.onnx", "tflite": "model.tflite"}
REPORT_SCHEMA_VERSION = 1


def bench(paths: list[Path], cfg: BenchConfig, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Measure the bundles (and `cfg.reference`) on `cfg.target`; the report as a dict (see report.schema.json).
    `overrides` (data.key=value) say where the dev text comes from when the bundles' lineage does not."""
    bundles = [_deployable(Bundle.open(p)) for p in paths]
    reference = _reference(cfg.reference, bundles[0]) if cfg.reference else None
    dev = load_task_data(lineage_data(bundles[0], list(overrides))).dev
    rng = np.random.default_rng(0)
    picks = rng.choice(len(dev), size=min(cfg.texts, len(dev)), replace=False)
    texts = [dev.texts[i] for i in picks]
    measured = [*bundles, *([reference] if reference is not None else [])]
    with parse_target(cfg.target) as target, tempfile.TemporaryDirectory() as scratch:
        session = _Session(target, Path(scratch), texts, cfg)
        baseline = session.baseline()
        models = []
        for bundle in measured:
            runs = []
            for threads in cfg.threads:
                logger.info("measuring %s at %d thread(s) on %s", bundle.path.name, threads, target.name)
                against = reference if reference is not None and bundle is not reference else None
                raw = session.measure(bundle, threads, against)
                runs.append(_run_entry(raw, threads, baseline["vm_hwm_kb"]))
            models.append(_model_entry(bundle, runs, dev if cfg.accuracy else None, texts, reference))
    teacher = _teacher_accuracy(cfg.teacher) if cfg.teacher else next(
        (m["accuracy"] for m in models if m["role"] == "reference" and m["accuracy"]), None
    )
    for model in models:
        if teacher and model["accuracy"] and model["accuracy"]["metric"] == teacher["metric"]:
            model["accuracy"]["reference_value"] = teacher["value"]
            model["accuracy"]["drop"] = round(teacher["value"] - model["accuracy"]["value"], 6)
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "edgekd_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "target": {"name": target.name, "latency_source": target.latency_source},
        "machine": baseline["machine"],
        "settings": {
            "threads": list(cfg.threads), "queries": cfg.queries, "seconds": cfg.seconds,
            "texts": len(texts), "batch": 1, "reference": cfg.reference, "data_overrides": list(overrides),
            "teacher": {"path": cfg.teacher, **teacher} if cfg.teacher and teacher else None,
        },
        "baseline_vm_hwm_kb": baseline["vm_hwm_kb"],
        "models": models,
    }


class _Session:
    """One target, each bundle pushed once, the texts pushed once, fresh child processes for every measurement."""

    def __init__(self, target: Target, scratch: Path, texts: list[tuple[str, ...]], cfg: BenchConfig) -> None:
        self.target, self.scratch, self.cfg = target, scratch, cfg
        texts_file = scratch / "texts.jsonl"
        texts_file.write_text("".join(json.dumps(list(t), ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
        self.texts = target.push(texts_file)
        self.pushed: dict[Path, str] = {}
        self.count = 0

    def _remote(self, bundle: Bundle) -> str:
        if bundle.path not in self.pushed:
            self.pushed[bundle.path] = self.target.push(bundle.path)
        return self.pushed[bundle.path]

    def _run(self, args: list[str]) -> dict[str, Any]:
        self.count += 1
        remote_out = f"{self.texts}.{self.count}.json"
        self.target.run([*args, "--out", remote_out], self.cfg.timeout)
        local = self.scratch / f"{self.count}.json"
        self.target.fetch(remote_out, local)
        return json.loads(local.read_text(encoding="utf-8"))

    def baseline(self) -> dict[str, Any]:
        return self._run(["--baseline"])

    def measure(self, bundle: Bundle, threads: int, reference: Bundle | None) -> dict[str, Any]:
        s = self.cfg
        args = [self._remote(bundle), "--bench", "--texts", self.texts, "--threads", str(threads),
                "--queries", str(s.queries), "--seconds", str(s.seconds)]
        if reference is not None:
            args += ["--reference", self._remote(reference)]
        return self._run(args)


def _teacher_accuracy(path: str) -> dict[str, Any]:
    """The teacher's dev metric as its manifest records it (measured when it was trained or exported)."""
    manifest = Bundle.open(path).manifest
    dev = manifest.metrics.get("dev") or {}
    metric = "accuracy" if manifest.task.problem == "classification" else "pearson"
    if metric not in dev:
        raise UnsupportedError(f"{path}: its manifest has no dev {metric}; give the teacher bundle that `edgekd teacher` wrote")
    return {"metric": metric, "value": float(dev[metric]), "examples": int(dev.get("examples", 0))}


def _deployable(bundle: Bundle) -> Bundle:
    if bundle.manifest.format not in MODEL_FILES:
        raise UnsupportedError(f"{bundle.path}: is a {bundle.manifest.format} bundle; bench measures onnx or tflite bundles (edgekd export first)")
    return bundle


def _reference(name: str, first: Bundle) -> Bundle:
    if name == "bert-base-shape":
        from .reference import bert_base_shape

        return bert_base_shape(first)
    return _deployable(Bundle.open(name))


def _run_entry(raw: dict[str, Any], threads: int, baseline_kb: int | None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "threads": threads,
        "startup_ms": raw["startup_seconds"] * 1e3,
        "first_inference_ms": raw["first_inference_seconds"] * 1e3,
        "real": summarize(np.asarray(raw["real"])).as_dict(),
        "padded": summarize(np.asarray(raw["padded"])).as_dict(),
        "padded_tokens": raw["padded_tokens"],
        "memory_kb": (raw["vm_hwm_kb"] - baseline_kb) if raw.get("vm_hwm_kb") and baseline_kb else None,
        "latencies_ms": {"real": [round(x * 1e3, 4) for x in raw["real"]], "padded": [round(x * 1e3, 4) for x in raw["padded"]]},
        "vs_reference": None,
    }
    if "pairs" in raw:
        pairs = raw["pairs"]
        entry["vs_reference"] = paired_ratio(np.asarray(pairs["candidate"]), np.asarray(pairs["reference"])).as_dict()
    return entry


def _model_entry(bundle: Bundle, runs: list[dict[str, Any]], dev: Any, texts: list[tuple[str, ...]], reference: Bundle | None) -> dict[str, Any]:
    from edgekd.runtime.classifier import Classifier

    from edgekd import metrics

    m = bundle.manifest
    architecture_only = bool(m.architecture.get("architecture_only"))
    classifier = Classifier.load(bundle)
    accuracy = None
    if not architecture_only and dev is not None:
        task_metric = "accuracy" if m.task.problem == "classification" else "pearson"
        logits = classifier.logits(dev.texts)
        value = metrics.compute([task_metric], logits, dev.labels, m.task.problem)[task_metric]
        accuracy = {"metric": task_metric, "value": round(float(value), 6), "examples": len(dev)}
    lengths = [max(len(v) for v in e.values() if hasattr(v, "__len__")) for e in classifier.encoder.encode(texts)]
    return {
        "name": bundle.path.name,
        "path": str(bundle.path),
        "sha256": bundle.sha256,
        "format": m.format,
        "role": "reference" if bundle is reference else "candidate",
        "architecture_only": architecture_only,
        "family": m.architecture.get("family"),
        "size": footprint(bundle.file(MODEL_FILES[m.format])),
        "macs": {"mean_real_tokens": round(float(np.mean(lengths)), 2), "at_mean_real_length": macs(bundle, int(round(np.mean(lengths)))),
                 "at_max_length": macs(bundle, m.tokenizer.max_length)},
        "accuracy": accuracy,
        "runs": runs,
    }
