"""Students under several seeds: `edgekd distill --seeds N` and a recipe's `seeds:` write every run, their mean and
standard deviation; `edgekd run` distils (and caches) each seed; `--seeds 0` is refused before anything trains."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import yaml

from edgekd import testing
from edgekd.bundle import Bundle
from edgekd.cli import main
from edgekd.config import load_recipe
from edgekd.pipeline import plan


def _recipe(tmp_path: Path, encoder: Path, data: Path, **top: object) -> Path:
    raw = testing.tiny_recipe(data, encoder, tmp_path / "run", train={"epochs": 1})
    students = testing.tiny_students({"max_steps": 6})
    raw["students"] = {"bilstm": students["bilstm"]}
    raw.update(top)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_distill_seeds_writes_every_run_and_their_mean_and_sd(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                             tiny_encoder: Path, single_task: Path) -> None:
    path = _recipe(tmp_path, tiny_encoder, single_task)
    assert main(["teacher", str(path)]) == 0
    capsys.readouterr()
    assert main(["distill", str(path), "--seeds", "0"]) == 2
    err = capsys.readouterr().err
    assert "--seeds 0: distil each student under at least 1 seed" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "bilstm").exists()

    assert main(["distill", str(path), "--seeds", "3"]) == 0
    out = capsys.readouterr().out
    run = tmp_path / "run"
    bundles = [Bundle.open(run / name) for name in ("bilstm", "bilstm-seed1", "bilstm-seed2")]
    assert [b.manifest.produced_by.seed for b in bundles] == [0, 1, 2]
    summary = json.loads((run / "bilstm.seeds.json").read_text())
    accuracies = [b.manifest.metrics.dev["accuracy"] for b in bundles]
    assert summary["seeds"] == [0, 1, 2] and [r["dev"]["accuracy"] for r in summary["runs"]] == accuracies
    assert summary["dev"]["mean"]["accuracy"] == pytest.approx(statistics.fmean(accuracies), abs=1e-6)
    assert summary["dev"]["sd"]["accuracy"] == pytest.approx(statistics.stdev(accuracies), abs=1e-6)
    assert "student bilstm, 3 seeds: dev accuracy" in out and "(3 seeds)" in out
    weights = {b.file("model.safetensors").read_bytes() for b in bundles}
    assert len(weights) == 3, "each seed trains its own student"

    assert main(["inspect", "--table", str(run / "bilstm")]) == 0
    table = capsys.readouterr().out
    mean, sd = 100 * summary["dev"]["mean"]["accuracy"], 100 * summary["dev"]["sd"]["accuracy"]
    assert "dev accuracy over seeds" in table and f"{mean:.2f} ± {sd:.2f} (3 seeds)" in table


def test_a_recipes_seeds_are_steps_of_run_each_cached(tmp_path: Path, tiny_encoder: Path, single_task: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = _recipe(tmp_path, tiny_encoder, single_task, seeds=2)
    steps = [(s.name, s.stage, s.seed) for s in plan(load_recipe(path))]
    assert steps == [("teacher", "teacher", 0), ("bilstm", "distill", 0), ("bilstm-seed1", "distill", 1)]
    assert main(["run", str(path)]) == 0
    assert json.loads((tmp_path / "run" / "bilstm.seeds.json").read_text())["seeds"] == [0, 1]
    capsys.readouterr()
    assert main(["run", str(path)]) == 0
    out = capsys.readouterr().out
    assert sum(line.startswith("[") and "cached" in line for line in out.splitlines()) == 3, out
    (tmp_path / "run" / "bilstm.seeds.json").unlink()
    assert main(["run", str(path)]) == 0, "the summary is written again from the cached runs"
    assert (tmp_path / "run" / "bilstm.seeds.json").is_file()


def test_a_model_trained_before_selection_splits_is_not_taken_as_cached(tmp_path: Path, tiny_encoder: Path, single_task: Path) -> None:
    from types import SimpleNamespace

    from edgekd.pipeline import lineage, wanted
    from edgekd.records import Metrics

    path = _recipe(tmp_path, tiny_encoder, single_task)
    recipe = load_recipe(path)
    assert main(["teacher", str(path)]) == 0
    step = plan(recipe)[0]
    bundle = Bundle.open(tmp_path / "run" / "teacher")
    assert lineage(bundle, step) == wanted(recipe, step, None)
    # The same manifest without the `splits` record, as a teacher trained before selection splits wrote it.
    old_metrics = Metrics.model_validate({k: v for k, v in bundle.manifest.metrics.model_dump().items() if k != "splits"})
    old = SimpleNamespace(manifest=bundle.manifest.model_copy(update={"metrics": old_metrics}))
    assert lineage(old, step) != wanted(recipe, step, None)  # type: ignore[arg-type]
