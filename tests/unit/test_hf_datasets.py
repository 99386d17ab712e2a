"""Hugging Face datasets as a task's source, offline: a DatasetDict saved with save_to_disk and as parquet files, read
through `data.dataset`; the label column's ClassLabel names become the task's labels; any column names; and the bad
inputs (a missing split or column, data.labels that disagree with the ClassLabel) refused at load and at `validate`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgekd import testing
from edgekd.bundle import Bundle
from edgekd.cli import main
from edgekd.config import DataConfig, validate_recipe
from edgekd.data import read_task_data
from edgekd.errors import DataError

# The ClassLabel names, in id order: not the names of any preset, so that a task holding them got them from the dataset.
NAMES = ["sad", "meh", "glad"]
# A custom single-text task over odd column names, without data.labels.
CUSTOM = {"task": "custom", "kind": "single", "text_columns": ["utterance"], "label_column": "mood"}


def _dataset_dict(columns: dict[str, str], names: list[str] | None, n_train: int = 30, n_dev: int = 12, **splits: Any) -> Any:
    """A DatasetDict of the three-class fixture task (train, validation), its columns renamed by `columns`
    (sentence, label -> ...); the label column a ClassLabel of `names`, or plain integers when None."""
    import datasets

    label = columns["label"]
    features = datasets.Features({
        columns["sentence"]: datasets.Value("string"),
        label: datasets.ClassLabel(names=names) if names is not None else datasets.Value("int64"),
        "idx": datasets.Value("int32"),
    })

    def split(rows: list[dict[str, Any]]) -> Any:
        table = {columns["sentence"]: [r["sentence"] for r in rows], label: [r["label"] for r in rows], "idx": list(range(len(rows)))}
        return datasets.Dataset.from_dict(table, features=features)

    parts = {"train": testing.three_class_rows(n_train, seed=1), "validation": testing.three_class_rows(n_dev, seed=2)}
    return datasets.DatasetDict({name: split(rows) for name, rows in {**parts, **splits}.items()})


def _save(folder: Path, dataset_dict: Any, form: str) -> Path:
    """Write a DatasetDict as save_to_disk writes it, or as one parquet file per split (datasets keeps the ClassLabel
    in the parquet schema's metadata)."""
    if form == "saved":
        dataset_dict.save_to_disk(str(folder))
    else:
        folder.mkdir(parents=True)
        for name, split in dataset_dict.items():
            split.to_parquet(str(folder / f"{name}.parquet"))
    return folder


@pytest.fixture(autouse=True)
def _datasets_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """datasets converts a parquet folder into its cache: keep that cache inside the test's folder."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The three-class dataset (columns utterance / mood, ClassLabel NAMES) saved both ways."""
    root = tmp_path_factory.mktemp("hf-datasets")
    dataset_dict = _dataset_dict({"sentence": "utterance", "label": "mood"}, NAMES)
    return {form: _save(root / form, dataset_dict, form) for form in ("saved", "parquet")}


@pytest.mark.parametrize("form", ["saved", "parquet"])
def test_classlabel_names_become_the_task_labels(folders: dict[str, Path], form: str) -> None:
    data = read_task_data(DataConfig(dataset=str(folders[form]), **CUSTOM))
    assert data.task.labels == tuple(NAMES) and data.task.num_labels == 3
    assert data.task.text_columns == ("utterance",) and data.task.label_column == "mood"
    train, dev = testing.three_class_rows(30, seed=1), testing.three_class_rows(12, seed=2)
    assert data.train.texts == [(r["sentence"],) for r in train]
    # The ClassLabel's integer ids are the task's label ids: id 2 is NAMES[2].
    assert data.train.labels.tolist() == [r["label"] for r in train]
    assert data.dev.labels.tolist() == [r["label"] for r in dev] and data.source == str(folders[form])


def test_recipe_labels_that_agree_are_kept_and_placeholder_names_renamed(folders: dict[str, Path], tmp_path: Path) -> None:
    assert read_task_data(DataConfig(dataset=str(folders["saved"]), labels=NAMES, **CUSTOM)).task.labels == tuple(NAMES)
    # ClassLabel names that only number the classes ('0', '1', '2') take the names data.labels gives.
    numbered = _save(tmp_path / "numbered", _dataset_dict({"sentence": "utterance", "label": "mood"}, ["0", "1", "2"]), "saved")
    data = read_task_data(DataConfig(dataset=str(numbered), labels=["neg", "neu", "pos"], **CUSTOM))
    assert data.task.labels == ("neg", "neu", "pos") and data.train.labels.max() == 2


@pytest.mark.parametrize("labels", [["sad", "glad"], ["glad", "meh", "sad"]], ids=["count", "order"])
def test_recipe_labels_that_disagree_with_the_classlabel_are_refused(folders: dict[str, Path], labels: list[str]) -> None:
    with pytest.raises(DataError, match=r"data.labels .* do not match the ClassLabel names") as info:
        read_task_data(DataConfig(dataset=str(folders["saved"]), labels=labels, **CUSTOM))
    message = str(info.value)
    assert str(labels) in message and str(NAMES) in message and "'mood'" in message and "\n" not in message


def test_a_label_column_without_classlabel_asks_for_data_labels(tmp_path: Path) -> None:
    plain = _save(tmp_path / "plain", _dataset_dict({"sentence": "utterance", "label": "mood"}, None), "saved")
    with pytest.raises(DataError, match=r"column 'mood' is not a ClassLabel, so its label names are unknown; set data.labels"):
        read_task_data(DataConfig(dataset=str(plain), **CUSTOM))
    # With data.labels, integer labels map by id as before.
    data = read_task_data(DataConfig(dataset=str(plain), labels=["a", "b", "c"], **CUSTOM))
    assert data.task.labels == ("a", "b", "c") and data.train.labels.tolist() == [r["label"] for r in testing.three_class_rows(30, 1)]


def test_splits_with_different_classlabels_are_refused(tmp_path: Path) -> None:
    columns = {"sentence": "utterance", "label": "mood"}
    mixed = _dataset_dict(columns, NAMES)
    mixed["validation"] = _dataset_dict(columns, ["glad", "meh", "sad"])["validation"]
    folder = _save(tmp_path / "mixed", mixed, "saved")
    with pytest.raises(DataError, match=r"the ClassLabel names of 'mood' differ between splits \(train: \['sad'"):
        read_task_data(DataConfig(dataset=str(folder), **CUSTOM))


def test_a_custom_task_from_a_dataset_may_omit_labels_but_not_from_a_path() -> None:
    assert DataConfig(dataset="some/dataset", **CUSTOM).labels is None
    with pytest.raises(ValueError, match="data.labels is required for a custom classification task read from data.path"):
        DataConfig(path="data", **CUSTOM)
    with pytest.raises(ValueError, match="data.labels is required"):
        DataConfig(dataset="some/dataset", path="data", **CUSTOM)  # data.path wins: nothing gives the names


def test_pair_columns_premise_hypothesis_gold_from_parquet(tmp_path: Path) -> None:
    import datasets

    features = datasets.Features({"premise": datasets.Value("string"), "hypothesis": datasets.Value("string"),
                                  "gold": datasets.ClassLabel(names=["entailment", "neutral", "contradiction"])})
    rows = {"premise": ["a cat sat", "it rains"], "hypothesis": ["an animal sat", "it is dry"], "gold": [0, 2]}
    pairs = datasets.DatasetDict(train=datasets.Dataset.from_dict(rows, features=features),
                                 dev=datasets.Dataset.from_dict(rows, features=features))
    # datasets reads dev.parquet as its `validation` split, where the task looks for dev by default.
    folder = _save(tmp_path / "nli", pairs, "parquet")
    cfg = DataConfig(task="custom", kind="pair", dataset=str(folder), text_columns=["premise", "hypothesis"], label_column="gold")
    data = read_task_data(cfg)
    assert data.task.labels == ("entailment", "neutral", "contradiction") and data.task.kind == "pair"
    assert data.train.texts == [("a cat sat", "an animal sat"), ("it rains", "it is dry")] and data.dev.labels.tolist() == [0, 2]


def test_hub_id_config_and_dev_split_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    calls: list[tuple[str, Any]] = []
    tweets = _dataset_dict({"sentence": "text", "label": "polarity"}, ["negative", "neutral", "positive"], n_train=9, n_dev=3,
                           test=testing.three_class_rows(3, seed=3))

    def fake_load(name: str, config: Any = None) -> Any:
        calls.append((name, config))
        return tweets

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    cfg = DataConfig(task="custom", kind="single", dataset="tweet_eval", dataset_config="sentiment", dev_split="test",
                     text_columns=["text"], label_column="polarity")
    data = read_task_data(cfg)
    assert calls == [("tweet_eval", "sentiment")] and data.source == "tweet_eval (sentiment)"
    assert data.task.labels == ("negative", "neutral", "positive") and len(data.train) == 9
    assert data.dev.labels.tolist() == [r["label"] for r in testing.three_class_rows(3, seed=3)]
    # The preset's labels (sst2: 2) against a three-class ClassLabel: refused, by count.
    with pytest.raises(DataError, match=r"the sst2 preset's labels \['negative', 'positive'\] do not match the ClassLabel names"):
        read_task_data(DataConfig(task="sst2", dataset="tweet_eval", text_columns=["text"], label_column="polarity"))


def test_missing_split_names_the_splits_it_has(folders: dict[str, Path]) -> None:
    for form in ("saved", "parquet"):
        with pytest.raises(DataError, match=r"has no split 'nope' \(data.dev_split\); its splits: train, validation"):
            read_task_data(DataConfig(dataset=str(folders[form]), dev_split="nope", **CUSTOM))
    with pytest.raises(DataError, match=r"has no split 'training' \(data.train_split\)"):
        read_task_data(DataConfig(dataset=str(folders["saved"]), train_split="training", **CUSTOM))


def test_missing_column_lists_the_datasets_columns(folders: dict[str, Path]) -> None:
    cfg = {**CUSTOM, "text_columns": ["sentence"]}
    with pytest.raises(DataError, match=r"missing column\(s\) 'sentence'; the dataset's columns are 'utterance', 'mood', 'idx'"):
        read_task_data(DataConfig(dataset=str(folders["saved"]), **cfg))


def test_what_is_not_a_dataset_folder(tmp_path: Path, folders: dict[str, Path]) -> None:
    import datasets

    file = testing.write_rows(tmp_path / "rows.csv", [{"utterance": "x", "mood": 0}])
    with pytest.raises(DataError, match=r"a file, not a dataset folder; set data.path="):
        read_task_data(DataConfig(dataset=str(file), **CUSTOM))
    datasets.Dataset.from_dict({"utterance": ["x"], "mood": [0]}).save_to_disk(str(tmp_path / "lone"))
    with pytest.raises(DataError, match=r"one Dataset without splits \(Dataset.save_to_disk\); save a DatasetDict"):
        read_task_data(DataConfig(dataset=str(tmp_path / "lone"), **CUSTOM))
    with pytest.raises(DataError, match=r"is a save_to_disk folder, which has no configs; remove data.dataset_config"):
        read_task_data(DataConfig(dataset=str(folders["saved"]), dataset_config="sentiment", **CUSTOM))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"datasets could not read it .*save_to_disk folder or parquet/csv/json files"):
        read_task_data(DataConfig(dataset=str(tmp_path / "empty"), **CUSTOM))


