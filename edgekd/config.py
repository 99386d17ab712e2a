"""Recipes: YAML validated into frozen pydantic models, with `key.sub=value` overrides.

Every problem in a recipe is reported in one `ConfigError`; an unknown key names the nearest valid one.
"""

from __future__ import annotations

import copy
import difflib
import os
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edgekd.errors import ConfigError
from edgekd.tasks import METRICS, PRESETS

RECIPE_VERSION = 1


class _Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DataConfig(_Config):
    """Where a task's data comes from and what its columns mean."""

    # A preset (sst2, mrpc, tweets) fills in everything below; `custom` needs kind, text_columns, label_column, labels.
    task: str = "custom"
    # A Hugging Face `datasets` id (e.g. `nyu-mll/glue` with dataset_config `sst2`; `glue/sst2` is accepted too).
    dataset: str | None = None
    dataset_config: str | None = None
    # A local directory (train.* and dev.* or validation.* files) or a single file; wins over `dataset`.
    path: str | None = None
    kind: Literal["single", "pair"] | None = None
    problem: Literal["classification", "regression"] | None = None
    text_columns: list[str] | None = None
    label_column: str | None = None
    labels: list[str] | None = None
    metrics: list[str] | None = None
    train_split: str = "train"
    dev_split: str | None = None
    # Keep the first N examples after a fixed-seed shuffle (quick runs, tests); null keeps all.
    max_train_examples: int | None = Field(default=None, gt=0)
    max_dev_examples: int | None = Field(default=None, gt=0)

    @field_validator("task")
    @classmethod
    def _known_task(cls, task: str) -> str:
        if task != "custom" and task not in PRESETS:
            raise ValueError(f"data.task {task!r} is not a preset; valid: {', '.join([*PRESETS, 'custom'])}")
        return task

    @model_validator(mode="after")
    def _check_task(self) -> DataConfig:
        problems = []
        if self.task == "custom":
            for key in ("kind", "text_columns", "label_column"):
                if getattr(self, key) is None:
                    problems.append(f"data.{key} is required when data.task is 'custom'")
            if self.problem != "regression" and not self.labels:
                problems.append("data.labels is required for a custom classification task (the label names, in id order)")
            if self.path is None and self.dataset is None:
                problems.append("a custom task needs data.path (local files) or data.dataset (a Hugging Face id)")
        if self.text_columns is not None:
            kind = self.kind or (PRESETS[self.task].task.kind if self.task in PRESETS else None)
            want = {"single": 1, "pair": 2}.get(kind or "", len(self.text_columns))
            if len(self.text_columns) != want:
                problems.append(f"data.text_columns has {len(self.text_columns)} column(s); a {kind} task needs {want}")
        for metric in self.metrics or []:
            if metric not in METRICS:
                problems.append(f"data.metrics: unknown metric {metric!r}; valid: {', '.join(METRICS)}")
        if self.labels is not None and len(set(self.labels)) != len(self.labels):
            problems.append(f"data.labels has duplicates: {self.labels}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class TrainConfig(_Config):
    """One training run: optimizer, schedule, batching, evaluation, checkpoints, hardware."""

    epochs: int = Field(default=3, gt=0)
    # Stop after this many optimizer steps (quick runs); null trains all epochs.
    max_steps: int | None = Field(default=None, gt=0)
    batch_size: int = Field(default=32, gt=0)
    eval_batch_size: int = Field(default=128, gt=0)
    learning_rate: float = Field(default=5e-5, gt=0)
    weight_decay: float = Field(default=0.01, ge=0)
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1)
    max_grad_norm: float = Field(default=1.0, gt=0)
    # Batches of similar lengths padded to their own longest: several times faster than fixed-length padding.
    group_by_length: bool = True
    # Evaluate on dev every N optimizer steps; null evaluates at the end of each epoch.
    eval_every: int | None = Field(default=None, gt=0)
    # Keep the weights of the best dev evaluation (else the last weights).
    keep_best: bool = False
    # Stop when this many evaluations in a row did not improve the dev metric; null never stops early.
    early_stopping_patience: int | None = Field(default=None, gt=0)
    checkpoint_every: int = Field(default=500, gt=0)
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    # Mixed precision on CUDA (ignored on CPU, where it would be slower).
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"


class TeacherConfig(_Config):
    """Fine-tune an encoder on the task, or import an already fine-tuned classifier and only evaluate it."""

    # `minilm` is the packaged all-MiniLM-L6-v2 encoder (offline); otherwise a local HF directory or a hub id.
    model: str = "minilm"
    mode: Literal["finetune", "import"] = "finetune"
    trust_remote_code: bool = False
    max_length: int = Field(default=128, gt=1, le=4096)
    train: TrainConfig = TrainConfig()
    # Run the finished teacher over the train split and keep its logits (memory-mapped) for distillation.
    cache_logits: bool = True


