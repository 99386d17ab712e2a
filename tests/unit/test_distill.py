"""The distill stage on tiny models: TinyBERT and BiLSTM, single and pair tasks, resume, init modes, errors."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from edgekd import testing
from edgekd.bundle import Bundle
from edgekd.config import Recipe, validate_recipe
from edgekd.distill.distill import distill
from edgekd.distill.loop import Checkpoint
from edgekd.distill.teacher import teacher
from edgekd.errors import ConfigError, DataError


def make_recipe(base: dict[str, Any], **students: Any) -> Recipe:
    raw = copy.deepcopy(base)
    for name, change in students.items():
        raw["students"][name] = change
    return validate_recipe(raw)


@pytest.fixture(scope="module", params=["single", "pair"])
def taught(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_encoder: Path) -> dict[str, Any]:
    """A fine-tuned tiny teacher and the recipe mapping that made it, with the tiny students added."""
    kind = request.param
    root = tmp_path_factory.mktemp(f"distill-{kind}")
    data = testing.write_fixture_task(root / "data", kind)
    raw = testing.tiny_recipe(data, tiny_encoder, root / "run", kind)
    raw["students"] = testing.tiny_students()
    teacher(validate_recipe(raw))
    return raw


def losses(bundle: Bundle, stage: int) -> list[float]:
    import csv

    with open(bundle.path / f"training_curves-stage{stage}.csv") as handle:
        return [float(row["loss"]) for row in csv.DictReader(handle)]


def test_tinybert_two_stage(taught: dict[str, Any], tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    recipe = validate_recipe(taught)
    bundle = distill(recipe, "tinybert", tmp_path / "tinybert")
    m = bundle.manifest
    assert m.kind == "student" and m.format == "torch" and m.parent and m.parent.sha256 == Bundle.open(recipe.out / "teacher").sha256
    step1, step2 = losses(bundle, 1), losses(bundle, 2)
    assert np.mean(step1[-3:]) < 0.5 * np.mean(step1[:3]), "intermediate-layer loss falls"
    assert np.mean(step2[-3:]) < np.mean(step2[:3]), "prediction-layer loss falls"
    assert [s["kind"] for s in m.metrics.stages] == ["intermediate", "prediction"]
    assert m.architecture.layers == 1 and m.architecture.layer_map == [2]
    assert 0 < m.metrics.parameters < m.metrics.teacher_parameters
    assert 0 <= m.metrics.agreement_with_teacher <= 1 and m.metrics.extra("accuracy_retained") is not None
    assert (bundle.path / "training_curves-stage2.png").stat().st_size > 1000

    model = AutoModelForSequenceClassification.from_pretrained(bundle.path).eval()
    golden = np.load(bundle.file("golden.npz"))
    with torch.no_grad():
        logits = model(**{k: torch.from_numpy(golden[k]) for k in ("input_ids", "attention_mask", "token_type_ids")}).logits
    np.testing.assert_allclose(logits.numpy(), golden["logits"], atol=1e-5)


def test_bilstm_learns_from_cached_logits(taught: dict[str, Any], tmp_path: Path) -> None:
    from edgekd.modeling import load_bilstm
    from edgekd.runtime.word_tokenizer import WordTokenizer

    recipe = validate_recipe(taught)
    bundle = distill(recipe, "bilstm", tmp_path / "bilstm")
    m = bundle.manifest
    history = losses(bundle, 1)
    assert np.mean(history[-3:]) < 0.5 * np.mean(history[:3])
    assert m.metrics.agreement_with_teacher >= 0.8, m.metrics
    assert m.tokenizer.type == "word" and m.architecture.pair == (recipe.data.kind == "pair")

    model = load_bilstm(bundle.path)
    tokenizer = WordTokenizer.load(bundle.tokenizer_dir)
    golden = np.load(bundle.file("golden.npz"))
    text = str(golden["texts"][0][0])
    assert tokenizer.encode(text) == [int(i) for i in golden["input_ids"][0][: golden["lengths"][0]]]
    names = [k for k in ("input_ids", "lengths", "input_ids_b", "lengths_b") if k in golden.files]
    with torch.no_grad():
        logits = model(**{k: torch.from_numpy(golden[k]) for k in names})
    np.testing.assert_allclose(logits.numpy(), golden["logits"], atol=1e-5)


def test_golden_logits_come_from_the_saved_model_on_cpu(taught: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not from the dev evaluation on the training device: on CUDA its logits differ (cuDNN's LSTM runs TF32: 3e-4 on an
    H100), while every later stage checks itself against golden.npz on CPU. A shifted evaluation stands in for CUDA."""
    import importlib

    from edgekd.modeling import load_bilstm

    stage = importlib.import_module("edgekd.distill.distill")
    evaluated = stage.student_logits
    monkeypatch.setattr(stage, "student_logits", lambda ctx, encoded: evaluated(ctx, encoded) + 1e-3)
    bundle = distill(validate_recipe(taught), "bilstm", tmp_path / "bilstm")
    golden = np.load(bundle.file("golden.npz"))
    names = [k for k in ("input_ids", "lengths", "input_ids_b", "lengths_b") if k in golden.files]
    with torch.no_grad():
        logits = load_bilstm(bundle.path)(**{k: torch.from_numpy(golden[k]) for k in names})
    np.testing.assert_allclose(logits.numpy(), golden["logits"], atol=1e-5)


