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


def to_dict(config: BaseModel) -> dict[str, Any]:
    """Serialise a config with its type tag and recipe version, as written into manifests."""
    return {"type": type(config).__name__, "version": RECIPE_VERSION, **config.model_dump(mode="json")}


def teacher_lineage(recipe: dict[str, Any]) -> dict[str, Any]:
    """The parts of a recipe (as `to_dict` wrote it) that a teacher depends on: data, seed, teacher."""
    return {key: recipe.get(key) for key in ("data", "seed", "teacher")}


def student_lineage(recipe: dict[str, Any], name: str) -> dict[str, Any]:
    """The parts of a recipe that the student `name` depends on (besides its teacher bundle): data, seed, its section,
    and the augmentation it names."""
    student = (recipe.get("students") or {}).get(name) or {}
    augment = (recipe.get("augment") or {}).get(student.get("augment") or "")
    return {"data": recipe.get("data"), "seed": recipe.get("seed"), "student": student or None, **({"augment": augment} if augment else {})}
