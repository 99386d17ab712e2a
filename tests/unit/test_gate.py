"""The gate: every verdict and exit code, re-measurement of an inconclusive ratio, budget-file errors, JUnit XML."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from edgekd.benchmarks import gate
from edgekd.benchmarks import report as report_module
from edgekd.benchmarks.report_model import ModelResult, Ratio, Report
from edgekd.cli import main
from edgekd.config import Budget, ModelBudget
from edgekd.errors import BundleError, ConfigError
from edgekd.testing_reports import report_data, report_model

# The dev set of the reports below: 1,000 examples, half of each class; the teacher is wrong on the first 100.
EXAMPLES = 1000
GOLD = [i % 2 for i in range(EXAMPLES)]
TEACHER = [1 - g if i < 100 else g for i, g in enumerate(GOLD)]


def _student(drop: float) -> list[int]:
    """The teacher's predictions, also wrong on `drop` (a fraction) of the examples it gets right: its accuracy is
    exactly `drop` below the teacher's."""
    flipped = round(drop * EXAMPLES)
    return [1 - p if 100 <= i < 100 + flipped else p for i, p in enumerate(TEACHER)]


def _model(name: str, ratio: tuple[float, float, float] | None, *, drop: float = 0.004, size: int = 14_000_000, memory_kb: int = 60_000) -> dict[str, Any]:
    return report_model(name, _student(drop), gold=GOLD, ratio=ratio, size=size, memory_kb=memory_kb,
                        accuracy={"reference_value": 0.9, "drop": drop})


def _data(*models: dict[str, Any], source: str = "measured_host", target: str = "local") -> dict[str, Any]:
    return report_data(models, GOLD, teacher=TEACHER, reference="bert-base-shape", source=source, target=target)


def _report(*models: dict[str, Any], source: str = "measured_host", target: str = "local") -> Report:
    return report_module.validate(_data(*models, source=source, target=target))


def test_every_verdict() -> None:
    report = _report(_model("fast", (0.40, 0.38, 0.42)), _model("slow", (0.80, 0.75, 0.85)), _model("close", (0.50, 0.45, 0.55)))
    budget = Budget(default=ModelBudget(max_latency_ratio=0.5, max_accuracy_drop=1.0, max_bytes=15_000_000, max_memory_mb=100))
    checks = gate.judge(report, budget)
    verdicts = {(c.model, c.name): c.verdict for c in checks}
    assert verdicts[("fast", "latency ratio")] == "PASS"
    assert verdicts[("slow", "latency ratio")] == "FAIL"
    assert verdicts[("close", "latency ratio")] == "INCONCLUSIVE"
    assert verdicts[("fast", "accuracy drop")] == "PASS" and verdicts[("fast", "size")] == "PASS" and verdicts[("fast", "peak memory")] == "PASS"
    assert gate.exit_code(checks) == 1
    line = next(c for c in checks if c.model == "slow" and c.name == "latency ratio").line()
    assert "0.800" in line and "<= 0.500" in line and line.startswith("FAIL")
    assert gate.exit_code([c for c in checks if c.model == "fast"]) == 0


def test_limits_that_fail() -> None:
    report = _report(_model("big", None, drop=0.02, size=20_000_000, memory_kb=300 * 1024))
    budget = Budget(models={"big": ModelBudget(max_accuracy_drop=1.0, max_bytes=15_000_000, max_memory_mb=200)})
    assert {c.name: c.verdict for c in gate.judge(report, budget)} == {"accuracy drop": "FAIL", "size": "FAIL", "peak memory": "FAIL",
                                                                       "better than majority baseline": "PASS"}


def test_an_inconclusive_ratio_is_measured_again() -> None:
    report = _report(_model("close", (0.50, 0.45, 0.55)))
    budget = Budget(default=ModelBudget(max_latency_ratio=0.5))
    asked: list[str] = []

    def tighter(model: ModelResult) -> Ratio:
        asked.append(model.name)
        return Ratio(median=0.47, low=0.46, high=0.48, pairs=800, confidence=0.95)

    check, floor = gate.judge(report, budget, tighter)
    assert asked == ["close"] and check.verdict == "PASS" and "800 pairs" in check.note
    assert floor.name == "better than majority baseline" and floor.verdict == "PASS"


def test_absolute_p90_only_on_its_device() -> None:
    budget = Budget(default=ModelBudget(max_p90_ms=2.0, device="ssh://pi@raspberrypi:22"))
    host, _ = gate.judge(_report(_model("m", None)), budget)
    assert host.verdict == "SKIP" and gate.exit_code([host]) == 0
    device, _ = gate.judge(_report(_model("m", None), source="measured_device", target="ssh://pi@raspberrypi:22"), budget)
    assert device.verdict == "FAIL" and "2.60" in device.measured  # the early-stopping estimate, 1.3 x p50


