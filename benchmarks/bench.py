"""`edgekd bench`: the benchmark protocol of DESIGN.md over bundles on a target, written as report.json and report.md.

Each artifact is measured in a fresh child process on the target (start-up, first inference, warm-up, at least
`MIN_QUERIES` queries at batch 1 on real dev text and on a padded worst case, peak resident set), and in the same child
against the reference, interleaved pair by pair; a baseline child that imported the runtime and loaded nothing gives
the memory floor. Accuracy is of the exact file through the runtime on the whole dev set (on this machine), kept per
example with the dev set's gold labels and sha256, so the gate can pair any two models' predictions; the teacher
(`--teacher`) is scored on the same examples in the same run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from edgekd import __version__
from edgekd.bundle import Bundle, Manifest
from edgekd.config import BenchConfig
from edgekd.data import lineage_data, load_task_data
from edgekd.errors import BundleError, UnsupportedError
from edgekd.footprint import footprint
from edgekd.progress import bar
from edgekd.records import DEPLOYABLE_FORMATS, MODEL_FILES
from edgekd.runtime.targets import ChildSession, parse_target

from .macs import macs
from .report_model import (
    REPORT_SCHEMA_VERSION,
    Accuracy,
    DevSet,
    Latencies,
    Machine,
    Macs,
    ModelResult,
    Report,
    Run,
    Settings,
    Size,
    Target,
    TeacherScore,
)
from .stats import paired_ratio, summarize

logger = logging.getLogger(__name__)


def timing_texts(texts: Sequence[tuple[str, ...]], count: int = BenchConfig.model_fields["texts"].default) -> list[tuple[str, ...]]:
    """The real dev texts a latency measurement cycles through: `count` of them drawn without replacement by a fixed
    seed, so every run (bench, peers, optimize) times the same sentences."""
    picks = np.random.default_rng(0).choice(len(texts), size=min(count, len(texts)), replace=False)
    return [texts[i] for i in picks]


def bench(paths: list[Path], cfg: BenchConfig, overrides: Sequence[str] = ()) -> Report:
    """Measure the bundles (and `cfg.reference`) on `cfg.target`. `overrides` (data.key=value) say where the dev text
    comes from when the bundles' lineage does not."""
    bundles = [_deployable(Bundle.open(p)) for p in paths]
    reference = _reference(cfg.reference, bundles[0]) if cfg.reference else None
    dev = load_task_data(lineage_data(bundles[0], list(overrides))).dev
    texts = timing_texts(dev.texts, cfg.texts)
    measured = [*bundles, *([reference] if reference is not None else [])]
    # The teacher first (in this process, before any child measures): a teacher of another task fails before the run.
    teacher = _teacher_score(cfg.teacher, dev if cfg.accuracy else None, bundles[0].manifest) if cfg.teacher else None
    # Per model: one measurement per thread count, then its accuracy on the dev set.
    with parse_target(cfg.target) as target, ChildSession(target, texts) as session, \
            bar(len(measured) * (len(cfg.threads) + 1), "bench", unit="step") as shown:
        baseline = session.run(["--baseline"], cfg.timeout)
        models = []
        for bundle in measured:
            against = reference if reference is not None and bundle is not reference else None
            runs = []
            shown.set_postfix(model=bundle.path.name)
            for threads in cfg.threads:
                logger.info("measuring %s at %d thread(s) on %s", bundle.path.name, threads, target.name)
                runs.append(_run(_measure(session, bundle, threads, against, cfg), threads, baseline["vm_hwm_kb"]))
                shown.update(1)
            models.append(_model_result(bundle, runs, dev if cfg.accuracy else None, texts, reference))
            shown.update(1)
    # Without a teacher bundle, drops are against the reference measured in this run (when it has an accuracy).
    against_score = teacher or next((m.accuracy for m in models if m.role == "reference" and m.accuracy), None)
    if against_score is not None:
        models = [_compared(model, against_score.metric, against_score.value) for model in models]
    return Report(
        schema_version=REPORT_SCHEMA_VERSION,
        edgekd_version=__version__,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        target=Target(name=target.name, latency_source=target.latency_source),
        machine=Machine.model_validate(baseline["machine"]),
        settings=Settings(threads=list(cfg.threads), queries=cfg.queries, seconds=cfg.seconds, texts=len(texts), batch=1,
                          reference=cfg.reference, data_overrides=list(overrides), teacher=teacher),
        baseline_vm_hwm_kb=baseline["vm_hwm_kb"],
        models=models,
        **({"dev": _dev_set(dev, bundles[0].manifest)} if cfg.accuracy else {}),
    )