class Recipe(_Config):
    """One end-to-end recipe. Later stages add their sections here."""

    version: Literal[1] = RECIPE_VERSION
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    seed: int = 42
    # Where stage outputs go: <output_dir>/teacher, ...; default runs/<name>.
    output_dir: str | None = None
    # Teacher logits and other caches; default $EDGEKD_CACHE_DIR or <output_dir>/cache.
    cache_dir: str | None = None
    data: DataConfig
    teacher: TeacherConfig = TeacherConfig()

    @property
    def out(self) -> Path:
        return Path(self.output_dir or f"runs/{self.name}")

    @property
    def cache(self) -> Path:
        return Path(self.cache_dir or os.environ.get("EDGEKD_CACHE_DIR") or self.out / "cache")


def to_dict(config: BaseModel) -> dict[str, Any]:
    """Serialise a config with its type tag and recipe version, as written into manifests."""
    return {"type": type(config).__name__, "version": RECIPE_VERSION, **config.model_dump(mode="json")}


def shipped_recipes() -> dict[str, Path]:
    """Names and paths of the recipes shipped inside the package."""
    folder = resources.files("edgekd.recipes")
    return {Path(str(p)).stem: Path(str(p)) for p in folder.iterdir() if str(p).endswith(".yaml")}


def resolve_recipe_path(recipe: str | os.PathLike[str]) -> Path:
    """A recipe argument is a YAML path or the name of a shipped recipe (`demo`, `sst2-tinybert`, ...)."""
    path = Path(recipe)
    if path.is_file():
        return path
    shipped = shipped_recipes()
    if str(recipe) in shipped:
        return shipped[str(recipe)]
    hint = f" (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(str(recipe), shipped, 1)) else ""
    raise ConfigError(
        f"{recipe}: no such recipe file{hint}. Give a YAML path or a shipped recipe: {', '.join(sorted(shipped))}"
    )


def load_recipe(recipe: str | os.PathLike[str], overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read a recipe file (or shipped name), apply `key.sub=value` overrides, and validate it."""
    path = resolve_recipe_path(recipe)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc}); save the recipe as UTF-8") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a recipe is a YAML mapping of sections (name, data, teacher, ...), found {type(raw).__name__}")
    return validate_recipe(apply_overrides(raw, overrides), source=str(path))


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Return a copy of `raw` with each `a.b.c=value` set; values are parsed as YAML (`3`, `true`, `[a, b]`)."""
    result = copy.deepcopy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise ConfigError(f"override {item!r}: write it as key.sub=value, e.g. teacher.train.epochs=1")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({exc})") from None
        node = result
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {'.'.join(parts[: i + 1])} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return result


def validate_recipe(raw: dict[str, Any], *, source: str = "recipe") -> Recipe:
    """Validate a recipe mapping; all problems are raised together as one ConfigError."""
    try:
        return Recipe.model_validate(raw)
    except ValidationError as exc:
        lines = [_describe(err) for err in exc.errors()]
        raise ConfigError(f"{source}: {len(lines)} problem(s):\n" + "\n".join(f"  - {line}" for line in lines)) from None


def _describe(err: Any) -> str:
    loc = [str(p) for p in err["loc"]]
    where = ".".join(loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        valid = _fields_at(Recipe, loc[:-1])
        close = nearest_key(loc[-1], valid)
        hint = f"did you mean {close!r}? " if close else ""
        return f"{where}: unknown key; {hint}valid keys here: {', '.join(valid)}"
    if err["type"] == "missing":
        return f"{where}: required key is missing"
    if err["type"] == "value_error":
        return err["msg"].removeprefix("Value error, ")
    given = err.get("input")
    shown = "" if isinstance(given, dict) else f" (got {given!r})"
    return f"{where}: {err['msg']}{shown}"


def nearest_key(key: str, valid: list[str]) -> str | None:
    """The valid key closest to a mistyped one: by spelling, or by initials (`lr` for `learning_rate`)."""
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    if close:
        return close[0]
    initials = [v for v in valid if "_" in v and "".join(part[0] for part in v.split("_")) == key.lower()]
    return initials[0] if initials else None


def _fields_at(model: type[BaseModel], loc: list[str]) -> list[str]:
    """The valid keys of the section at `loc` (a list of field names from the recipe's top)."""
    for part in loc:
        field = model.model_fields.get(part)
        nested = _model_in(field.annotation) if field else None
        if nested is None:
            return []
        model = nested
    return list(model.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        for arg in typing.get_args(annotation):
            if (found := _model_in(arg)) is not None:
                return found
    return None
