"""The real thing on a budget: the packaged MiniLM fine-tuned on an SST-2 subset from ../shared/data, then students."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekd.bundle import Bundle
from edgekd.config import Recipe, load_recipe
from edgekd.distill.distill import distill
from edgekd.distill.teacher import teacher

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sst2_recipe(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Recipe:
    out = tmp_path_factory.mktemp("sst2")
    return load_recipe(
        "sst2-bilstm",
        [f"data.path={shared_data / 'sst2'}", "data.max_train_examples=3000", f"output_dir={out}", f"cache_dir={out / 'cache'}",
         "students.bilstm.stages.0.train.epochs=4", "students.bilstm.stages.0.train.eval_every=60"],
    )


@pytest.fixture(scope="module")
def sst2_teacher(sst2_recipe: Recipe) -> Bundle:
    return teacher(sst2_recipe)


def test_minilm_on_an_sst2_subset_is_well_above_chance(sst2_teacher: Bundle) -> None:
    dev = sst2_teacher.manifest.metrics.dev
    assert dev["examples"] == 872
    assert dev["accuracy"] > 0.78, dev


def test_bilstm_distilled_from_the_real_teacher(sst2_recipe: Recipe, sst2_teacher: Bundle) -> None:
    bundle = distill(sst2_recipe, "bilstm")
    metrics = bundle.manifest.metrics
    assert metrics.dev["accuracy"] > 0.65, metrics.dev
    assert metrics.agreement_with_teacher > 0.65
    assert bundle.manifest.architecture.glove_coverage > 0.9  # SST-2's words are almost all in GloVe 6B
