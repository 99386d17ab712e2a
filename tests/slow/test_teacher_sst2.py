"""The real teacher: the packaged MiniLM fine-tuned on a subset of SST-2 from ../shared/data."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekd.config import load_recipe
from edgekd.distill.teacher import teacher

pytestmark = pytest.mark.slow


def test_minilm_on_an_sst2_subset_is_well_above_chance(shared_data: Path, tmp_path: Path) -> None:
    recipe = load_recipe(
        "sst2",
        [
            f"data.path={shared_data / 'sst2'}",
            "data.max_train_examples=3000",
            f"output_dir={tmp_path}",
            "teacher.cache_logits=false",
        ],
    )
    bundle = teacher(recipe)
    dev = bundle.manifest.metrics["dev"]
    assert dev["examples"] == 872
    assert dev["accuracy"] > 0.78, dev