def _measure(session: ChildSession, bundle: Bundle, threads: int, reference: Bundle | None, cfg: BenchConfig) -> dict[str, Any]:
    """One fresh child measuring `bundle` (and pairs against `reference`) over the session's texts."""
    args = [session.push(bundle.path), "--bench", "--texts", session.texts, "--threads", str(threads),
            "--queries", str(cfg.queries), "--seconds", str(cfg.seconds)]
    if reference is not None:
        args += ["--reference", session.push(reference.path)]
    return session.run(args, cfg.timeout)


def task_metric(manifest: Manifest) -> str:
    """The metric a report scores a model of this task on: accuracy, or Pearson for a regression."""
    return "accuracy" if manifest.task.problem == "classification" else "pearson"


def _predictions(outputs: np.ndarray, problem: str) -> list[int] | list[float]:
    """One prediction per example for report.json: the label id, or the score rounded to 6 decimals (regression)."""
    if problem == "regression":
        return [round(float(x), 6) for x in outputs.reshape(-1)]
    return [int(x) for x in np.argmax(outputs, axis=-1)]


def _dev_set(dev: Any, manifest: Manifest) -> DevSet:
    task = manifest.task
    gold = [round(float(x), 6) for x in dev.labels] if task.problem == "regression" else [int(x) for x in dev.labels]
    return DevSet(task=task.name, problem=task.problem, labels=list(task.labels), sha256=dev.fingerprint, gold=gold)


def selected_on_dev(bundle: Bundle) -> bool | None:
    """Whether the trained model a bundle descends from chose its checkpoints on dev: its manifest's `splits` record
    says where it did (never dev, since selection splits exist); None when the lineage does not reach a trained
    bundle that records it."""
    seen = 0
    while bundle.manifest.produced_by.stage not in ("teacher", "distill") and bundle.manifest.parent is not None and seen < 32:
        try:
            parent = Bundle.open(bundle.manifest.parent.path)
        except BundleError:
            return None
        if parent.sha256 != bundle.manifest.parent.sha256:
            return None
        bundle, seen = parent, seen + 1
    splits = bundle.manifest.metrics.splits
    if bundle.manifest.produced_by.stage not in ("teacher", "distill") or splits is None:
        return None
    return bool(splits.get("dev", {}).get("used_for_selection", False))


def _teacher_score(path: str, dev: Any, first: Manifest) -> TeacherScore:
    """The teacher's dev metric and per-example predictions, measured now on the dev examples every model is scored
    on (a torch teacher through its torch model). Without `dev` (accuracy off), its full-dev metric as its manifest
    records it."""
    bundle = Bundle.open(path)
    manifest = bundle.manifest
    metric = task_metric(manifest)
    if (manifest.task.name, manifest.task.problem, manifest.task.labels) != (first.task.name, first.task.problem, first.task.labels):
        raise UnsupportedError(f"{path}: the teacher is of task {manifest.task.name} {manifest.task.labels}; the measured bundles "
                               f"are of {first.task.name} {first.task.labels}; give the teacher they were distilled from")
    if dev is None:
        scores = manifest.metrics.full_dev()
        if scores is None or metric not in scores.values:
            raise UnsupportedError(f"{path}: its manifest has no full-dev {metric}; give the teacher bundle that `edgekd teacher` wrote")
        return TeacherScore(path=path, metric=metric, value=scores.values[metric], examples=scores.examples)
    from edgekd import metrics
    from edgekd.torch_classifier import load_classifier

    logger.info("scoring the teacher %s on %d dev examples", bundle.path.name, len(dev))
    outputs = load_classifier(bundle).logits(dev.texts)
    value = metrics.compute([metric], outputs, dev.labels, manifest.task.problem)[metric]
    return TeacherScore(path=path, metric=metric, value=round(float(value), 6), examples=len(dev),
                        predictions=_predictions(outputs, manifest.task.problem))


