"""Config models of `edgekd run` and the gate: the artifacts of a run, its benchmark, a budget, and the recipe itself."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

# The benchmark protocol's minimums, re-exported: they live in the spine's smallest module, which the device-side child
# reads without importing the configs.
from edgekd.protocol import MIN_QUERIES, MIN_SECONDS

from .base import NAME, RECIPE_VERSION, SEED_MAX, _Config
from .graph import graph_problems
from .methods import ExportConfig, PruneConfig, QuantizeConfig
from .render import _shown
from .training import AugmentConfig, DataConfig, StudentConfig, TeacherConfig


def _known_metric(metric: str | None) -> str | None:
    from edgekd.metrics import METRIC_FUNCTIONS

    if metric is not None and metric not in METRIC_FUNCTIONS:
        raise ValueError(f"metric {_shown(metric)} is not one the gate computes; use one of {', '.join(METRIC_FUNCTIONS)}")
    return metric


class ModelBudget(_Config):
    """What one benchmarked model may cost; a limit left out is not checked."""

    # The dev metric accuracy limits are in (points of it); null: the budget's `metric`, else the task's (MRPC f1,
    # more than two classes macro_f1, regression pearson, otherwise accuracy).
    metric: str | None = None
    # Points of the dev metric below the teacher (the report's --teacher), e.g. 2.0: PASS when the whole paired
    # bootstrap 95% interval of the drop is at or below it, FAIL when the whole interval is above, INCONCLUSIVE otherwise.
    max_accuracy_drop: float | None = Field(default=None, ge=0.0)
    # With `edgekd gate --baseline OLD_REPORT`: points of the metric the model may lose against the same model in the
    # baseline report (default 0.5), and its latency ratio to the baseline's bundle measured now (default 1.05).
    max_accuracy_regression: float | None = Field(default=None, ge=0.0)
    max_slowdown: float | None = Field(default=None, gt=0.0)
    max_bytes: int | None = Field(default=None, gt=0)
    max_memory_mb: float | None = Field(default=None, gt=0.0)
    # Latency relative to the report's reference (median of paired ratios): PASS when the whole 95% interval is at or
    # below it, FAIL when the whole interval is above, INCONCLUSIVE otherwise (then measured again with 4x the pairs).
    max_latency_ratio: float | None = Field(default=None, gt=0.0)
    # Absolute p90 (the early-stopping estimate) in ms: judged only for a report measured on this device.
    max_p90_ms: float | None = Field(default=None, gt=0.0)
    device: str | None = None

    @field_validator("metric")
    @classmethod
    def _metric_known(cls, metric: str | None) -> str | None:
        return _known_metric(metric)

    @model_validator(mode="after")
    def _p90_needs_a_device(self) -> ModelBudget:
        if self.max_p90_ms is not None and not self.device:
            raise ValueError("max_p90_ms needs `device`: absolute latency means something only on the device it was measured on")
        return self


class Budget(_Config):
    """A CI gate's budget file: limits per model name (the bundle's directory name), `default` for the others."""

    version: Literal[1] = 1
    # Which run of the report to judge (its thread count).
    threads: int = Field(default=1, ge=1)
    # The dev metric of every model's accuracy limits unless its own entry names one (see ModelBudget.metric).
    metric: str | None = None
    default: ModelBudget | None = None
    models: dict[str, ModelBudget] = {}

    @field_validator("metric")
    @classmethod
    def _metric_known(cls, metric: str | None) -> str | None:
        return _known_metric(metric)


STAGES = ("export", "quantize", "prune")


class ArtifactConfig(_Config):
    """One derived bundle of `edgekd run`: its `parent` (teacher, a student or an earlier artifact) exported, quantized
    or pruned; written to <output_dir>/<artifact name>."""

    parent: str
    export: ExportConfig | None = None
    quantize: QuantizeConfig | None = None
    prune: PruneConfig | None = None

    @model_validator(mode="after")
    def _one_stage(self) -> ArtifactConfig:
        given = [key for key in STAGES if getattr(self, key) is not None]
        if len(given) != 1:
            raise ValueError(f"an artifact is made by exactly one of export, quantize or prune; this one has {', '.join(given) or 'none'}")
        return self

    @property
    def stage(self) -> str:
        return next(key for key in STAGES if getattr(self, key) is not None)

    @property
    def config(self) -> Any:
        return getattr(self, self.stage)


# A week bounds a child's timeout: waits past what the OS clock functions take overflow.
MAX_TIMEOUT = 7 * 86400


class BenchConfig(_Config):
    """A benchmark (DESIGN.md's protocol) of ONNX and TFLite bundles on a target, against a reference: `edgekd bench`'s
    settings, and `edgekd run`'s `bench:` section (which also names the run's artifacts measured and the report folder)."""

    # Artifact names measured (`edgekd run`); null: every ONNX and TFLite artifact but the reference.
    models: list[str] | None = None
    # Latency ratios are paired against this: an ONNX/TFLite artifact of the run (e.g. the teacher's export; for
    # `edgekd bench` a bundle path) or `bert-base-shape` (BERT-base sized, random weights: what a BERT-base teacher
    # would cost); null (`edgekd bench` only): no ratios.
    reference: str | None = "bert-base-shape"
    # Also measure bert-base-shape in the same run when the reference is another model (the speed-up against BERT-base).
    bert_base_shape: bool = True
    # A bundle (any format) whose dev metric in its manifest is the teacher's: accuracy drops are against it; null in
    # `edgekd run`: the recipe's teacher.
    teacher: str | None = None
    # local, ssh://user@host[...] or qemu-aarch64://ROOTFS (emulated: functional only, its latency means nothing).
    target: str = "local"
    threads: list[int] = Field(default=[1], min_length=1)
    queries: int = Field(default=MIN_QUERIES, ge=MIN_QUERIES)
    seconds: float = Field(default=MIN_SECONDS, ge=MIN_SECONDS)
    # Real dev sentences measured (a fixed random sample, so their lengths follow the dev set's).
    texts: int = Field(default=200, gt=0)
    # Seconds one child process on the target may take.
    timeout: float = Field(default=900.0, gt=0, le=MAX_TIMEOUT)
    # Dev accuracy of every model through the runtime (the gate-trust script turns it off: it measures latency only).
    accuracy: bool = True
    # The report folder under output_dir: report.json, report.md, report.html, plots, gate.xml, gate.md.
    output: str = Field(default="report", pattern=f"^{NAME}$")

    @field_validator("threads")
    @classmethod
    def _positive_threads(cls, threads: list[int]) -> list[int]:
        if any(t < 1 for t in threads):
            raise ValueError(f"threads {_shown(threads)}: positive counts, e.g. [1, 2]")
        return threads


class Recipe(_Config):
    """One end-to-end recipe: data, teacher, students, and for `edgekd run` the artifacts, the benchmark and the gate."""

    version: Literal[1] = RECIPE_VERSION
    name: str = Field(pattern=f"^{NAME}$")
    # numpy's legacy seeding (np.random.seed) takes 0 .. 2**32 - 1.
    seed: int = Field(default=42, ge=0, le=SEED_MAX)
    # Distil every student under this many seeds (seed, seed + 1, ...): the first is the student later stages use,
    # the others land beside it as <student>-seed<S>; <student>.seeds.json gives each run, the mean and the sd.
    seeds: int = Field(default=1, ge=1, le=100)
    # Where stage outputs go: <output_dir>/teacher, ...; default runs/<name>.
    output_dir: str | None = None
    # Teacher logits and other caches; default $EDGEKD_CACHE_DIR or <output_dir>/cache.
    cache_dir: str | None = None
    data: DataConfig
    teacher: TeacherConfig = TeacherConfig()
    # Named augmentations of the train split; a student uses one with `augment: NAME`.
    augment: dict[str, AugmentConfig] = {}
    # Students by name: each is written to <output_dir>/<name>.
    students: dict[str, StudentConfig] = {}
    # Derived bundles by name, made in this order by `edgekd run`: exports, quantizations, prunings.
    artifacts: dict[str, ArtifactConfig] = {}
    bench: BenchConfig | None = None
    # The budget the benchmark report is judged against (as a budget file of `edgekd gate`); the run's exit code.
    gate: Budget | None = None

    @field_validator("students")
    @classmethod
    def _student_names(cls, students: dict[str, StudentConfig]) -> dict[str, StudentConfig]:
        for name in students:
            if not re.fullmatch(NAME, name) or name in ("teacher", "cache"):
                raise ValueError(f"student name {_shown(name)}: use letters, digits, - _ . (not 'teacher' or 'cache')")
        return students

    @model_validator(mode="after")
    def _run_graph(self) -> Recipe:
        problems = graph_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def out(self) -> Path:
        return Path(self.output_dir or f"runs/{self.name}")

    @property
    def cache(self) -> Path:
        return Path(self.cache_dir or os.environ.get("EDGEKD_CACHE_DIR") or self.out / "cache")
