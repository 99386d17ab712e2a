"""Data-parallel distillation: two CPU processes (gloo) under torchrun share one model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from edgekd import testing
from edgekd.bundle import Bundle
from edgekd.config import validate_recipe
from edgekd.distill.teacher import teacher


def test_two_processes_train_one_student(tmp_path: Path, tiny_encoder: Path, single_task: Path) -> None:
    raw = testing.tiny_recipe(single_task, tiny_encoder, tmp_path / "run")
    raw["students"] = testing.tiny_students()
    teacher(validate_recipe(raw))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "edgekd.cli", "distill", str(recipe), "--student", "bilstm",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    # Each process trained on its own half of every step's batches: equal weights prove the gradients were averaged.
    assert "2 processes ended with identical weights" in result.stderr
    assert result.stdout.count("student bilstm:") == 1, "only the main process reports"
    bundle = Bundle.open(tmp_path / "run" / "bilstm")
    stage = bundle.manifest.metrics.stages[0]
    assert stage["processes"] == 2 and stage["steps"] == 28  # 15 batches of the 230 train examples / 2 processes * 4 epochs
