"""The gate's accuracy checks as statistics: the paired bootstrap, the drop from the teacher judged on its interval in
the task's metric, the majority-class floor, and reports written before per-example predictions (INCONCLUSIVE)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgekd import testing_reports as fake
from edgekd.benchmarks import gate
from edgekd.benchmarks import report as report_module
from edgekd.benchmarks.report_model import Report
from edgekd.benchmarks.stats import paired_metric_difference
from edgekd.config import Budget, ModelBudget
from edgekd.errors import ConfigError
from edgekd.metrics import accuracy, f1, pearson
from edgekd.tasks import PRESETS, gate_metric


def _data(students: dict[str, list[Any]], gold: list[Any], teacher: list[Any] | None, **dev: Any) -> dict[str, Any]:
    """A report's JSON form: each student with its per-example predictions, the teacher's, the dev set's gold labels."""
    return fake.report_data([fake.report_model(name, p) for name, p in students.items()], gold, teacher=teacher, **dev)


def _report(*args: Any, **kwargs: Any) -> Report:
    return report_module.validate(_data(*args, **kwargs))


RNG = np.random.default_rng(7)
GOLD = RNG.integers(0, 2, size=2000)
TEACHER = np.where(RNG.random(2000) < 0.9, GOLD, 1 - GOLD)  # about 90% right


def test_the_paired_bootstrap() -> None:
    same = paired_metric_difference(TEACHER, TEACHER, GOLD, accuracy)
    assert (same.value, same.low, same.high) == (0.0, 0.0, 0.0)
    # Three points worse: the interval covers the true shift, and the same seed gives the same interval.
    worse = fake.worse(TEACHER, GOLD, 3.0)
    shifted = paired_metric_difference(TEACHER, worse, GOLD, accuracy)
    assert shifted.value == pytest.approx(3.0) and shifted.low < 3.0 < shifted.high and shifted.low > 1.5
    assert paired_metric_difference(TEACHER, worse, GOLD, accuracy) == shifted
    assert paired_metric_difference(TEACHER, worse, GOLD, accuracy, seed=1) != shifted
    # Pairing: the unpaired spread of two 2,000-example accuracies is about +-1.9 points; paired, only the 60 examples
    # where the two differ count, and the interval is much narrower.
    assert shifted.high - shifted.low < 2.0
    # Any metric: F1 of the positive class, Pearson of scores.
    assert paired_metric_difference(TEACHER, worse, GOLD, f1).value > 0
    scores = GOLD + RNG.normal(0, 0.5, size=GOLD.size)
    assert paired_metric_difference(scores, scores + RNG.normal(0, 2, size=GOLD.size), GOLD.astype(float), pearson).low > 0


@pytest.mark.parametrize(("points", "verdict"), [(0.3, "PASS"), (2.0, "INCONCLUSIVE"), (4.0, "FAIL")])
def test_drop_verdicts(points: float, verdict: str) -> None:
    student = fake.worse(TEACHER, GOLD, points)
    report = _report({"s": student.tolist()}, GOLD.tolist(), TEACHER.tolist())
    drop = next(c for c in gate.judge(report, Budget(default=ModelBudget(max_accuracy_drop=2.0))) if c.name == "accuracy drop")
    assert drop.verdict == verdict, drop.line()
    assert drop.measured.startswith(f"accuracy drop {points:.2f} pts (95% CI ") and drop.budget == "<= 2.00 pts"


def test_the_metric_by_task_default_and_by_budget() -> None:
    assert gate_metric("mrpc", "classification", PRESETS["mrpc"].task.labels) == "f1"
    assert gate_metric("tweets3", "classification", PRESETS["tweets3"].task.labels) == "macro_f1"
    assert gate_metric("stsb", "regression", ()) == "pearson"
    assert gate_metric("sst2", "classification", PRESETS["sst2"].task.labels) == "accuracy"
    assert gate_metric("my-task", "classification", ("a", "b", "c", "d")) == "macro_f1"

    def drop_line(report: Report, budget: Budget) -> str:
        return next(c.measured for c in gate.judge(report, budget) if c.name == "accuracy drop")

    worse = fake.worse(TEACHER, GOLD, 1.0).tolist()
    loose = ModelBudget(max_accuracy_drop=5.0)
    assert drop_line(_report({"s": worse}, GOLD.tolist(), TEACHER.tolist(), task="mrpc", labels=("no", "yes")), Budget(default=loose)).startswith("f1 drop")
    three = _report({"s": [2 if g == 1 else p for p, g in zip(worse, GOLD)]}, GOLD.tolist(), TEACHER.tolist(), task="t3", labels=("a", "b", "c"))
    assert drop_line(three, Budget(default=loose)).startswith("macro_f1 drop")
    scores = (GOLD + RNG.normal(0, 0.3, size=GOLD.size)).round(4).tolist()
    regression = _report({"s": scores}, GOLD.astype(float).tolist(), scores, task="stsb", labels=(), problem="regression")
    assert drop_line(regression, Budget(default=loose)) == "pearson drop 0.00 pts (95% CI 0.00 to 0.00)"
    # The budget's metric wins over the task's, a model's own over the budget's.
    sst2 = _report({"s": worse}, GOLD.tolist(), TEACHER.tolist())
    assert drop_line(sst2, Budget(metric="matthews", default=loose)).startswith("matthews drop")
    assert drop_line(sst2, Budget(metric="matthews", models={"s": ModelBudget(metric="f1", max_accuracy_drop=5.0)})).startswith("f1 drop")
    with pytest.raises(ConfigError, match="does not fit the regression task stsb"):
        gate.judge(regression, Budget(metric="f1", default=loose))


