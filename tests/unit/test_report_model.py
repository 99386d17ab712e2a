"""The benchmark report's typed records: the shipped schema is generated from them, the shipped reports read and write
back unchanged, and what the records refuse is named by place."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from edgekd.benchmarks import report as report_module
from edgekd.benchmarks.report_model import Report, json_schema, schema_text
from edgekd.errors import BundleError
from edgekd.protocol import MIN_QUERIES, MIN_SECONDS

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SHIPPED = sorted((BENCHMARKS / "results").glob("*/report.json"))


def _shipped() -> dict[str, Any]:
    return json.loads(SHIPPED[0].read_text(encoding="utf-8"))


def test_the_shipped_schema_is_the_generated_one() -> None:
    shipped = (BENCHMARKS / report_module.SCHEMA).read_text(encoding="utf-8")
    assert shipped == schema_text(), "regenerate: python -m edgekd.benchmarks.report_model > benchmarks/report.schema.json"


def test_the_schema_floors_are_the_protocol_constants() -> None:
    settings = json_schema()["$defs"]["Settings"]["properties"]
    assert (settings["queries"]["minimum"], settings["seconds"]["minimum"]) == (MIN_QUERIES, MIN_SECONDS)
    assert json_schema()["additionalProperties"] is False and json_schema()["$id"].endswith("report-v1.json")


@pytest.mark.parametrize("path", SHIPPED, ids=[p.parent.name for p in SHIPPED])
def test_shipped_reports_read_and_write_back_unchanged(path: Path) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    report = report_module.load(path)
    assert json.dumps(report.dump()) == json.dumps(data)  # same keys, same order, same numbers
    jsonschema = pytest.importorskip("jsonschema")
    assert not list(jsonschema.Draft202012Validator(json_schema()).iter_errors(data))


def test_keys_left_out_stay_out() -> None:
    data = _shipped()
    accuracy = data["models"][0]["accuracy"]
    del accuracy["reference_value"], accuracy["drop"], data["machine"]["flags"]
    report = report_module.validate(data)
    assert report.models[0].accuracy.drop is None and report.machine.flags == []
    assert report.dump() == data


@pytest.mark.parametrize(
    ("change", "place", "message"),
    [
        (lambda d: d["models"][0]["runs"][0]["real"].update(p50="2.0"), "models/0/runs/0/real/p50", "valid number"),
        (lambda d: d["models"][0].update(architecture_only=1), "models/0/architecture_only", "valid boolean"),
        (lambda d: d["models"][0]["size"].update(bytes=1.5), "models/0/size/bytes", "valid integer"),
        (lambda d: d["models"][0]["macs"].update(flops=1), "models/0/macs/flops", "Extra inputs"),
        (lambda d: d["settings"].update(queries=MIN_QUERIES - 1), "settings/queries", f"greater than or equal to {MIN_QUERIES}"),
        (lambda d: d.update(schema_version=2), "schema_version", "Input should be 1"),
        (lambda d: d["models"][0].update(sha256="x" * 64), "models/0/sha256", "match pattern"),
    ],
    ids=["string-number", "number-boolean", "float-integer", "unknown-key", "too-few-queries", "future-version", "sha256"],
)
def test_what_the_records_refuse_is_named_by_place(change: Any, place: str, message: str) -> None:
    data = copy.deepcopy(_shipped())
    change(data)
    with pytest.raises(BundleError, match="does not match report.schema.json") as caught:
        report_module.validate(data)
    line = next(line for line in str(caught.value).splitlines() if line.startswith(f"  - {place}:"))
    assert message in line


def test_every_model_has_one_run_per_thread_count() -> None:
    data = _shipped()
    data["settings"]["threads"] = [1, 2]
    with pytest.raises(BundleError, match=r"models/0 \(.+\) has runs at \[1\] thread\(s\); the settings measure every model once at \[1, 2\]"):
        report_module.validate(data)


def test_a_report_is_typed_once_and_kept() -> None:
    report = Report.model_validate(_shipped())
    assert report_module.validate(report) is report
    with pytest.raises(BundleError, match=r"not finite \(settings/seconds = nan\)"):
        report_module.validate(report.model_copy(update={"settings": report.settings.model_copy(update={"seconds": float("nan")})}))