class Crash(Exception):
    pass


def test_resume_equals_an_uninterrupted_run(taught: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = validate_recipe(taught)
    straight = distill(recipe, "tinybert", tmp_path / "a")
    real_save = Checkpoint.save
    calls = {"n": 0}

    def save_then_crash(self: Checkpoint, *args: Any, **kwargs: Any) -> None:
        real_save(self, *args, **kwargs)
        if "stage1" in self.directory.name:  # the second stage, after its first checkpoint
            calls["n"] += 1
            if calls["n"] == 1:
                raise Crash

    with monkeypatch.context() as patch:
        patch.setattr(Checkpoint, "save", save_then_crash)
        with pytest.raises(Crash):
            distill(recipe, "tinybert", tmp_path / "b")
    assert not (tmp_path / "b").exists()
    resumed = distill(recipe, "tinybert", tmp_path / "b", resume=True)
    a, b = load_file(straight.file("model.safetensors")), load_file(resumed.file("model.safetensors"))
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-5, rtol=1e-4)
    assert not (tmp_path / ".b.work").exists()


def test_init_from_teacher_copies_the_mapped_layers(taught: dict[str, Any], tmp_path: Path) -> None:
    student = {"type": "tinybert", "layers": 1, "hidden": 32, "heads": 2, "intermediate": 64, "init": "teacher", "layer_map": "top"}
    steps = {"max_steps": 1, "learning_rate": 1e-9, "warmup_ratio": 0.0}
    recipe = make_recipe(taught, copy={"student": student, "stages": [{"kind": "prediction", "train": steps}]})
    bundle = distill(recipe, "copy", tmp_path / "copy")
    student_weights = load_file(bundle.file("model.safetensors"))
    teacher_weights = load_file(recipe.out / "teacher" / "model.safetensors")
    torch.testing.assert_close(student_weights["bert.encoder.layer.0.output.dense.weight"], teacher_weights["bert.encoder.layer.1.output.dense.weight"], atol=1e-6, rtol=0)
    torch.testing.assert_close(student_weights["bert.embeddings.word_embeddings.weight"], teacher_weights["bert.embeddings.word_embeddings.weight"], atol=1e-6, rtol=0)


def test_init_from_teacher_needs_matching_widths(taught: dict[str, Any], tmp_path: Path) -> None:
    student = {"type": "tinybert", "layers": 1, "hidden": 16, "heads": 2, "intermediate": 32, "init": "teacher"}
    recipe = make_recipe(taught, bad={"student": student, "stages": [{"kind": "prediction"}]})
    with pytest.raises(ConfigError, match=r"widths must match the teacher's \(hidden_size 32, intermediate_size 64"):
        distill(recipe, "bad", tmp_path / "bad")


