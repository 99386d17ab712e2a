"""`edgekd gate REPORT --baseline OLD_REPORT`: a report against itself passes, a worse copy fails, latency is measured
now against the baseline's bundle when both are at hand (a SKIP that says why otherwise), and a baseline that cannot
be compared example by example is refused in one line with exit 2, nothing written."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgekd import testing_reports as fake
from edgekd.benchmarks import gate_baseline
from edgekd.benchmarks import report as report_module
from edgekd.benchmarks.report_model import ModelResult, Ratio
from edgekd.bundle import Bundle
from edgekd.cli import main
from edgekd.config import Budget, ModelBudget

RNG = np.random.default_rng(3)
GOLD = RNG.integers(0, 2, size=1000)
STUDENT = np.where(RNG.random(1000) < 0.88, GOLD, 1 - GOLD)


def _model(name: str, predictions: list[int], path: str | None = None, sha256: str = "0" * 64) -> dict[str, Any]:
    return fake.report_model(name, predictions, gold=GOLD, path=path, sha256=sha256)


def _data(*models: dict[str, Any]) -> dict[str, Any]:
    return fake.report_data(models, GOLD.tolist())


def _worse(points: float, seed: int = 0) -> list[int]:
    return fake.worse(STUDENT, GOLD, points, seed).tolist()


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def _checks(now: dict[str, Any], before: dict[str, Any], tmp_path: Path, budget: Budget | None = None) -> dict[tuple[str, str], Any]:
    baseline = gate_baseline.load_baseline(_write(tmp_path / "old" / "report.json", before), report_module.validate(now))
    checks = gate_baseline.judge_baseline(report_module.validate(now), baseline, budget or Budget(), None)
    return {(c.model, c.name): c for c in checks}


def test_a_report_against_itself_passes_and_a_worse_copy_fails(tmp_path: Path) -> None:
    report = _data(_model("student", STUDENT.tolist()))
    checks = _checks(report, report, tmp_path)
    same = checks[("student", "accuracy vs baseline")]
    assert same.verdict == "PASS" and same.measured == "accuracy loss 0.00 pts (95% CI 0.00 to 0.00)" and same.budget == "<= 0.50 pts"
    assert checks[("student", "latency vs baseline")].verdict == "SKIP"
    worse = _checks(_data(_model("student", _worse(2.0))), report, tmp_path)[("student", "accuracy vs baseline")]
    assert worse.verdict == "FAIL" and worse.measured.startswith("accuracy loss 2.00 pts"), worse.line()
    # The budget's own limit: 3 points allowed, and the two-point loss passes.
    loose = Budget(default=ModelBudget(max_accuracy_regression=3.0))
    assert _checks(_data(_model("student", _worse(2.0))), report, tmp_path, loose)[("student", "accuracy vs baseline")].verdict == "PASS"


def test_models_in_one_report_only_are_named_not_failed(tmp_path: Path) -> None:
    checks = _checks(_data(_model("student", STUDENT.tolist()), _model("new", STUDENT.tolist())),
                     _data(_model("student", STUDENT.tolist()), _model("gone", STUDENT.tolist())), tmp_path)
    assert checks[("new", "vs baseline")].verdict == "SKIP" and checks[("new", "vs baseline")].measured == "not in the baseline report"
    assert checks[("gone", "vs baseline")].verdict == "SKIP" and checks[("gone", "vs baseline")].measured == "only in the baseline report"


def test_an_old_baseline_without_predictions_is_inconclusive(tmp_path: Path) -> None:
    old = _data(_model("student", STUDENT.tolist()))
    del old["dev"], old["models"][0]["accuracy"]["predictions"]
    check = _checks(_data(_model("student", STUDENT.tolist())), old, tmp_path)[("student", "accuracy vs baseline")]
    assert check.verdict == "INCONCLUSIVE" and "the baseline has no per-example predictions" in check.note and "bench again" in check.note


def _bad(kind: str, data: dict[str, Any]) -> str:
    if kind == "task":
        data["dev"]["task"] = "imdb"
    elif kind == "labels":
        data["dev"]["labels"] = ["positive", "negative"]
    elif kind == "dev set":
        data["dev"]["sha256"] = "b" * 64
    elif kind == "schema version":
        data["schema_version"] = 2
    elif kind == "invalid":
        data["models"][0]["runs"] = []
    return json.dumps(data)


@pytest.mark.parametrize(("kind", "message"), [
    ("task", "a report of task imdb (classification); this report is of sst2"),
    ("labels", "labels ['positive', 'negative']; this report's are ['negative', 'positive']"),
    ("dev set", "dev examples with sha256 bbbbbbbbbbbb...; this report's are aaaaaaaaaaaa..."),
    ("schema version", "report schema version 2; this edgekd writes and compares version 1"),
    ("invalid", "not a valid report (the benchmark report does not match report.schema.json"),
    ("not json", "not a readable JSON report"),
    ("missing", "no such report"),
])
def test_a_baseline_that_cannot_be_compared_is_refused(kind: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    now = _write(tmp_path / "new" / "report.json", _data(_model("student", STUDENT.tolist())))
    old = tmp_path / "old" / "report.json"
    old.parent.mkdir()
    if kind == "not json":
        old.write_text("{oops")
    elif kind != "missing":
        old.write_text(_bad(kind, _data(_model("student", STUDENT.tolist()))))
    junit = tmp_path / "gate.xml"
    assert main(["gate", str(now), "--baseline", str(old), "--junit", str(junit)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and str(old) in err, err
    assert not junit.exists() and not (now.parent / "report.html").exists()


def test_the_cli_gate_with_a_baseline_alone_and_with_a_budget(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = _write(tmp_path / "old" / "report.json", _data(_model("student", STUDENT.tolist())))
    same = _write(tmp_path / "same" / "report.json", _data(_model("student", STUDENT.tolist())))
    assert main(["gate", str(same), "--baseline", str(old)]) == 0
    out = capsys.readouterr().out
    assert "PASS         student accuracy vs baseline" in out and "SKIP         student latency vs baseline" in out
    assert "is not here; latencies of two runs are never compared" in out
    assert "the baseline report" in (same.parent / "report.html").read_text()
    worse = _write(tmp_path / "worse" / "report.json", _data(_model("student", _worse(2.0))))
    assert main(["gate", str(worse), "--baseline", str(old)]) == 1
    assert "FAIL         student accuracy vs baseline" in capsys.readouterr().out
    # With a budget: its checks and the baseline's; its `max_accuracy_regression` replaces the default.
    budget = tmp_path / "budget.yaml"
    budget.write_text("default: {max_bytes: 2000, max_accuracy_regression: 3.0}\n")
    assert main(["gate", str(worse), "--baseline", str(old), "--budget", str(budget)]) == 0
    out = capsys.readouterr().out
    assert "PASS         student size" in out and "PASS         student better than majority baseline" in out
    assert "PASS         student accuracy vs baseline" in out
    assert main(["gate", str(worse)]) == 2
    assert "give --budget BUDGET.yaml, --baseline OLD_REPORT.json, or both" in capsys.readouterr().err


def test_latency_is_measured_now_against_the_baseline_bundle(untrained_onnx: dict[str, Bundle], tmp_path: Path) -> None:
    bundle = untrained_onnx["tinybert-single"]
    at_hand = _model("student", STUDENT.tolist(), path=str(bundle.path), sha256=bundle.sha256)
    report = report_module.validate(_data(at_hand))
    baseline = report_module.validate(_data(copy.deepcopy(at_hand)))
    asked: list[tuple[str, str, int]] = []
    real = gate_baseline.measurer(report)

    def measure(model: ModelResult, old: ModelResult, factor: int, threads: int) -> Ratio:
        asked.append((model.path, old.path, factor))
        return real(model, old, factor, threads)

    checks = gate_baseline.judge_baseline(report, baseline, Budget(default=ModelBudget(max_slowdown=1.5)), measure)
    latency = next(c for c in checks if c.name == "latency vs baseline")
    # The same file against itself: one paired run, a ratio near 1, well within 1.5.
    assert asked == [(str(bundle.path), str(bundle.path), 1)]
    assert latency.verdict == "PASS" and "of the baseline's bundle, measured now" in latency.measured, latency.line()
    # An altered bundle, or one not here: SKIP, saying why; nothing is measured.
    asked.clear()
    altered = report_module.validate(_data(_model("student", STUDENT.tolist(), path=str(bundle.path), sha256="f" * 64)))
    (_, skipped) = gate_baseline.judge_baseline(altered, baseline, Budget(), measure)
    assert skipped.verdict == "SKIP" and "changed since it was benched" in skipped.note and asked == []
    gone = report_module.validate(_data(_model("student", STUDENT.tolist(), path=str(tmp_path / "gone"), sha256=bundle.sha256)))
    (_, skipped) = gate_baseline.judge_baseline(report, gone, Budget(), measure)
    assert skipped.verdict == "SKIP" and "the baseline's bundle" in skipped.note and "is not here" in skipped.note and asked == []


def test_bench_refuses_a_teacher_of_another_task_before_measuring(untrained_onnx: dict[str, Bundle]) -> None:
    from edgekd.benchmarks.bench import _teacher_score
    from edgekd.errors import UnsupportedError

    bundle = untrained_onnx["tinybert-single"]
    other = bundle.manifest.model_copy(update={"task": bundle.manifest.task.model_copy(update={"name": "imdb"})})
    with pytest.raises(UnsupportedError, match="give the teacher they were distilled from"):
        _teacher_score(str(bundle.path), None, other)
