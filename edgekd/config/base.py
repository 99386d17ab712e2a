"""The base of every config model, the names and numbers the models share, and how a config is written into a
manifest (with its type tag and recipe version) and read back as the lineage of a bundle."""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel, ConfigDict

RECIPE_VERSION = 1
# Names that become folder names: a recipe, a student, an artifact, a report folder.
NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
ConfigT = typing.TypeVar("ConfigT", bound=BaseModel)
SEED_MAX = 2**32 - 1


class _Config(BaseModel):
    # allow_inf_nan=False: `.inf` or `.nan` in any float field (a learning rate, a temperature, a budget) is refused at
    # validation, not discovered as a bundle of NaN weights two stages later.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        _BY_TAG.setdefault(cls.__name__, cls)


# Every config class by its type tag (its class name), for `from_dict`.
_BY_TAG: dict[str, type[_Config]] = {}
TAG_KEYS = ("type", "version")


def to_dict(config: BaseModel) -> dict[str, Any]:
    """Serialise a config with its type tag and recipe version, as written into manifests; `from_dict` reads it back."""
    return {"type": type(config).__name__, "version": RECIPE_VERSION, **config.model_dump(mode="json")}


def from_dict(data: dict[str, Any], base: type[ConfigT]) -> ConfigT:
    """The config `to_dict` wrote: the class its type tag names (which must be `base` or a subclass of it), validated.
    Without a tag (a section recorded plainly, e.g. a lineage's data) it is read as `base`. A pydantic ValidationError
    (a ValueError) when the fields do not validate; a ValueError for an unknown tag or a newer recipe version."""
    tag = data.get("type")
    cls = base if tag is None else _BY_TAG.get(str(tag))
    if cls is None or not issubclass(cls, base):
        raise ValueError(f"type {str(tag)[:80]!r} is not a {base.__name__}")
    version = data.get("version", RECIPE_VERSION)
    if not isinstance(version, int) or version > RECIPE_VERSION:
        raise ValueError(f"recipe version {str(version)[:20]} is newer than this edgekd's ({RECIPE_VERSION}); upgrade edgekd")
    return typing.cast(ConfigT, cls.model_validate({k: v for k, v in data.items() if k not in TAG_KEYS}))


def teacher_lineage(recipe: dict[str, Any]) -> dict[str, Any]:
    """The parts of a recipe (as `to_dict` wrote it) that a teacher depends on: data, seed, teacher."""
    return {key: recipe.get(key) for key in ("data", "seed", "teacher")}


def student_lineage(recipe: dict[str, Any], name: str) -> dict[str, Any]:
    """The parts of a recipe that the student `name` depends on (besides its teacher bundle): data, seed, its section,
    and the augmentation it names."""
    student = (recipe.get("students") or {}).get(name) or {}
    augment = (recipe.get("augment") or {}).get(student.get("augment") or "")
    return {"data": recipe.get("data"), "seed": recipe.get("seed"), "student": student or None, **({"augment": augment} if augment else {})}