def test_init_from_a_checkpoint_directory(taught: dict[str, Any], tmp_path: Path, tiny_classifier: Path) -> None:
    student = {"type": "tinybert", "init": str(tiny_classifier)}
    steps = {"max_steps": 2}
    recipe = make_recipe(taught, ckpt={"student": student, "stages": [{"kind": "prediction", "train": steps}]})
    bundle = distill(recipe, "ckpt", tmp_path / "ckpt")
    assert bundle.manifest.architecture.layers == 2 and bundle.manifest.architecture.hidden == 32


def test_general_distillation_on_a_text_file(taught: dict[str, Any], tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(r.get("sentence", r.get("sentence1")) for r in testing.fixture_rows(64, seed=9)) + "\n")
    student = testing.tiny_students()["tinybert"]["student"]
    stages = [{"kind": "general", "corpus": str(corpus), "train": {"epochs": 1, "batch_size": 16}}, {"kind": "prediction", "train": {"max_steps": 2}}]
    bundle = distill(make_recipe(taught, general={"student": student, "stages": stages}), "general", tmp_path / "g")
    assert bundle.manifest.metrics.stages[0]["examples"] == 64


def test_errors(taught: dict[str, Any], tmp_path: Path) -> None:
    recipe = validate_recipe(taught)
    with pytest.raises(ConfigError, match="has no student 'nope'; its students: tinybert, bilstm"):
        distill(recipe, "nope")
    heads = {"type": "tinybert", "layers": 1, "hidden": 16, "heads": 4, "intermediate": 32}
    with pytest.raises(ConfigError, match="the student has 4 heads, the teacher 2"):
        distill(make_recipe(taught, h={"student": heads, "stages": [{"kind": "intermediate"}]}), "h", tmp_path / "h")
    missing = {"student": testing.tiny_students()["tinybert"]["student"], "stages": [{"kind": "general", "corpus": "/no/such.txt"}]}
    with pytest.raises(DataError, match="not `train`, `tweets`, or an existing text file"):
        distill(make_recipe(taught, m=missing), "m", tmp_path / "m")
    with pytest.raises(Exception, match="no such directory"):
        distill(make_recipe(taught, t={**testing.tiny_students()["bilstm"], "teacher": str(tmp_path / "none")}), "t")


def test_bilstm_refuses_intermediate_stages() -> None:
    raw = {"name": "r", "data": {"task": "sst2"}, "students": {"b": {"student": {"type": "bilstm"}, "stages": [{"kind": "intermediate"}]}}}
    with pytest.raises(ConfigError, match="a bilstm student has no attention or hidden layers"):
        validate_recipe(raw)


def test_every_registered_student_is_tested() -> None:
    from edgekd.distill.students import registry

    tested = {"tinybert", "bilstm"}  # the students exercised above, single and pair
    assert set(registry()) == tested, "a new student needs its tests here"
    assert set(testing.tiny_students()) == tested


