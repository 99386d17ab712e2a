"""Shared fixtures: tiny models and fixture task files built in code (nothing is downloaded)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgekd import testing
from edgekd.bundle import Bundle
from edgekd.config import validate_recipe

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Tests never reach the network: fail fast instead of waiting on the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models run fastest on one thread; several threads on 2 cores only spin against each other.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEKD_CACHE_DIR", str(tmp_path / "edgekd-cache"))


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT encoder without a head (the shape of the packaged MiniLM), with its tokenizer."""
    return testing.save_tiny_bert(tmp_path_factory.mktemp("tiny-encoder"))


@pytest.fixture(scope="session")
def tiny_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT sequence classifier (2 labels), as an already fine-tuned teacher would be saved."""
    return testing.save_tiny_bert(tmp_path_factory.mktemp("tiny-classifier"), classifier=True)


@pytest.fixture(scope="session")
def single_task(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return testing.write_fixture_task(tmp_path_factory.mktemp("single-task"), "single")


@pytest.fixture(scope="session")
def pair_task(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return testing.write_fixture_task(tmp_path_factory.mktemp("pair-task"), "pair")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "sst2" / "train.tsv").is_file():
        pytest.skip(f"{SHARED_DATA} is absent: the GLUE files are not beside this checkout")
    return SHARED_DATA


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
        accuracy = bundle.manifest.metrics.dev["accuracy"]
        assert accuracy >= 0.75, f"the tiny {name} reached only {accuracy:.2f} dev accuracy: the export tests need a trained model"
    return bundles


@pytest.fixture(scope="session")
def ssh_server(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - yields sshd.Server
    """A throw-away OpenSSH server on a loopback port with its own host key and a client key (tests/sshd.py)."""
    import sshd

    reason = sshd.unavailable()
    if reason:
        pytest.skip(reason)
    with sshd.serve(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture(scope="session")
def untrained_onnx(tiny_classifier: Path, single_task: Path, pair_task: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Bundle]:
    """ONNX bundles `tinybert-single`, `bilstm-single`, `tinybert-pair`, `bilstm-pair`: the tiny classifier imported
    as a teacher, and a BiLSTM distilled from it for one step. For tests where how well a model learned does not
    matter (fuzzing, threads, memory): seconds, where `tiny_bundles` trains every model until it predicts the task."""
    from edgekd.config import ExportConfig
    from edgekd.distill.distill import distill
    from edgekd.distill.teacher import teacher
    from edgekd.export.stage import export

    root = tmp_path_factory.mktemp("untrained-onnx")
    bundles = {}
    for kind, data in (("single", single_task), ("pair", pair_task)):
        raw = testing.tiny_recipe(data, tiny_classifier, root / kind, kind, teacher={"mode": "import"})
        raw["students"] = {"bilstm": testing.tiny_students({"max_steps": 1})["bilstm"]}
        recipe = validate_recipe(raw)
        parents = {"tinybert": teacher(recipe), "bilstm": distill(recipe, "bilstm")}
        for name, parent in parents.items():
            bundles[f"{name}-{kind}"] = export(parent.path, ExportConfig(format="onnx"), root / f"{name}-{kind}-onnx")
    return bundles