def _compared(model: ModelResult, metric: str, value: float) -> ModelResult:
    """The model with its accuracy drop from the teacher's `value`, when both are of `metric`."""
    if model.accuracy is None or model.accuracy.metric != metric:
        return model
    accuracy = model.accuracy.model_copy(update={"reference_value": value, "drop": round(value - model.accuracy.value, 6)})
    return model.model_copy(update={"accuracy": accuracy})


def _deployable(bundle: Bundle) -> Bundle:
    if bundle.manifest.format not in DEPLOYABLE_FORMATS:
        raise UnsupportedError(f"{bundle.path}: is a {bundle.manifest.format} bundle; bench measures onnx, tflite or executorch bundles (edgekd export first)")
    return bundle


def _reference(name: str, first: Bundle) -> Bundle:
    if name == "bert-base-shape":
        from .reference import bert_base_shape

        return bert_base_shape(first)
    return _deployable(Bundle.open(name))


def _run(raw: dict[str, Any], threads: int, baseline_kb: int | None) -> Run:
    """A child's measurement (seconds) as the report's run (milliseconds, summaries, the paired ratio)."""
    pairs = raw.get("pairs")
    return Run(
        threads=threads,
        startup_ms=raw["startup_seconds"] * 1e3,
        first_inference_ms=raw["first_inference_seconds"] * 1e3,
        real=summarize(np.asarray(raw["real"])),
        padded=summarize(np.asarray(raw["padded"])),
        end_to_end=summarize(np.asarray(raw["end_to_end"])) if raw.get("end_to_end") else None,
        padded_tokens=raw["padded_tokens"],
        memory_kb=(raw["vm_hwm_kb"] - baseline_kb) if raw.get("vm_hwm_kb") and baseline_kb else None,
        latencies_ms=Latencies(real=[round(x * 1e3, 4) for x in raw["real"]], padded=[round(x * 1e3, 4) for x in raw["padded"]],
                               end_to_end=[round(x * 1e3, 4) for x in raw["end_to_end"]] if raw.get("end_to_end") else None),
        vs_reference=paired_ratio(np.asarray(pairs["candidate"]), np.asarray(pairs["reference"])) if pairs else None,
    )


def _model_result(bundle: Bundle, runs: list[Run], dev: Any, texts: list[tuple[str, ...]], reference: Bundle | None) -> ModelResult:
    from edgekd.runtime.classifier import Classifier

    from edgekd import metrics

    m = bundle.manifest
    classifier = Classifier.load(bundle)
    accuracy = None
    if not m.architecture.architecture_only and dev is not None:
        task_metric_name = task_metric(m)
        outputs = classifier.logits(dev.texts)
        value = metrics.compute([task_metric_name], outputs, dev.labels, m.task.problem)[task_metric_name]
        accuracy = Accuracy(metric=task_metric_name, value=round(float(value), 6), examples=len(dev),
                            predictions=_predictions(outputs, m.task.problem), selected_on_dev=selected_on_dev(bundle))
    lengths = [max(len(v) for v in e.values() if hasattr(v, "__len__")) for e in classifier.encoder.encode(texts)]
    mean_length = float(np.mean(lengths))
    result = ModelResult(
        name=bundle.path.name,
        path=str(bundle.path),
        sha256=bundle.sha256,
        format=m.format,
        role="reference" if bundle is reference else "candidate",
        architecture_only=m.architecture.architecture_only,
        family=m.architecture.family,
        size=Size.model_validate(footprint(bundle.file(MODEL_FILES[m.format]))),
        macs=Macs(mean_real_tokens=round(mean_length, 2), at_mean_real_length=macs(bundle, int(round(mean_length))),
                  at_max_length=macs(bundle, m.tokenizer.max_length)),
        accuracy=accuracy,
        runs=runs,
    )
    # The parent's folder name, set only when there is one (a key never set stays out of report.json).
    return result if m.parent is None else result.model_copy(update={"parent": Path(m.parent.path).name})