# ---- the CLI: `validate` checks a local folder from its metadata; `run` end to end -----------------------------------


def _recipe(tmp_path: Path, encoder: Path, data: dict[str, Any]) -> Path:
    """A tiny recipe (testing.tiny_recipe) reading `data` instead of the fixture task's folder."""
    raw = testing.tiny_recipe(tmp_path, encoder, tmp_path / "run")
    raw["data"] = {"task": "custom", **data}
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


@pytest.mark.parametrize(("form", "change", "excerpt"), [
    ("saved", {"dev_split": "nope"}, "has no split 'nope' (data.dev_split); its splits: train, validation"),
    ("parquet", {"dev_split": "nope"}, "has no split 'nope' (data.dev_split); its splits: train, validation"),
    ("saved", {"text_columns": ["text"]}, "missing column(s) 'text'; the dataset's columns are 'utterance', 'mood', 'idx'"),
    ("parquet", {"label_column": "label"}, "missing column(s) 'label'; the dataset's columns are 'utterance', 'mood', 'idx'"),
    ("saved", {"labels": ["negative", "positive"]}, "do not match the ClassLabel names ['sad', 'meh', 'glad'] of column 'mood'"),
    ("parquet", {"labels": ["negative", "neutral", "positive"]}, "do not match the ClassLabel names ['sad', 'meh', 'glad']"),
])
def test_validate_checks_a_local_dataset_folder_and_exits_2(folders: dict[str, Path], tiny_encoder: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str], form: str, change: dict[str, Any],
                                                            excerpt: str) -> None:
    good = _recipe(tmp_path / "good", tiny_encoder, {**CUSTOM, "dataset": str(folders[form])})
    assert main(["validate", str(good)]) == 0
    capsys.readouterr()
    bad = _recipe(tmp_path / "bad", tiny_encoder, {**CUSTOM, "dataset": str(folders[form]), **change})
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert excerpt in err and len(err.strip().splitlines()) == 1, err
    # The validation read the folder's metadata and schemas only: no parquet folder was converted into the cache.
    assert not list((tmp_path / "hf-datasets").rglob("*.arrow"))


