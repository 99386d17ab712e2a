"""Hugging Face `datasets` as a task's source: a hub id, a `DatasetDict.save_to_disk` folder, or a folder of parquet,
CSV or JSON files that `datasets.load_dataset(folder)` reads.

Before any row is read, the splits, the columns and the label column's `ClassLabel` names are checked against the task
(`plan`); for a local folder the same check runs at `edgekd validate` from the dataset's metadata and file schemas
alone (`local_features`). A custom task without `data.labels` takes its label names from the ClassLabel.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edgekd.errors import DataError
from edgekd.tasks import Task

logger = logging.getLogger(__name__)

# What save_to_disk writes at a folder's top: a DatasetDict's split list, or a lone Dataset's state.
SAVED_DICT = "dataset_dict.json"
SAVED_DATASET = "state.json"
# Columns of each split: name -> its `datasets` feature (None where a CSV/JSON file's types are not known yet).
SplitColumns = Mapping[str, Mapping[str, Any]]
Table = tuple[list[dict[str, Any]], str]  # (rows, where they came from, for messages)


@dataclass(frozen=True)
class Plan:
    """What to read from a dataset: the train and dev split names, the columns, the task's label names, and the other
    named splits by role (selection, test)."""

    train: str
    dev: str
    columns: tuple[str, ...]
    labels: tuple[str, ...]
    extra: dict[str, str] = field(default_factory=dict)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def local_folder(dataset: str) -> Path | None:
    """The folder `data.dataset` names when it is a local path, None for a hub id."""
    path = Path(dataset).expanduser()
    if path.is_file():
        raise DataError(f"data.dataset {dataset}: a file, not a dataset folder; set data.path={dataset} to read one file")
    return path if path.is_dir() else None


def _saved_folder(folder: Path, config: str | None) -> bool:
    """Whether `folder` was written by save_to_disk (refusing a lone Dataset, or a config, which it cannot have)."""
    if (folder / SAVED_DATASET).is_file() and not (folder / SAVED_DICT).is_file():
        raise DataError(
            f"{folder}: one Dataset without splits (Dataset.save_to_disk); save a DatasetDict with train and validation "
            "splits, or set data.path to a single file (a 10% dev hold-out)"
        )
    if not (folder / SAVED_DICT).is_file():
        return False
    if config is not None:
        raise DataError(f"data.dataset_config {config!r}: {folder} is a save_to_disk folder, which has no configs; remove data.dataset_config")
    return True


def hub_name(dataset: str, config: str | None) -> tuple[str, str | None]:
    """The hub id and config to load (`glue/sst2` is read as `nyu-mll/glue` with config `sst2`)."""
    name, _, suffix = dataset.partition("/")
    if name == "glue" and suffix and config is None:
        return "nyu-mll/glue", suffix
    return dataset, config


def open_dataset(dataset: str, config: str | None) -> tuple[Mapping[str, Any], str]:
    """The splits (name -> `datasets.Dataset`) of a local folder or hub dataset, and its name for messages."""
    import datasets

    folder = local_folder(dataset)
    if folder is not None and _saved_folder(folder, config):
        try:
            return datasets.load_from_disk(str(folder)), str(folder)
        except Exception as exc:  # a damaged folder raises several unrelated types
            raise DataError(f"{folder}: not a readable save_to_disk folder ({_one_line(exc)})") from None
    if folder is not None:
        try:
            loaded = datasets.load_dataset(str(folder), config)
        except Exception as exc:  # no data files, unreadable files, mixed formats
            raise DataError(
                f"{folder}: datasets could not read it ({_one_line(exc)}); data.dataset=DIR takes a DatasetDict.save_to_disk "
                "folder or parquet/csv/json files named by split (train.parquet, validation.parquet)"
            ) from None
        return loaded, str(folder)
    name, config = hub_name(dataset, config)
    try:
        loaded = datasets.load_dataset(name, config)
    except Exception as exc:  # network, auth and missing-dataset errors all mean the same to the user
        raise DataError(
            f"could not load dataset {name!r} (config {config!r}) from the Hugging Face hub: {_one_line(exc)}. "
            "Without internet, download the files and set data.path=DIR (train.tsv/dev.tsv or csv/jsonl/parquet), "
            "or data.dataset=DIR for a DatasetDict.save_to_disk folder."
        ) from None
    return loaded, f"{name} ({config})" if config else name


def local_features(folder: Path, config: str | None) -> dict[str, Mapping[str, Any]]:
    """Each split's columns and features of a local dataset folder, from metadata and file schemas (no rows read)."""
    import datasets

    if _saved_folder(folder, config):
        loaded, _ = open_dataset(str(folder), None)  # memory-mapped: reads the metadata, not the rows
        return {split: dataset.features for split, dataset in loaded.items()}
    try:
        builder = datasets.load_dataset_builder(str(folder), config)
    except Exception as exc:  # no data files, mixed formats
        raise DataError(
            f"{folder}: datasets could not read it ({_one_line(exc)}); data.dataset=DIR takes a DatasetDict.save_to_disk "
            "folder or parquet/csv/json files named by split (train.parquet, validation.parquet)"
        ) from None
    declared = builder.info.features  # from the folder's README metadata, when it has one
    files = builder.config.data_files or {}
    return {str(split): declared or _file_features(Path(paths[0])) for split, paths in files.items() if paths}


