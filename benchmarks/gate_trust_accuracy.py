"""How far the gate's accuracy checks can be trusted on a real report: false-fail and false-pass rates on known answers.

    python -m edgekd.benchmarks.gate_trust_accuracy REPORT.json MODEL [--trials 20] [--points 2.0] [--budget 0.5]

From MODEL's per-example dev predictions in REPORT (written by `edgekd bench`), each trial judges, with a limit of
`--budget` points:
- `self`: the model against itself (must PASS; a FAIL is a false fail);
- `worse`: a copy that truly is `--points` worse: each of its correct predictions is turned into a wrong label with
  the probability that lowers its expected accuracy by that many points, a fresh draw per trial (must FAIL; a PASS is
  a false pass);
- `as good, other errors`: a copy of the same expected accuracy with other mistakes (as many correct predictions
  turned wrong as wrong ones turned right, `--points` of the examples each way): a PASS is right, a FAIL a false fail.
each through the baseline gate's accuracy check (`max_accuracy_regression`) and through the teacher check
(`max_accuracy_drop`, with the model's own predictions standing as the teacher's). INCONCLUSIVE is counted apart.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from edgekd.config import Budget, ModelBudget

from . import report as report_module
from .gate import judge, metric_for
from .gate_baseline import judge_baseline
from .report_model import ModelResult, Report, TeacherScore


def worse(predictions: np.ndarray, gold: np.ndarray, classes: int, points: float, rng: np.random.Generator) -> np.ndarray:
    """`predictions` with each correct one turned into another label with the probability that lowers the expected
    accuracy by `points`."""
    correct = predictions == gold
    turned = correct & (rng.random(predictions.size) < points / 100 * predictions.size / max(int(correct.sum()), 1))
    return np.where(turned, _other_label(predictions, classes, rng), predictions)


def reshuffled(predictions: np.ndarray, gold: np.ndarray, classes: int, points: float, rng: np.random.Generator) -> np.ndarray:
    """The same accuracy, other errors: `points` percent of the examples turned from right to wrong and as many
    from wrong to right (fewer when the model has fewer wrong ones)."""
    right, wrong = np.flatnonzero(predictions == gold), np.flatnonzero(predictions != gold)
    count = min(round(points / 100 * predictions.size), wrong.size, right.size)
    out = predictions.copy()
    broken = rng.choice(right, size=count, replace=False)
    out[broken] = _other_label(predictions[broken], classes, rng)
    fixed = rng.choice(wrong, size=count, replace=False)
    out[fixed] = gold[fixed]
    return out


def _other_label(labels: np.ndarray, classes: int, rng: np.random.Generator) -> np.ndarray:
    """A label other than each of `labels`, uniform among the others."""
    return (labels + rng.integers(1, classes, size=labels.size)) % classes


def _with(report: Report, model: ModelResult, predictions: np.ndarray, teacher: np.ndarray | None = None) -> Report:
    assert model.accuracy is not None, "a model with predictions has an accuracy"
    changed = model.model_copy(update={"accuracy": model.accuracy.model_copy(update={"predictions": predictions.tolist()})})
    update: dict[str, object] = {"models": [changed]}
    if teacher is not None:
        scored = TeacherScore(path="(the model itself)", metric=model.accuracy.metric, value=model.accuracy.value, predictions=teacher.tolist())
        update["settings"] = report.settings.model_copy(update={"teacher": scored})
    return report.model_copy(update=update)


def verdicts(report: Report, model: ModelResult, candidate: np.ndarray, budget: float) -> tuple[str, str]:
    """(the baseline check's verdict, the teacher check's) of `candidate` against `model`'s own predictions."""
    assert model.accuracy is not None and model.accuracy.predictions is not None
    own = np.asarray(model.accuracy.predictions)
    limits = Budget(default=ModelBudget(max_accuracy_regression=budget, max_accuracy_drop=budget))
    (against_baseline, _) = judge_baseline(_with(report, model, candidate), _with(report, model, own), limits, None)
    against_teacher = next(c for c in judge(_with(report, model, candidate, teacher=own), limits) if c.name == "accuracy drop")
    return against_baseline.verdict, against_teacher.verdict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgekd.benchmarks.gate_trust_accuracy")
    parser.add_argument("report", type=Path)
    parser.add_argument("model")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--points", type=float, default=2.0, help="how much worse the worse copy truly is (accuracy points)")
    parser.add_argument("--budget", type=float, default=0.5, help="max_accuracy_regression and max_accuracy_drop (points)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    report = report_module.load(args.report)
    model = next((m for m in report.models if m.name == args.model), None)
    if model is None or model.accuracy is None or model.accuracy.predictions is None or report.dev is None:
        print(f"{args.report}: no model {args.model} with per-example predictions", file=sys.stderr)
        return 2
    gold, own = np.asarray(report.dev.gold), np.asarray(model.accuracy.predictions)
    classes = len(report.dev.labels)
    rng = np.random.default_rng(args.seed)
    scenarios = {"self": lambda: own, "worse": lambda: worse(own, gold, classes, args.points, rng),
                 "as good, other errors": lambda: reshuffled(own, gold, classes, args.points, rng)}
    results: dict[str, dict[str, Counter[str]]] = {"baseline": {}, "teacher": {}}
    true_points: dict[str, list[float]] = {}
    for name, make in scenarios.items():
        counts: tuple[Counter[str], Counter[str]] = (Counter(), Counter())
        for _ in range(args.trials):
            candidate = make()
            true_points.setdefault(name, []).append(100 * (float(np.mean(own == gold)) - float(np.mean(candidate == gold))))
            for count, verdict in zip(counts, verdicts(report, model, candidate, args.budget)):
                count[verdict] += 1
        results["baseline"][name], results["teacher"][name] = counts
        print(f"{name}: baseline check {dict(counts[0])}, teacher check {dict(counts[1])}", file=sys.stderr)
    summary = {
        "report": str(args.report), "model": args.model, "metric": metric_for(report, None, Budget()), "examples": int(gold.size),
        "accuracy": model.accuracy.value, "trials": args.trials, "budget_pts": args.budget, "points_worse": args.points,
        # How much worse each trial's copy really was (accuracy points): mean, least, most.
        "measured_points_worse": {name: [round(float(f(v)), 3) for f in (np.mean, np.min, np.max)] for name, v in true_points.items()},
        **{check: {**{name: dict(c) for name, c in counts.items()},
                   "false_fail_rate": counts["self"].get("FAIL", 0) / args.trials,
                   "false_pass_rate": counts["worse"].get("PASS", 0) / args.trials}
           for check, counts in results.items()},
    }
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