def test_teacher_on_a_missing_split_exits_2_without_output(folders: dict[str, Path], tiny_encoder: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    recipe = _recipe(tmp_path, tiny_encoder, {**CUSTOM, "dataset": str(folders["saved"]), "train_split": "nope"})
    assert main(["teacher", str(recipe)]) == 2
    assert "has no split 'nope' (data.train_split)" in capsys.readouterr().err
    assert not (tmp_path / "run" / "teacher").exists()


def test_run_on_a_saved_three_class_dataset(tiny_encoder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`edgekd run` (teacher, BiLSTM, its ONNX export) on a save_to_disk folder whose labels only the ClassLabel names:
    every bundle records those names and `predict` answers with them."""
    dataset_dict = _dataset_dict({"sentence": "utterance", "label": "mood"}, NAMES, n_train=256, n_dev=48)
    folder = _save(tmp_path / "moods", dataset_dict, "saved")
    raw = testing.tiny_recipe(folder, tiny_encoder, tmp_path / "run")
    raw["data"] = {**CUSTOM, "dataset": str(folder), "metrics": ["accuracy", "macro_f1"]}
    raw["students"] = {"bilstm": testing.tiny_students()["bilstm"]}
    raw["artifacts"] = {"bilstm-onnx": {"parent": "bilstm", "export": {"format": "onnx"}}}
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    validate_recipe(raw)
    assert main(["run", str(recipe)]) == 0
    capsys.readouterr()
    for name in ("teacher", "bilstm", "bilstm-onnx"):
        manifest = Bundle.open(tmp_path / "run" / name).manifest
        assert list(manifest.task.labels) == NAMES and manifest.task.text_columns == ["utterance"], name
    teacher = Bundle.open(tmp_path / "run" / "teacher").manifest
    # The tiny teacher learns the cue words: well above chance (1/3), so the examples reached it with their own labels.
    assert teacher.metrics.scores().values["accuracy"] > 0.5, teacher.metrics.dev
    assert main(["predict", str(tmp_path / "run" / "bilstm-onnx"), "--", "the film was great", "it was okay"]) == 0
    predictions = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(predictions) == 2 and all(set(p["probabilities"]) == set(NAMES) for p in predictions), predictions