def test_budget_errors(tmp_path: Path) -> None:
    path = tmp_path / "budget.yaml"
    path.write_text("models:\n  m:\n    max_latency_ration: 0.5\n")
    with pytest.raises(ConfigError, match="did you mean 'max_latency_ratio'"):
        gate.load_budget(path)
    path.write_text("models: [oops\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        gate.load_budget(path)
    path.write_text("default:\n  max_p90_ms: 3\n")
    with pytest.raises(ConfigError, match="needs `device`"):
        gate.load_budget(path)
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        gate.load_budget(path)
    with pytest.raises(ConfigError, match="no such budget"):
        gate.load_budget(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="does not have: ghost"):
        gate.judge(_report(_model("m", None)), Budget(models={"ghost": ModelBudget(max_bytes=1)}))
    with pytest.raises(ConfigError, match="no reference"):
        gate.judge(_report(_model("m", None)), Budget(default=ModelBudget(max_latency_ratio=0.5)))
    with pytest.raises(ConfigError, match="checks nothing"):
        gate.judge(_report(_model("m", None)), Budget())


def test_cli_gate_writes_junit_and_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = _data(_model("fast", (0.40, 0.38, 0.42)), _model("slow", (0.80, 0.75, 0.85)))
    report_module.validate(report)
    (tmp_path / "report.json").write_text(json.dumps(report))
    (tmp_path / "budget.yaml").write_text("models:\n  fast:\n    max_latency_ratio: 0.5\n")
    args = ["gate", str(tmp_path / "report.json"), "--budget", str(tmp_path / "budget.yaml"), "--junit", str(tmp_path / "gate.xml"),
            "--summary", str(tmp_path / "summary.md")]
    assert main(args) == 0
    assert "PASS" in capsys.readouterr().out
    (tmp_path / "budget.yaml").write_text("default:\n  max_latency_ratio: 0.5\n")
    assert main([*args, "--no-remeasure"]) == 1
    suite = ElementTree.parse(tmp_path / "gate.xml").getroot()
    assert suite.get("tests") == "4" and suite.get("failures") == "1"  # each model's latency and majority floor
    assert "❌ FAIL" in (tmp_path / "summary.md").read_text()
    (tmp_path / "budget.yaml").write_text("default: {max_bytes: -1}\n")
    assert main(args) == 2
    assert main(["gate", str(tmp_path / "nothing.json"), "--budget", str(tmp_path / "budget.yaml")]) == 2


def test_the_example_budget_is_valid() -> None:
    budget = gate.load_budget(Path(__file__).resolve().parents[2] / "examples" / "ci" / "budget.yaml")
    assert budget.models["tinybert-int8"].device == "ssh://pi@raspberrypi:22"


def test_a_budget_alias_bomb_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "budget.yaml"
    lines = ["models:", "  m: {max_bytes: 1}", "a0: &a0 [x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 8) + "]" for i in range(1, 9)]
    path.write_text("\n".join([*lines, "threads: *a8"]) + "\n")
    assert path.stat().st_size < 500
    with pytest.raises(ConfigError) as info:
        gate.load_budget(path)
    assert "line 4, column 10: YAML aliases are not allowed" in str(info.value) and len(str(info.value)) < 400


def test_a_budget_key_written_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "budget.yaml"
    path.write_text("models:\n  m:\n    max_bytes: 100\n    max_bytes: 1000000000\n")
    with pytest.raises(ConfigError, match=r"line 4: the key 'max_bytes' is written twice in one mapping \(first on line 3\)"):
        gate.load_budget(path)


def test_a_budget_over_1_mib_and_a_non_finite_limit_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "budget.yaml"
    path.write_text("default: {max_bytes: 1}\n" + "#" * (1 << 20))
    with pytest.raises(ConfigError, match="the most a budget file may be"):
        gate.load_budget(path)
    path.write_text("default:\n  max_latency_ratio: .inf\n  max_memory_mb: .nan\n")
    with pytest.raises(ConfigError) as info:
        gate.load_budget(path)
    assert "default.max_latency_ratio: Input should be a finite number (got inf)" in str(info.value)
    assert "default.max_memory_mb: Input should be a finite number (got nan)" in str(info.value)


def test_unknown_budget_models_are_named_shortly() -> None:
    with pytest.raises(ConfigError) as info:
        gate.judge(_report(_model("m", None)), Budget(models={"g" * 10_000: ModelBudget(max_bytes=1)}))
    assert "does not have: ggg" in str(info.value) and len(str(info.value)) < 800


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_a_report_holding_nan_is_refused_by_load_and_the_gate(tmp_path: Path, constant: str, capsys: pytest.CaptureFixture[str]) -> None:
    report = _data(_model("fast", (0.40, 0.38, 0.42)))
    (tmp_path / "report.json").write_text(json.dumps(report).replace('"seconds": 1.0', f'"seconds": {constant}'))
    with pytest.raises(BundleError, match=f"not a JSON report \\({constant} is not a JSON number"):
        report_module.load(tmp_path / "report.json")
    (tmp_path / "budget.yaml").write_text("default:\n  max_latency_ratio: 0.5\n")
    assert main(["gate", str(tmp_path / "report.json"), "--budget", str(tmp_path / "budget.yaml")]) == 2
    assert "PASS" not in capsys.readouterr().out


def test_a_report_with_an_overflowing_number_is_refused(tmp_path: Path) -> None:
    report = _data(_model("fast", (0.40, 0.38, 0.42)))
    (tmp_path / "report.json").write_text(json.dumps(report).replace('"p50": 2.0', '"p50": 1e400'))
    with pytest.raises(BundleError, match=r"holds 1 number\(s\) that are not finite \(models/0/runs/0/real/p50 = inf\)"):
        report_module.load(tmp_path / "report.json")


def test_the_report_writer_never_writes_nan(tmp_path: Path) -> None:
    report = _data(_model("fast", (0.40, 0.38, 0.42)))
    report["settings"]["seconds"] = float("nan")
    with pytest.raises(BundleError, match=r"not finite \(settings/seconds = nan\)"):
        report_module.write(report, tmp_path / "out")
    assert not (tmp_path / "out").exists()
