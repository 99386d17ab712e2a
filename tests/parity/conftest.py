"""Tiny trained bundles to export: a teacher and both students, for a single-sentence and a sentence-pair task."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekd import testing
from edgekd.bundle import Bundle
from edgekd.config import validate_recipe


@pytest.fixture(scope="session", params=["single", "pair"])
def tiny_bundles(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_encoder: Path) -> dict[str, Bundle]:
    """{"teacher", "tinybert", "bilstm"} bundles trained on the fixture task until they predict it well: a model at
    chance predicts one class, and agreement checks against it would prove nothing."""
    from edgekd.distill.distill import distill
    from edgekd.distill.teacher import teacher

    kind = request.param
    root = tmp_path_factory.mktemp(f"export-{kind}")
    data = testing.write_fixture_task(root / "data", kind, n_dev=40)
    # The pair task needs a few more epochs at a lower rate (at 5e-3 the tiny BERT settles on one class).
    train = {"epochs": 5, "learning_rate": 2e-3} if kind == "pair" else None
    raw = testing.tiny_recipe(data, tiny_encoder, root / "run", kind, train=train)
    students = testing.tiny_students()
    raw["students"] = students
    recipe = validate_recipe(raw)
    bundles = {"teacher": teacher(recipe), **{name: distill(recipe, name) for name in students}}
    for name, bundle in bundles.items():
        accuracy = bundle.manifest.metrics["dev"]["accuracy"]
        assert accuracy >= 0.75, f"the tiny {name} reached only {accuracy:.2f} dev accuracy: the export tests need a trained model"
    return bundles