def test_changing_a_later_stage_keeps_the_finished_earlier_one(
    taught: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import json
    import logging

    recipe = validate_recipe(taught)

    def crash_in_stage_two(self: Checkpoint, *args: Any, **kwargs: Any) -> None:
        if "stage1" in self.directory.name:
            raise Crash

    with monkeypatch.context() as patch:
        patch.setattr(Checkpoint, "save", crash_in_stage_two)
        with pytest.raises(Crash):
            distill(recipe, "tinybert", tmp_path / "s")
    first = json.loads((tmp_path / ".s.work" / "stage0.json").read_text())["summary"]
    changed = copy.deepcopy(taught)
    changed["students"]["tinybert"]["stages"][1]["train"]["learning_rate"] = 1e-3
    with caplog.at_level(logging.INFO, logger="edgekd.distill.distill"):
        bundle = distill(validate_recipe(changed), "tinybert", tmp_path / "s", resume=True)
    assert "stage 0 (intermediate) finished before; its weights are loaded" in caplog.text
    assert bundle.manifest.metrics.stages[0] == {k: v for k, v in first.items() if k != "history"}
    assert bundle.manifest.produced_by.config["students"]["tinybert"]["stages"][1]["train"]["learning_rate"] == 1e-3


def test_bilstm_glove_embeddings_and_extra_glove_words(taught: dict[str, Any], tmp_path: Path) -> None:
    from edgekd.data import load_task_data
    from edgekd.distill.glove import load_glove
    from edgekd.distill.students.bilstm import BiLSTMStudent

    recipe = validate_recipe(taught)
    data = load_task_data(recipe.data)
    teacher_bundle = Bundle.open(recipe.out / "teacher")
    plain = BiLSTMStudent(_glove_cfg(0), teacher_bundle, data, 0)
    extended = BiLSTMStudent(_glove_cfg(50), teacher_bundle, data, 0)
    index, vectors = load_glove()
    added = extended.tokenizer.vocab[len(plain.tokenizer) :]
    assert 0 < len(added) <= 50 and all(word in index for word in added)
    row = extended.tokenizer.index[added[0]]
    np.testing.assert_allclose(extended.module.embedding.weight[row].detach().numpy(), vectors[index[added[0]]])
    assert plain.glove_coverage is not None and plain.glove_coverage > 0.9  # the fixture's words are all English


def _glove_cfg(words: int) -> Any:
    from edgekd.config import BiLSTMConfig

    return BiLSTMConfig(embeddings="glove", hidden=8, fc=8, glove_words=words)


def test_students_train_on_augmented_text_labeled_by_the_teacher(taught: dict[str, Any], tmp_path: Path) -> None:
    raw = copy.deepcopy(taught)
    raw["augment"] = {"tang": {"method": "tang", "n_iter": 2}, "glove": {"method": "tinybert", "n_a": 2, "k": 3}}
    raw["students"]["bilstm"]["augment"] = "tang"
    raw["students"]["tinybert"]["augment"] = "glove"
    recipe = validate_recipe(raw)
    for name, method in (("bilstm", "tang"), ("tinybert", "tinybert")):
        bundle = distill(recipe, name, tmp_path / name)
        m = bundle.manifest.metrics
        facts = m.augmentation
        assert facts["method"] == method and facts["source_examples"] == 230 and 230 < facts["augmented_examples"] <= 460
        labeling = facts["teacher_labeling"]
        assert labeling["examples"] == 230 + facts["augmented_examples"] and labeling["cached"] is False
        assert labeling["examples_per_second"] > 0
        assert m.stages[-1]["examples"] == 230 + facts["augmented_examples"]
        # (the tiny pair teacher of this fixture stays near chance: the student is held to what the teacher knows)
        assert m.dev["accuracy"] >= min(0.75, m.teacher_dev["accuracy"] - 0.1), m.dev
    # the augmented text and its teacher logits are cached: a second student with the same augmentation reuses both
    again = distill(recipe, "bilstm", tmp_path / "bilstm-again")
    reused = again.manifest.metrics.augmentation
    assert reused["cached"] is True and reused["teacher_labeling"]["cached"] is True
    assert reused["teacher_labeling"]["examples_per_second"] is None  # reading a cache is no labeling rate


def test_augment_settings_are_checked() -> None:
    base = {"name": "r", "data": {"task": "sst2", "path": "d"}}
    with pytest.raises(ConfigError, match="n_a, p_t do not apply to method tang"):
        validate_recipe({**base, "augment": {"a": {"method": "tang", "p_t": 0.3, "n_a": 4}}})
    with pytest.raises(ConfigError, match="p_mask \\+ p_pos = 1.2"):
        validate_recipe({**base, "augment": {"a": {"method": "tang", "p_mask": 0.6, "p_pos": 0.6}}})
    students = {"s": {"student": {"type": "bilstm"}, "augment": "tangg", "stages": [{"kind": "prediction"}]}}
    with pytest.raises(ConfigError, match="students.s.augment: 'tangg' is not in the recipe's `augment:` section \\(tang\\)"):
        validate_recipe({**base, "augment": {"tang": {"method": "tang"}}, "students": students})