def _file_features(path: Path) -> dict[str, Any]:
    """A data file's columns: a parquet file's schema (with the ClassLabels datasets wrote), a CSV header, or the keys
    of a JSON-lines file's first row; empty where the format is not one of these (the load checks it then)."""
    import datasets

    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            return dict(datasets.Features.from_arrow_schema(pq.read_schema(path)))
        if path.suffix in (".csv", ".tsv"):
            import pyarrow.csv as pcsv

            delimiter = "\t" if path.suffix == ".tsv" else ","
            with pcsv.open_csv(path, parse_options=pcsv.ParseOptions(delimiter=delimiter)) as reader:
                return dict.fromkeys(reader.schema.names)
        if path.suffix in (".json", ".jsonl"):
            with open(path, encoding="utf-8") as handle:
                first = next((line for line in handle if line.strip()), "{}")
            row = json.loads(first)
            return dict.fromkeys(row) if isinstance(row, dict) else {}
    except (OSError, ValueError) as exc:  # pyarrow's errors are ValueErrors (ArrowInvalid) or OSErrors
        raise DataError(f"{path}: not a readable {path.suffix.lstrip('.')} file ({_one_line(exc)})") from None
    return {}


def plan(splits: SplitColumns, name: str, task: Task, *, train_split: str, dev_splits: tuple[str, ...],
         recipe_labels: list[str] | None, extra_splits: Mapping[str, str] | None = None) -> Plan:
    """Check a dataset's splits, columns and ClassLabel names against the task; `dev_splits`: the names tried in order
    (one when the recipe names data.dev_split); `recipe_labels`: data.labels as the recipe gives them."""
    if train_split not in splits:
        raise DataError(f"dataset {name} has no split {train_split!r} (data.train_split); its splits: {', '.join(splits)}")
    dev = next((s for s in dev_splits if s in splits), None)
    if dev is None:
        raise DataError(f"dataset {name} has no split {dev_splits[0]!r} (data.dev_split); its splits: {', '.join(splits)}")
    extra = dict(extra_splits or {})
    for role, split in extra.items():
        if split not in splits:
            raise DataError(f"dataset {name} has no split {split!r} (data.{role}_split); its splits: {', '.join(splits)}")
    columns: dict[str, str] = {}
    names_by_split = {}
    for split in dict.fromkeys((train_split, dev, *extra.values())):
        present = splits[split]
        if not present:
            continue  # a file format whose columns are only known once read
        for column in (*task.text_columns, task.label_column):
            source = next((c for c in (column, *task.column_aliases.get(column, ())) if c in present), None)
            if source is None:
                missing = [c for c in (*task.text_columns, task.label_column) if c not in present
                           and not any(a in present for a in task.column_aliases.get(c, ()))]
                raise DataError(
                    f"dataset {name}:{split}: missing column(s) {', '.join(map(repr, missing))}; the dataset's columns are "
                    f"{', '.join(map(repr, present))}. Set data.text_columns / data.label_column to the right names."
                )
            columns[column] = source
        names_by_split[split] = getattr(present.get(columns[task.label_column]), "names", None)
    if not names_by_split:  # no split's columns known before reading (validate); the load checks them
        return Plan(train=train_split, dev=dev, columns=(), labels=task.labels, extra=extra)
    names = next(iter(names_by_split.values()))
    if len({tuple(n) if n is not None else None for n in names_by_split.values()}) > 1:
        raise DataError(f"dataset {name}: the ClassLabel names of {columns[task.label_column]!r} differ between splits "
                        f"({'; '.join(f'{s}: {n}' for s, n in names_by_split.items())}); the splits must share one label set")
    source = columns.get(task.label_column, task.label_column)
    labels = _label_names(task, tuple(names) if names is not None else None, recipe_labels, name, source)
    return Plan(train=train_split, dev=dev, columns=tuple(dict.fromkeys(columns.values())), labels=labels, extra=extra)


