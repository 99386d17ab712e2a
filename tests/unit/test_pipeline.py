"""The pieces of `edgekd run` that need no model: the plan, config differences, speed-ups from a report."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekd.benchmarks import summary
from edgekd.config import validate_recipe
from edgekd.pipeline import differences, plan

RECIPE = {
    "name": "r", "output_dir": "out", "data": {"task": "sst2", "path": "d"},
    "students": {"s": {"student": {"type": "bilstm"}, "stages": [{"kind": "prediction"}]}},
    "artifacts": {"t-onnx": {"parent": "teacher", "export": {"format": "onnx"}}, "s-onnx": {"parent": "s", "export": {"format": "onnx"}},
                  "s-int8": {"parent": "s-onnx", "quantize": {"method": "onnx-dynamic"}}},
    "bench": {"reference": "t-onnx", "output": "rep"},
    "gate": {"default": {"max_latency_ratio": 0.5}},
}


def test_plan_orders_the_stages() -> None:
    steps = plan(validate_recipe(RECIPE))
    assert [(s.title, s.path) for s in steps] == [
        ("teacher", Path("out/teacher")), ("distill s", Path("out/s")), ("export t-onnx", Path("out/t-onnx")),
        ("export s-onnx", Path("out/s-onnx")), ("quantize s-int8", Path("out/s-int8")), ("bench", Path("out/rep")),
        ("gate", Path("out/rep")),
    ]


def test_differences_name_the_changed_keys_method_first() -> None:
    old = {"quantize": {"samples": 1, "method": "onnx-static", "per_channel": True}, "data": {"path": "a"}}
    new = {"quantize": {"method": "onnx-dynamic", "per_channel": True}, "data": {"path": "b"}}
    assert differences(old, new) == ["data.path", "quantize.method", "quantize.samples"]
    assert differences({"a": [1, 2]}, {"a": [1, 2]}) == []


def _model(name: str, role: str, ratio: float | None, p50: float, architecture_only: bool = False) -> dict:
    vs = None if ratio is None else {"median": ratio, "low": ratio * 0.9, "high": ratio * 1.1, "pairs": 64}
    return {"name": name, "role": role, "architecture_only": architecture_only, "format": "onnx",
            "accuracy": None if architecture_only else {"metric": "accuracy", "value": 0.9, "drop": 0.01},
            "size": {"bytes": 2_000_000}, "runs": [{"threads": 1, "vs_reference": vs, "real": {"p50": p50, "p90": p50 * 1.1}}]}


def test_speedups_against_the_reference_and_another_model_of_the_run() -> None:
    # reference bert-base-shape (ratio 1); the teacher's export at 0.1 of it, a student at 0.02
    report = {"settings": {"threads": [1]}, "models": [
        _model("teacher-onnx", "candidate", 0.1, 5.0), _model("student", "candidate", 0.02, 1.0),
        _model("bert-base-shape-L64", "reference", None, 50.0, architecture_only=True)]}
    teacher, student, base = report["models"]
    assert summary.speedup(student, base, 1) == pytest.approx(50.0)
    assert summary.speedup(student, teacher, 1) == pytest.approx(5.0)
    assert summary.speedup(teacher, teacher, 1) == pytest.approx(1.0)
    table = summary.table(report, "teacher-onnx")
    assert "| student | onnx | 90.00% | 1.00 | 2.0 | 1.00 | 1.10 | 5.0x | 50.0x |" in table
    assert "| teacher-onnx (teacher) |" in table and table.splitlines()[-1].startswith("| bert-base-shape (architecture only) | onnx | n/a |")
    # the teacher as the reference: bert-base-shape measured as an architecture-only candidate
    report["models"] = [_model("teacher-onnx", "reference", None, 5.0), _model("student", "candidate", 0.2, 1.0),
                        _model("bbs", "candidate", 10.0, 50.0, architecture_only=True)]
    student = report["models"][1]
    assert summary.speedup(student, report["models"][0], 1) == pytest.approx(5.0)
    assert summary.speedup(student, summary.find_bert_base_shape(report), 1) == pytest.approx(50.0)
    assert summary.speedup(student, None, 1) is None


def test_a_students_key_covers_the_augmentation_it_names() -> None:
    from edgekd.config import student_lineage, to_dict

    raw = {**RECIPE, "augment": {"t": {"method": "tang", "n_iter": 4}, "unused": {"method": "tinybert"}}}
    raw["students"] = {"s": {**RECIPE["students"]["s"], "augment": "t"}}
    lineage = student_lineage(to_dict(validate_recipe(raw)), "s")
    assert lineage["augment"]["n_iter"] == 4 and lineage["student"]["augment"] == "t"
    changed = {**raw, "augment": {**raw["augment"], "t": {"method": "tang", "n_iter": 5}}}
    assert student_lineage(to_dict(validate_recipe(changed)), "s") != lineage
    unrelated = {**raw, "augment": {**raw["augment"], "unused": {"method": "tinybert", "n_a": 3}}}
    assert student_lineage(to_dict(validate_recipe(unrelated)), "s") == lineage
    assert "augment" not in student_lineage(to_dict(validate_recipe(RECIPE)), "s")
