"""The teacher stage on tiny models: fine-tune, import, resume, the bundle transformers loads, the logits cache."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from edgekd import testing
from edgekd.bundle import Bundle
from edgekd.config import Recipe, validate_recipe
from edgekd.distill.logits_cache import LogitsCache, cache_key
from edgekd.distill.loop import Checkpoint
from edgekd.distill.teacher import teacher
from edgekd.errors import ConfigError

TRAIN_KEYS = {"epochs", "learning_rate"}


def recipe(data: Path, model: Path, out: Path, kind: str = "single", **changes: Any) -> Recipe:
    train = {k: v for k, v in changes.items() if k in TRAIN_KEYS}
    teacher = {k: v for k, v in changes.items() if k not in TRAIN_KEYS}
    return validate_recipe(testing.tiny_recipe(data, model, out, kind, teacher=teacher, train=train))


def test_finetune_learns_and_writes_a_bundle_transformers_loads(tiny_encoder: Path, single_task: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    r = recipe(single_task, tiny_encoder, tmp_path / "run")
    bundle = teacher(r)
    metrics = bundle.manifest.metrics
    assert np.mean(metrics.last_losses) < 0.5 * np.mean(metrics.first_losses), metrics
    assert metrics.dev["accuracy"] >= 0.9 and metrics.dev["examples"] == 48
    assert metrics.steps == 45  # 230 examples (256 less the selection split's 26) / 16 per batch * 3 epochs
    assert metrics.selection["examples"] == 26 and metrics.splits["selection"]["used_for_selection"] is True
    assert metrics.splits["dev"] == {"examples": 48, "used_for_selection": False}
    assert metrics.best["split"] == "selection"

    reopened = Bundle.open(bundle.path)
    assert reopened.manifest.kind == "teacher" and reopened.manifest.format == "torch"
    assert reopened.manifest.produced_by.config["teacher"]["train"]["learning_rate"] == 5e-3
    model = AutoModelForSequenceClassification.from_pretrained(bundle.path).eval()
    assert model.config.id2label == {0: "negative", 1: "positive"}
    tokenizer = AutoTokenizer.from_pretrained(reopened.tokenizer_dir)
    golden = np.load(bundle.file("golden.npz"))
    assert tokenizer(str(golden["texts"][0][0]))["input_ids"] == [i for i in golden["input_ids"][0] if i != 0]
    with torch.no_grad():
        logits = model(
            input_ids=torch.from_numpy(golden["input_ids"]),
            attention_mask=torch.from_numpy(golden["attention_mask"]),
            token_type_ids=torch.from_numpy(golden["token_type_ids"]),
        ).logits.numpy()
    np.testing.assert_allclose(logits, golden["logits"], atol=1e-5)
    assert len(set(golden["attention_mask"].sum(axis=1).tolist())) > 1, "golden inputs have varied lengths"


def test_logits_cache_holds_the_teachers_train_outputs(tiny_encoder: Path, single_task: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from edgekd.data import load_task_data

    from edgekd.batching import encode
    from edgekd.distill.loop import predict_logits

    r = recipe(single_task, tiny_encoder, tmp_path / "run", epochs=1)
    bundle = teacher(r)
    data = load_task_data(r.data)
    cached = LogitsCache(r.cache).get(cache_key(bundle.sha256, data.train.fingerprint, r.teacher.max_length))
    assert cached is not None and cached.shape == (230, 2) and isinstance(cached, np.memmap)
    model = AutoModelForSequenceClassification.from_pretrained(bundle.path)
    tokenizer = AutoTokenizer.from_pretrained(bundle.tokenizer_dir)
    expected = predict_logits(model, encode(tokenizer, data.train, 32), 7, torch.device("cpu"))
    np.testing.assert_allclose(cached, expected, atol=1e-5)


def test_pair_task(tiny_encoder: Path, pair_task: Path, tmp_path: Path) -> None:
    bundle = teacher(recipe(pair_task, tiny_encoder, tmp_path / "run", "pair", epochs=1, cache_logits=False))
    assert bundle.manifest.task.kind == "pair" and bundle.manifest.task.text_columns == ["sentence1", "sentence2"]
    golden = np.load(bundle.file("golden.npz"))
    assert golden["texts"].shape[1] == 2 and golden["token_type_ids"].max() == 1


def test_import_only_evaluates(tiny_classifier: Path, single_task: Path, tmp_path: Path) -> None:
    bundle = teacher(recipe(single_task, tiny_classifier, tmp_path / "run", mode="import", cache_logits=False))
    assert bundle.manifest.metrics.mode == "import" and bundle.manifest.metrics.extra("steps") is None
    source, written = load_file(tiny_classifier / "model.safetensors"), load_file(bundle.file("model.safetensors"))
    for name, tensor in source.items():
        torch.testing.assert_close(written[name], tensor)


def test_golden_logits_come_from_the_saved_model_on_cpu(tiny_classifier: Path, single_task: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Not from the dev evaluation on the training device (on CUDA they differ); a shifted evaluation stands in for it."""
    from transformers import AutoModelForSequenceClassification

    import edgekd.distill.teacher as stage

    evaluated = stage.predict_logits
    monkeypatch.setattr(stage, "predict_logits", lambda *args: evaluated(*args) + 1e-3)
    bundle = teacher(recipe(single_task, tiny_classifier, tmp_path / "run", mode="import", cache_logits=False))
    golden = np.load(bundle.file("golden.npz"))
    model = AutoModelForSequenceClassification.from_pretrained(bundle.path).eval()
    with torch.no_grad():
        logits = model(**{k: torch.from_numpy(golden[k]) for k in ("input_ids", "attention_mask", "token_type_ids")}).logits
    np.testing.assert_allclose(logits.numpy(), golden["logits"], atol=1e-5)


