"""Every Hugging Face encoder family end to end, one cell per family x (single, pair): a tiny random classifier of the
family imported as the teacher, a TinyBERT of the teacher's family distilled from it (intermediate + prediction),
its ONNX and TFLite exports checked against it. `test_every_family_has_its_cells` fails when a family of
`edgekd.hf_families` is missing here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekd import testing
from edgekd.bundle import Bundle
from edgekd.config import ExportConfig, validate_recipe
from edgekd.hf_families import HF_FAMILIES
from edgekd.testing_families import FAMILY_TOKENIZERS, missing_families, tiny_family

# The cells: every family, single sentences and pairs. A new family in edgekd.hf_families gets its cells from here.
FAMILIES = list(HF_FAMILIES)
CELLS = [(family, kind) for family in FAMILIES for kind in ("single", "pair")]


def family_students(model_type: str, steps: int = 2) -> dict[str, object]:
    """A 1-layer TinyBERT of the teacher's family: intermediate (attention too where the family has QK^T scores)
    then prediction, a few steps each."""
    train = {"max_steps": steps, "batch_size": 16, "eval_batch_size": 64, "learning_rate": 5e-3, "checkpoint_every": 50}
    losses = {} if HF_FAMILIES[model_type].no_attention_loss is None else {"losses": ["embedding", "hidden"]}
    return {"tinybert": {
        "student": {"type": "tinybert", "layers": 1, "hidden": 16, "heads": 2, "intermediate": 32},
        "stages": [{"kind": "intermediate", "train": train, **losses}, {"kind": "prediction", "train": train}],
    }}


def family_recipe(root: Path, model_type: str, kind: str) -> dict[str, object]:
    """A recipe importing the family's tiny classifier as the teacher, on a small fixture task."""
    model = tiny_family(model_type, root / "model")
    data = testing.write_fixture_task(root / "data", kind, n_train=64, n_dev=16)
    raw = testing.tiny_recipe(data, model, root / "run", kind, teacher={"mode": "import"})
    raw["students"] = family_students(model_type)
    return raw


@pytest.fixture(scope="module", params=CELLS, ids=[f"{family}-{kind}" for family, kind in CELLS])
def cell(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Bundle]:
    """{"teacher", "tinybert"} bundles of one family and task kind."""
    from edgekd.distill.distill import distill
    from edgekd.distill.teacher import teacher

    model_type, kind = request.param
    recipe = validate_recipe(family_recipe(tmp_path_factory.mktemp(f"{model_type}-{kind}"), model_type, kind))
    return {"teacher": teacher(recipe), "tinybert": distill(recipe, "tinybert")}


def _inputs(model_type: str, pair: bool, exported: bool) -> list[str]:
    """The inputs of a family's model: a torch bundle lists what its forward takes; an export of single sentences
    leaves out segment ids (all 0). The tiny DeBERTa-v3 has no segment table (type_vocab_size 0): none at all."""
    segments = HF_FAMILIES[model_type].token_type_ids and model_type != "deberta-v2" and (pair or not exported)
    return ["input_ids", "attention_mask"] + (["token_type_ids"] if segments else [])


def test_every_family_has_its_cells() -> None:
    assert sorted(FAMILIES) == sorted(HF_FAMILIES) and missing_families() == []
    assert {family for family, _ in CELLS} == set(HF_FAMILIES) == set(FAMILY_TOKENIZERS)


def test_the_teacher_bundle_records_its_family(cell: dict[str, Bundle]) -> None:
    from transformers import AutoTokenizer

    teacher = cell["teacher"]
    m = teacher.manifest
    model_type = m.architecture.family
    assert model_type in HF_FAMILIES and m.architecture.shape("class").endswith("ForSequenceClassification")
    assert [m.architecture.shape(k) for k in ("layers", "hidden", "heads", "intermediate")] == [2, 32, 2, 64]
    assert [t.name for t in m.inputs] == _inputs(model_type, m.task.kind == "pair", exported=False)
    tokenizer = AutoTokenizer.from_pretrained(teacher.tokenizer_dir)
    assert m.tokenizer.type == FAMILY_TOKENIZERS[model_type].kind and m.tokenizer.pad_id == tokenizer.pad_token_id
    golden, _ = teacher.read_golden()
    # The golden inputs are padded with the family's pad id and hold only the inputs the model takes.
    assert set(_inputs(model_type, True, exported=False)) >= {k for k in golden if k not in ("logits", "texts", "labels")}
    padded = golden["attention_mask"] == 0
    assert padded.any() and np.all(golden["input_ids"][padded] == tokenizer.pad_token_id)


def test_the_tinybert_is_built_in_the_teachers_family(cell: dict[str, Bundle]) -> None:
    teacher, student = cell["teacher"], cell["tinybert"]
    model_type = teacher.manifest.architecture.family
    a = student.manifest.architecture
    assert (a.family, a.shape("student")) == (model_type, "tinybert")
    assert [a.shape(k) for k in ("layers", "hidden", "heads", "intermediate")] == [1, 16, 2, 32]
    assert [t.name for t in student.manifest.inputs] == [t.name for t in teacher.manifest.inputs]
    assert student.manifest.tokenizer == teacher.manifest.tokenizer
    intermediate = student.manifest.metrics.stages[0]
    expected = ["embedding", "hidden"] if HF_FAMILIES[model_type].no_attention_loss else ["embedding", "attention", "hidden"]
    assert intermediate["kind"] == "intermediate" and intermediate["losses"] == expected


@pytest.mark.parametrize("model", ["teacher", "tinybert"])
def test_onnx_export_matches_its_parent(cell: dict[str, Bundle], tmp_path: Path, model: str) -> None:
    import onnx
    from edgekd.export.stage import export

    parent = cell[model]
    bundle = export(parent.path, ExportConfig(format="onnx", parity_samples="all"), tmp_path / "onnx")
    m = bundle.manifest
    names = _inputs(parent.manifest.architecture.family, m.task.kind == "pair", exported=True)
    assert [t.name for t in m.inputs] == names
    assert [i.name for i in onnx.load(str(bundle.file("model.onnx"))).graph.input] == names
    rows = m.metrics.parity["outputs"]
    assert {row["name"] for row in rows} == {"golden", "edge cases", "dev"}
    assert all(row["max_abs_diff"] <= 1e-4 and row["agreement"] == 1.0 for row in rows), rows


def test_tflite_export_matches_its_parent(cell: dict[str, Bundle], tmp_path: Path) -> None:
    from edgekd.export.stage import export

    parent = cell["tinybert"]
    # One bucket: a conversion per bucket is most of the cost (litert-torch traces each one).
    bundle = export(parent.path, ExportConfig(format="tflite", buckets=[16]), tmp_path / "tflite")
    m = bundle.manifest
    assert [t.name for t in m.inputs] == _inputs(parent.manifest.architecture.family, m.task.kind == "pair", exported=True)
    rows = m.metrics.parity["outputs"]
    assert rows and all(row["max_abs_diff"] <= 1e-4 and row["agreement"] == 1.0 for row in rows), rows
