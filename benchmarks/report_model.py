"""The benchmark report as typed records: what `edgekd bench` writes to report.json, what the gate, the tables and the
plots read. `benchmarks/report.schema.json` is generated from these models, never edited by hand:

    python -m edgekd.benchmarks.report_model > benchmarks/report.schema.json

The records are strict (a string is not a number, a number is not a boolean), as the JSON schema is. A key that the
schema does not require has a default, and is written only when it was set: a report read and written again is the
same JSON.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edgekd.protocol import MIN_QUERIES, MIN_SECONDS

SchemaVersion = Literal[1]
REPORT_SCHEMA_VERSION: int = get_args(SchemaVersion)[0]
SCHEMA_ID = f"https://edgekd.dev/schemas/report-v{REPORT_SCHEMA_VERSION}.json"
# Where a latency was measured (DESIGN.md): `emulated` is functional only, never device latency.
LatencySource = Literal["measured_host", "measured_device", "emulated", "estimated"]


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    def dump(self) -> dict[str, Any]:
        """The JSON form: the keys that were set (a default that was never set stays out, as it was read)."""
        return self.model_dump(mode="json", exclude_unset=True)


class Target(_Record):
    """Where the children ran; never a credential."""

    name: str
    latency_source: LatencySource


class Machine(_Record):
    """The target's machine as the baseline child saw it."""

    arch: str
    cpu: str
    flags: list[str] = []
    cores: int | None
    python: str
    system: str | None = None
    versions: dict[str, str]


# One prediction per dev example, in the dev split's order: a label id (classification) or a score (regression).
Predictions = list[int] | list[float]


class TeacherScore(_Record):
    """The teacher's dev metric (accuracy drops are against it): measured in the bench run on the report's dev
    examples, with its per-example predictions; in reports written before those were recorded, as its manifest held it."""

    path: str
    metric: str
    value: float
    examples: int | None = None
    predictions: Predictions | None = None


class Settings(_Record):
    """The protocol as run: thread counts, the measured queries and seconds per measurement, the texts, the reference."""

    threads: list[Annotated[int, Field(ge=1)]]
    queries: int = Field(ge=MIN_QUERIES)
    seconds: float = Field(ge=MIN_SECONDS)
    texts: int = Field(ge=1)
    batch: Literal[1]
    reference: str | None
    data_overrides: list[str]
    teacher: TeacherScore | None


class LatencySummary(_Record):
    """Milliseconds over the measured queries, and whether the protocol's minimums were met."""

    queries: int = Field(ge=1)
    seconds: float
    p50: float
    p90: float
    p99: float
    min: float
    max: float
    mean: float
    std: float
    # MLPerf's early-stopping estimate of p90; null when too few queries qualify.
    p90_early_stopping: float | None
    throughput_qps: float
    valid_min_queries: bool
    valid_min_duration: bool


class Ratio(_Record):
    """The median of per-pair latency ratios candidate / reference with a bootstrap confidence interval."""

    median: float
    low: float
    high: float
    pairs: int
    confidence: float


class Latencies(_Record):
    """Every measured query's latency in ms, on real inputs, on the padded worst case, and from the text."""

    real: list[float]
    padded: list[float]
    # Text in, probabilities out (tokenization included); absent from reports written before it was measured.
    end_to_end: list[float] | None = None


class Run(_Record):
    """One model measured in a fresh child at one thread count."""

    threads: int = Field(ge=1)
    startup_ms: float
    first_inference_ms: float
    real: LatencySummary
    padded: LatencySummary
    # The real texts from the string: tokenization, the model and the softmax (null in reports written before).
    end_to_end: LatencySummary | None = None
    padded_tokens: int
    # Peak resident set above the baseline child's; null where /proc is not there to read.
    memory_kb: int | None
    latencies_ms: Latencies
    # Null for the reference itself, and when the report has no reference.
    vs_reference: Ratio | None


class Size(_Record):
    """What the model file costs on a device (edgekd.footprint)."""

    file: str | None = None
    bytes: int
    gzip_bytes: int
    parameters: int
    nonzero_parameters: int


class Macs(_Record):
    """Multiply-accumulates of one example at the mean real length and at the maximum length; null for a family the
    benchmark cannot count."""

    mean_real_tokens: float | None = None
    at_mean_real_length: int | None = None
    at_max_length: int | None = None