def test_a_bad_metric_name_is_refused_at_load(tmp_path: Path) -> None:
    path = tmp_path / "budget.yaml"
    path.write_text("metric: f2\ndefault: {max_accuracy_drop: 2}\n")
    with pytest.raises(ConfigError, match="metric 'f2' is not one the gate computes; use one of accuracy, f1, macro_f1"):
        gate.load_budget(path)
    path.write_text("models:\n  s: {metric: acc}\n")
    with pytest.raises(ConfigError, match="models.s.metric: metric 'acc'"):
        gate.load_budget(path)


def test_the_majority_floor() -> None:
    # MRPC-like: two thirds positive; a student that always says "equivalent" is the majority predictor itself.
    gold = (np.arange(900) % 3 != 0).astype(int)
    always = np.ones_like(gold)
    good = np.where(np.arange(900) % 10 == 0, 1 - gold, gold)  # 90% right
    report = _report({"majority": always.tolist(), "good": good.tolist()}, gold.tolist(), None, task="mrpc", labels=("not_equivalent", "equivalent"))
    checks = {c.model: c for c in gate.judge(report, Budget(default=ModelBudget(max_bytes=10_000)), require_checks=True) if c.name.startswith("better")}
    assert checks["majority"].verdict == "FAIL" and checks["majority"].note == "not significantly better than always answering 'equivalent'"
    assert checks["majority"].measured.startswith("f1 +0.00 pts over always answering 'equivalent'")
    assert checks["good"].verdict == "PASS", checks["good"].line()
    # A student a little above the majority class but not significantly: right on 30 negatives, wrong on 24 positives
    # (67.3% against 66.7%; the shipped MRPC student's 67.89% against 68.4% is below it).
    barely = always.copy()
    barely[np.flatnonzero(gold == 0)[:30]] = 0
    barely[np.flatnonzero(gold == 1)[:24]] = 0
    (floor,) = [c for c in gate.judge(_report({"barely": barely.tolist()}, gold.tolist(), None), Budget(default=ModelBudget(max_bytes=10_000)))
                if c.name.startswith("better")]
    assert floor.verdict == "FAIL" and "'positive'" in floor.note
    # Regression: the mean predictor's Pearson is 0, so the floor asks for a correlation significantly above 0.
    scores = (GOLD + RNG.normal(0, 0.5, size=GOLD.size)).round(4)
    noise = RNG.normal(0, 1, size=GOLD.size).round(4)
    regression = _report({"fit": scores.tolist(), "noise": noise.tolist()}, GOLD.astype(float).tolist(), None, task="stsb", labels=(), problem="regression")
    floors = {c.model: c for c in gate.judge(regression, Budget(default=ModelBudget(max_bytes=10_000))) if c.name.startswith("better")}
    assert floors["fit"].verdict == "PASS" and floors["noise"].verdict == "FAIL"
    assert "always answering the mean score" in floors["noise"].note


def test_an_old_report_is_inconclusive_with_a_note() -> None:
    data = _data({"s": TEACHER.tolist()}, GOLD.tolist(), TEACHER.tolist())
    # As written before per-example predictions: no dev set, no predictions, a point-estimate drop.
    del data["dev"], data["settings"]["teacher"]["predictions"]
    data["models"][0]["accuracy"] = {"metric": "accuracy", "value": 0.85, "examples": 872, "reference_value": 0.9, "drop": 0.05}
    checks = gate.judge(report_module.validate(data), Budget(default=ModelBudget(max_accuracy_drop=2.0)))
    assert [(c.name, c.verdict) for c in checks] == [("accuracy drop", "INCONCLUSIVE"), ("better than majority baseline", "INCONCLUSIVE")]
    assert all("bench again" in c.note for c in checks) and "5.00 pts (a point estimate)" in checks[0].measured
    assert gate.exit_code(checks) == 1


def test_predictions_must_pair_with_the_dev_set() -> None:
    data = _data({"s": TEACHER.tolist()[:-1]}, GOLD.tolist(), TEACHER.tolist())
    with pytest.raises(Exception, match="has 1999 predictions; the report's dev set has 2000 examples"):
        report_module.validate(data)


def test_the_accuracy_trust_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgekd.benchmarks.gate_trust_accuracy import main as trust
    from edgekd.benchmarks.gate_trust_accuracy import reshuffled, worse

    rng = np.random.default_rng(0)
    # The worse copy is `points` worse in expectation; the reshuffled one exactly as good, with other errors.
    drops = [np.mean(TEACHER == GOLD) - np.mean(worse(TEACHER, GOLD, 2, 2.0, rng) == GOLD) for _ in range(50)]
    assert 0.018 < np.mean(drops) < 0.022 and len(set(drops)) > 10
    other = reshuffled(TEACHER, GOLD, 2, 2.0, rng)
    assert np.mean(other == GOLD) == np.mean(TEACHER == GOLD) and np.sum(other != TEACHER) == 80
    path = tmp_path / "report.json"
    path.write_text(json.dumps(_data({"s": TEACHER.tolist()}, GOLD.tolist(), TEACHER.tolist())))
    assert trust([str(path), "s", "--trials", "3"]) == 0
    summary = json.loads(capsys.readouterr().out)
    for check in ("baseline", "teacher"):
        assert summary[check]["self"] == {"PASS": 3} and summary[check]["worse"] == {"FAIL": 3}
        assert summary[check]["false_fail_rate"] == 0.0 and summary[check]["false_pass_rate"] == 0.0
    assert summary["metric"] == "accuracy" and summary["examples"] == 2000