def _placeholders(names: tuple[str, ...]) -> bool:
    """ClassLabel names that only number the classes ('0', '1' or LABEL_0, LABEL_1): data.labels may rename them."""
    return all(n in (str(i), f"LABEL_{i}", f"label_{i}") for i, n in enumerate(names))


def _label_names(task: Task, names: tuple[str, ...] | None, recipe_labels: list[str] | None, name: str, column: str) -> tuple[str, ...]:
    if task.problem == "regression":
        return task.labels
    if names is None:
        if task.labels:
            return task.labels
        raise DataError(
            f"dataset {name}: column {column!r} is not a ClassLabel, so its label names are unknown; "
            "set data.labels to the task's label names in id order"
        )
    if not task.labels:
        return names
    mismatch = len(task.labels) != len(names) or (recipe_labels is not None and task.labels != names and not _placeholders(names))
    if mismatch:
        given = "data.labels" if recipe_labels is not None else f"the {task.name} preset's labels"
        raise DataError(
            f"dataset {name}: {given} {list(task.labels)} do not match the ClassLabel names {list(names)} of column "
            f"{column!r} (in id order); remove data.labels to take the dataset's names, or list them in its id order"
        )
    return task.labels


def dataset_tables(dataset: str, config: str | None, task: Task, *, train_split: str, dev_splits: tuple[str, ...],
                   recipe_labels: list[str] | None, extra_splits: Mapping[str, str] | None = None) -> tuple[dict[str, Table], str, Task]:
    """The train and dev rows of a dataset (and of the `extra_splits` by role: selection, test; only the task's
    columns), its name, and the task with its label names."""
    loaded, name = open_dataset(dataset, config)
    if not isinstance(loaded, Mapping):
        raise DataError(f"dataset {name}: one Dataset without splits; give a dataset with train and validation splits")
    chosen = plan({s: d.features for s, d in loaded.items()}, name, task, train_split=train_split, dev_splits=dev_splits,
                  recipe_labels=recipe_labels, extra_splits=extra_splits)
    tables = {role: (loaded[split].select_columns(list(chosen.columns)).to_list(), f"{name}:{split}")
              for role, split in (("train", chosen.train), ("dev", chosen.dev), *chosen.extra.items())}
    if chosen.labels != task.labels:
        logger.info("%s: label names %s from the ClassLabel of %r", name, list(chosen.labels), task.label_column)
    return tables, name, replace(task, labels=chosen.labels)


def check_local(folder: Path, config: str | None, task: Task, *, train_split: str, dev_splits: tuple[str, ...],
                recipe_labels: list[str] | None, extra_splits: Mapping[str, str] | None = None) -> None:
    """`plan` on a local folder's metadata: what `edgekd validate` can check without reading the rows."""
    plan(local_features(folder, config), str(folder), task, train_split=train_split, dev_splits=dev_splits,
         recipe_labels=recipe_labels, extra_splits=extra_splits)
