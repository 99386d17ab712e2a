"""`edgekd optimize`: every candidate made and evaluated, the ones over the accuracy or size limit skipped before any
latency is measured, the rest measured side by side with the FP32 file, the Pareto front, the winner written as a
bundle; a budget nothing meets exits 1 naming the nearest candidate per limit; bad input exits 2 with nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgekd import optimize as optimize_module
from edgekd.bundle import Bundle
from edgekd.cli import main
from edgekd.config import Budget, ModelBudget, OnnxDynamicConfig, OnnxFp16Config
from edgekd.peers import derived_under


def _budget(path: Path, **limits: object) -> Path:
    path.write_text("default:\n" + "".join(f"  {k}: {v}\n" for k, v in limits.items()), encoding="utf-8")
    return path


def test_optimize_chooses_the_fastest_file_within_the_budget(untrained_onnx: dict[str, Bundle], tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    student = untrained_onnx["tinybert-single"]
    out = tmp_path / "opt"
    # Every candidate of the space, made first (optimize takes them from its cache); a size limit just under the
    # largest one screens it out before any latency is measured (tiny graphs: operators outweigh the weights).
    made = derived_under(student, optimize_module.SPACE, out / "candidates")
    sizes = sorted((b.file("model.onnx").stat().st_size, name) for name, b in made.items())
    largest = sizes[-1][1]
    budget = _budget(tmp_path / "budget.yaml", max_accuracy_drop=50.0, max_bytes=(sizes[-1][0] + sizes[-2][0]) // 2)
    assert main(["optimize", str(student.path), "--budget", str(budget), "-o", str(out), "--lengths", "8,16", "--rounds", "12"]) == 0
    assert "optimize: chose" in capsys.readouterr().out
    result = json.loads((out / "optimize.json").read_text())
    measured = {row["name"] for row in result["candidates"]}
    skipped = {row["name"]: row["over_budget"] for row in result["screened_out"]}
    assert set(optimize_module.SPACE) == (measured | set(skipped)) - {student.path.name} and student.path.name in measured
    assert set(skipped) == {largest} and "bytes" in skipped[largest][0]
    rows = {row["name"]: row for row in result["candidates"]}
    fitting = {name: row for name, row in rows.items() if not row["baseline"] and not row["over_budget"]}
    assert result["best"] == min(fitting, key=lambda name: fitting[name]["mean_ratio"])
    assert rows[student.path.name]["mean_ratio"] == 1.0 and set(result["pareto"]) <= set(rows)
    best = Bundle.open(out / "best")
    assert best.sha256 == Bundle.open(out / "candidates" / result["best"]).sha256
    page = (out / "optimize.md").read_text()
    assert f"**Chosen: {result['best']}.**" in page and all(f"| {name}" in page for name in [*rows, *skipped])


def test_a_budget_no_candidate_meets_exits_1_with_the_nearest(untrained_onnx: dict[str, Bundle], tmp_path: Path) -> None:
    student = untrained_onnx["tinybert-single"]
    space = {"dynamic-per-tensor": OnnxDynamicConfig(per_channel=False), "fp16": OnnxFp16Config()}
    budget = Budget(default=ModelBudget(max_bytes=1000, max_latency_ratio=0.01))
    with pytest.raises(optimize_module.NothingFits, match=r"max_bytes 1000: nearest dynamic-per-tensor .*") as caught:
        optimize_module.optimize(student.path, budget, tmp_path / "o", lengths=[8], rounds=10, space=space)
    assert caught.value.exit_code == 1 and not (tmp_path / "o" / "best").exists()
    assert json.loads((tmp_path / "o" / "optimize.json").read_text())["best"] is None


def test_bad_optimize_input_is_one_line_exit_2(untrained_onnx: dict[str, Bundle], tiny_classifier: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    student = str(untrained_onnx["tinybert-single"].path)
    good = _budget(tmp_path / "good.yaml", max_accuracy_drop=1.0)
    cases = [
        ([student, "--budget", str(good), "--target", "ftp://x"], "target 'ftp://x' is unknown"),
        ([student, "--budget", str(_budget(tmp_path / "empty.yaml", max_memory_mb=10))], "must set max_accuracy_drop, max_bytes or max_latency_ratio"),
        ([student, "--budget", str(good), "--lengths", "16,x"], "lengths of at least 2"),
        ([str(tmp_path / "nowhere"), "--budget", str(good)], "nowhere"),
    ]
    for args, message in cases:
        assert main(["optimize", *args, "-o", str(tmp_path / "out")]) == 2, args
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()
