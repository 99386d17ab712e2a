"""Tiny trained bundles to export: a teacher and both students, for a single-sentence and a sentence-pair task."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekd import testing
from edgekd.bundle import Bundle
from edgekd.config import validate_recipe


@pytest.fixture(scope="session", params=["single", "pair"])
def tiny_bundles(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_encoder: Path) -> dict[str, Bundle]:
    """{"teacher", "tinybert", "bilstm"} bundles trained briefly on the fixture task (parity needs no accuracy)."""
    from edgekd.distill.distill import distill
    from edgekd.distill.teacher import teacher

    kind = request.param
    root = tmp_path_factory.mktemp(f"export-{kind}")
    data = testing.write_fixture_task(root / "data", kind, n_train=64, n_dev=40)
    raw = testing.tiny_recipe(data, tiny_encoder, root / "run", kind, train={"epochs": 1})
    students = testing.tiny_students({"epochs": 1})
    students["tinybert"]["stages"] = students["tinybert"]["stages"][1:]
    raw["students"] = students
    recipe = validate_recipe(raw)
    return {"teacher": teacher(recipe), **{name: distill(recipe, name) for name in students}}