def test_import_refuses_an_encoder_without_a_head(tiny_encoder: Path, single_task: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"not a fine-tuned sequence classifier \(architectures: \['BertModel'\]\).*teacher.mode=finetune"):
        teacher(recipe(single_task, tiny_encoder, tmp_path / "run", mode="import"))


def test_import_refuses_a_label_count_mismatch(tmp_path: Path, single_task: Path) -> None:
    three = testing.save_tiny_bert(tmp_path / "three", classifier=True, num_labels=3)
    with pytest.raises(ConfigError, match="has 3 labels but task 'custom' has 2"):
        teacher(recipe(single_task, three, tmp_path / "run", mode="import"))


def test_missing_model_directory_is_a_config_error(single_task: Path, tmp_path: Path) -> None:
    (tmp_path / "empty-model").mkdir()
    with pytest.raises(ConfigError, match="the directory has no config.json"):
        teacher(recipe(single_task, tmp_path / "empty-model", tmp_path / "run"))


class _RunsCode:
    """Unpickling this runs a shell command: what a hostile pytorch_model.bin does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("mode", ["import", "finetune"])
def test_a_pickle_that_runs_code_is_refused_and_never_runs(tmp_path: Path, single_task: Path, mode: str) -> None:
    source = testing.save_tiny_bert(tmp_path / "evil", classifier=mode == "import")
    for weights in source.glob("*.safetensors"):
        weights.unlink()
    marker = tmp_path / "code-ran"
    torch.save({"bert.embeddings.word_embeddings.weight": _RunsCode(marker)}, source / "pytorch_model.bin")
    with pytest.raises(ConfigError, match="a pickle holding more than tensors.*weights_only=True"):
        teacher(recipe(single_task, source, tmp_path / "run", mode=mode))
    assert not marker.exists() and not (tmp_path / "run" / "teacher").exists()


def test_custom_code_in_a_teacher_source_is_not_run_without_the_flag(tmp_path: Path, single_task: Path) -> None:
    source = testing.save_tiny_bert(tmp_path / "custom", classifier=True)
    marker = tmp_path / "code-ran"
    config = json.loads((source / "config.json").read_text())
    config.update(model_type="custombert", auto_map={"AutoConfig": "custom.Config", "AutoModelForSequenceClassification": "custom.Model"})
    (source / "config.json").write_text(json.dumps(config))
    (source / "custom.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    with pytest.raises(ConfigError, match="ships its own Python code.*teacher.trust_remote_code=true"):
        teacher(recipe(single_task, source, tmp_path / "run", mode="import"))
    assert not marker.exists()


class Crash(Exception):
    pass


def crash_after_checkpoint(monkeypatch: pytest.MonkeyPatch, at_step: int) -> None:
    """Make training die right after the checkpoint of `at_step` is saved, as a killed process would."""
    real_save = Checkpoint.save

    def save_then_crash(self: Checkpoint, model: Any, optimizer: Any, scheduler: Any, step: int, extra: Any, best: Any = None) -> None:
        real_save(self, model, optimizer, scheduler, step, extra, best)
        if step == at_step:
            raise Crash

    monkeypatch.setattr(Checkpoint, "save", save_then_crash)


def test_resume_after_a_crash_gives_the_same_model(
    tiny_encoder: Path, single_task: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    straight = teacher(recipe(single_task, tiny_encoder, tmp_path / "a", cache_logits=False))
    r = recipe(single_task, tiny_encoder, tmp_path / "b", cache_logits=False)
    with monkeypatch.context() as patch:
        crash_after_checkpoint(patch, at_step=10)
        with pytest.raises(Crash):
            teacher(r)
    assert not (tmp_path / "b" / "teacher").exists(), "no bundle where a finished one is expected"
    assert (tmp_path / "b" / ".teacher.checkpoint" / "state.json").is_file()
    resumed = teacher(r, resume=True)
    assert resumed.manifest.metrics.first_losses == straight.manifest.metrics.first_losses
    assert resumed.manifest.metrics.last_losses == pytest.approx(straight.manifest.metrics.last_losses, abs=1e-4)
    a, b = load_file(straight.file("model.safetensors")), load_file(resumed.file("model.safetensors"))
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-5, rtol=1e-4)
    assert not (tmp_path / "b" / ".teacher.checkpoint").exists(), "the checkpoint is removed once the bundle is written"


def test_resume_refuses_a_checkpoint_of_another_config(
    tiny_encoder: Path, single_task: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        crash_after_checkpoint(patch, at_step=5)
        with pytest.raises(Crash):
            teacher(recipe(single_task, tiny_encoder, tmp_path / "run", cache_logits=False))
    with pytest.raises(ConfigError, match="made with a different config or data; drop --resume"):
        teacher(recipe(single_task, tiny_encoder, tmp_path / "run", learning_rate=1e-3, cache_logits=False), resume=True)
    # `edgekd run` resumes with "auto": a checkpoint of another config is dropped and training starts over
    other = recipe(single_task, tiny_encoder, tmp_path / "run", learning_rate=1e-3, cache_logits=False)
    fresh = teacher(other, resume="auto")
    straight = teacher(recipe(single_task, tiny_encoder, tmp_path / "straight", learning_rate=1e-3, cache_logits=False))
    assert fresh.manifest.metrics.first_losses == straight.manifest.metrics.first_losses


def test_logits_cache_fill_resumes(tmp_path: Path) -> None:
    cache = LogitsCache(tmp_path)
    batches = [np.arange(i, min(i + 3, 100)) for i in range(0, 100, 3)]
    seen: list[int] = []

    def compute(indices: np.ndarray) -> np.ndarray:
        seen.append(int(indices[0]))
        if len(seen) == 25:
            raise Crash
        return np.stack([indices, -indices], axis=1).astype(np.float32)

    with pytest.raises(Crash):
        cache.fill("k", (100, 2), batches, compute)
    assert cache.get("k") is None
    seen.clear()
    result = cache.fill("k", (100, 2), batches, compute)
    assert seen[0] == 60, "batches done before the last progress mark are not recomputed"
    np.testing.assert_array_equal(result[:, 0], np.arange(100))
    assert cache.fill("k", (100, 2), batches, lambda i: 1 / 0) is not None  # a finished key is never recomputed


def test_a_diverging_fine_tune_stops_and_writes_nothing(tiny_encoder: Path, single_task: Path, tmp_path: Path) -> None:
    r = recipe(single_task, tiny_encoder, tmp_path / "run", learning_rate=1e30)
    with pytest.raises(ConfigError, match=r"teacher fine-tune: the loss at step \d+ is (nan|inf) \(learning rate .*nothing was written"):
        teacher(r)
    written = [p.name for p in (tmp_path / "run").glob("*")] if (tmp_path / "run").exists() else []
    assert not [name for name in written if name == "teacher" or "partial" in name], written


def test_teacher_max_length_past_the_position_embeddings_is_refused_before_training(
    tiny_encoder: Path, single_task: Path, tmp_path: Path
) -> None:
    r = recipe(single_task, tiny_encoder, tmp_path / "run", max_length=1024)
    with pytest.raises(ConfigError, match=(r"^teacher.max_length 1024 is longer than the teacher's 128 position embeddings; "
                                           r"set teacher.max_length <= 128")):
        teacher(r)
    assert not (tmp_path / "run" / "teacher").exists()


def test_a_teacher_config_with_a_4e9_vocabulary_is_refused_before_allocation(single_task: Path, tmp_path: Path) -> None:
    source = testing.save_tiny_bert(tmp_path / "huge")
    config = json.loads((source / "config.json").read_text())
    (source / "config.json").write_text(json.dumps({**config, "vocab_size": 4_000_000_000}))
    with pytest.raises(ConfigError, match=r"its config.json: vocab_size is 4000000000; a model's sizes are whole numbers"):
        teacher(recipe(single_task, source, tmp_path / "run"))