class Accuracy(_Record):
    """The exact file's dev metric through the runtime, and its drop from the teacher's when the metrics match."""

    metric: str
    value: float
    examples: int
    reference_value: float | None = None
    drop: float | None = None
    # Per dev example (the report's `dev`), so that the gate computes any metric with a paired interval; absent in
    # reports written before they were recorded.
    predictions: Predictions | None = None
    # Whether the model's checkpoints were chosen on this same dev split: false for a model whose training recorded
    # its selection split (edgekd chooses on one carved from train), null when its lineage does not say (trained
    # before selection splits were recorded, or its trained ancestor is not at hand).
    selected_on_dev: bool | None = None


class DevSet(_Record):
    """The dev examples every accuracy of the report is computed on: the task, a sha256 of the examples (texts and
    labels, as edgekd.data's Split.fingerprint), the gold labels in order. Two reports are comparable example by example
    only when these match."""

    task: str
    problem: Literal["classification", "regression"]
    labels: list[str]
    sha256: str = Field(pattern="^[0-9a-f]{64}$")
    gold: Predictions = Field(min_length=1)


class ModelResult(_Record):
    """One measured bundle: what it is, what it costs, how accurate it is, its runs at each thread count."""

    name: str
    path: str
    sha256: str = Field(pattern="^[0-9a-f]{64}$")
    format: Literal["onnx", "tflite", "executorch"]
    role: Literal["candidate", "reference"]
    # A reference with random weights (bert-base-shape): measured for comparison, never judged, no accuracy.
    architecture_only: bool
    family: str | None = None
    # The folder name of the bundle this one was made from (its manifest's parent), so that a quantized file can be
    # compared with its float parent when both were measured; absent in reports written before it was recorded.
    parent: str | None = None
    size: Size
    macs: Macs
    accuracy: Accuracy | None
    runs: list[Run] = Field(min_length=1)

    def run_at(self, threads: int) -> Run:
        """The measurement at one of the report's thread counts (a `Report` has one per model and count)."""
        found = next((run for run in self.runs if run.threads == threads), None)
        if found is None:
            raise LookupError(f"{self.name}: no run at {threads} thread(s); it has {[run.threads for run in self.runs]}")
        return found

    @property
    def judged(self) -> bool:
        """Whether a budget applies: a candidate with real weights."""
        return self.role == "candidate" and not self.architecture_only


class Report(_Record):
    """An `edgekd bench` report: where and how it measured, and every model it measured (each at every thread count
    of the settings, once: a check the JSON schema cannot state)."""

    schema_version: SchemaVersion
    edgekd_version: str
    created: str
    target: Target
    machine: Machine
    settings: Settings
    baseline_vm_hwm_kb: int | None
    models: list[ModelResult] = Field(min_length=1)
    # The dev examples the accuracies are of; absent in reports written before per-example predictions were recorded.
    dev: DevSet | None = None

    @model_validator(mode="after")
    def _a_run_per_thread_count(self) -> Report:
        wanted = sorted(self.settings.threads)
        for index, model in enumerate(self.models):
            measured = sorted(run.threads for run in model.runs)
            if measured != wanted:
                raise ValueError(f"models/{index} ({model.name[:80]}) has runs at {measured[:20]} thread(s); the settings "
                                 f"measure every model once at {wanted[:20]}")
        return self

    @model_validator(mode="after")
    def _a_prediction_per_dev_example(self) -> Report:
        examples = len(self.dev.gold) if self.dev is not None else None
        teacher = self.settings.teacher
        given = [(f"models/{i} ({m.name[:80]})", m.accuracy.predictions) for i, m in enumerate(self.models) if m.accuracy is not None]
        given.append(("settings/teacher", teacher.predictions if teacher is not None else None))
        for where, predictions in given:
            if predictions is not None and len(predictions) != examples:
                raise ValueError(f"{where} has {len(predictions)} predictions; the report's dev set has {examples or 'no'} examples")
        return self

    def candidates(self) -> list[ModelResult]:
        return [model for model in self.models if model.role == "candidate"]


def json_schema() -> dict[str, Any]:
    """report.schema.json: the JSON schema of `Report`, under its draft, id and title."""
    generated = Report.model_json_schema()
    # pydantic titles every property after its name ("Gzip Bytes"): noise beside the name itself.
    for definition in [generated, *generated.get("$defs", {}).values()]:
        for field in definition.get("properties", {}).values():
            field.pop("title", None)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **generated,
            "title": "edgekd benchmark report"}


def schema_text() -> str:
    """The schema file's exact text, as shipped beside this module."""
    return json.dumps(json_schema(), indent=1, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(schema_text())
