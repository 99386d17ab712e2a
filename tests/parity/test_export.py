"""Exports of tiny teachers and students (single sentences and pairs) against their parents."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edgekd.bundle import Bundle
from edgekd.cli import main
from edgekd.config import ExportConfig
from edgekd.errors import BundleError, ConfigError, ParityError, UnsupportedError
from edgekd import families as spec_module
from edgekd.export.stage import export

ONNX_CASES = [("teacher", False), ("teacher", True), ("tinybert", False), ("tinybert", True), ("bilstm", False)]


@pytest.mark.parametrize(("model", "fuse"), ONNX_CASES, ids=[f"{m}{'-fused' if f else ''}" for m, f in ONNX_CASES])
def test_onnx_export_matches_its_parent(tiny_bundles: dict[str, Bundle], tmp_path: Path, model: str, fuse: bool) -> None:
    import onnx

    parent = tiny_bundles[model]
    bundle = export(parent.path, ExportConfig(format="onnx", fuse=fuse), tmp_path / "out")
    m = bundle.manifest
    assert (m.format, m.kind, m.parent.sha256) == ("onnx", parent.manifest.kind, parent.sha256)
    parity = {row["name"]: row for row in m.metrics.parity["outputs"]}
    assert set(parity) == {"golden", "edge cases", "dev"}
    assert all(row["max_abs_diff"] <= 1e-4 and row["agreement"] == 1.0 for row in parity.values()), parity
    pair = parent.manifest.task.kind == "pair"
    names = [t.name for t in m.inputs]
    if model == "bilstm":
        assert names == ["input_ids", "lengths"] + (["input_ids_b", "lengths_b"] if pair else [])
    else:
        assert names == ["input_ids", "attention_mask"] + (["token_type_ids"] if pair else [])
    graph = onnx.load(str(bundle.file("model.onnx")))
    assert [i.name for i in graph.graph.input] == names and [o.name for o in graph.graph.output] == ["logits"]
    props = {p.key: p.value for p in graph.metadata_props}
    assert json.loads(props["edgekd.labels"]) == list(parent.manifest.task.labels)
    ops = {node.op_type for node in graph.graph.node}
    if model == "bilstm":
        assert sum(node.op_type == "LSTM" for node in graph.graph.node) == (1 if not pair else 2)
    if fuse:
        fusions = m.architecture.export["fusions"]
        assert fusions.get("Attention") == parent.manifest.architecture.layers and "Attention" in ops
    # The golden file holds the export's own inputs and outputs: a device checks itself against it.
    golden = np.load(bundle.file("golden.npz"))
    assert golden["logits"].shape == (len(golden["texts"]), len(parent.manifest.task.labels))
    assert np.abs(golden["logits"] - golden["parent_logits"]).max() < 1e-4
    assert Bundle.open(bundle.path).sha256 == bundle.sha256


TFLITE_CASES = [("tinybert", [8, 16]), ("bilstm", [4, 8])]


@pytest.mark.parametrize(("model", "buckets"), TFLITE_CASES, ids=[m for m, _ in TFLITE_CASES])
def test_tflite_export_matches_its_parent(tiny_bundles: dict[str, Bundle], tmp_path: Path, model: str, buckets: list[int]) -> None:
    from ai_edge_litert.interpreter import Interpreter

    parent = tiny_bundles[model]
    bundle = export(parent.path, ExportConfig(format="tflite", buckets=buckets), tmp_path / "out")
    m = bundle.manifest
    assert m.format == "tflite" and m.architecture.export["buckets"] == buckets
    # The tokenizer now truncates to the largest bucket, so the runtime never meets a longer input.
    assert m.tokenizer.max_length == buckets[-1] < parent.manifest.tokenizer.max_length
    parity = {row["name"]: row for row in m.metrics.parity["outputs"]}
    # Every bucket is exercised: the empty text and a single word in the smallest, the over-long text in the largest.
    assert {f"edge cases, bucket {b}" for b in buckets} <= set(parity)
    assert all(row["max_abs_diff"] <= 1e-4 and row["agreement"] == 1.0 for row in parity.values()), parity
    signatures = Interpreter(model_path=str(bundle.file("model.tflite"))).get_signature_list()
    assert sorted(signatures) == sorted(f"seq{b}" for b in buckets)
    assert all(t.dtype == "int32" and t.shape[0] == 1 for t in m.inputs)


def test_tflite_runtime_picks_the_smallest_bucket(tiny_bundles: dict[str, Bundle], tmp_path: Path) -> None:
    from edgekd.runtime.backends import TfliteBackend

    bundle = export(tiny_bundles["tinybert"].path, ExportConfig(format="tflite", buckets=[4, 8, 64]), tmp_path / "out")
    # 64 is past the tokenizer's max length (32): the max length itself becomes the largest bucket.
    assert bundle.manifest.architecture.export["buckets"] == [4, 8, 32]
    backend = TfliteBackend(bundle.file("model.tflite"), pad_id=0)
    assert [backend.bucket(n) for n in (1, 4, 5, 8, 9, 32)] == [4, 4, 8, 8, 32, 32]
    with pytest.raises(BundleError, match="largest TFLite bucket"):
        backend.bucket(33)


def test_dynamic_axes_take_any_batch_and_length(tiny_bundles: dict[str, Bundle], tmp_path: Path) -> None:
    """Length 1 up to the maximum, batch 1 and 5, through the exported graph, against the torch parent."""
    from edgekd.modeling import load_torch_model
    from edgekd.runtime.backends import OnnxBackend

    parent = tiny_bundles["bilstm"]
    bundle = export(parent.path, ExportConfig(format="onnx"), tmp_path / "out")
    backend = OnnxBackend(bundle.file("model.onnx"), pad_id=0)
    model = load_torch_model(parent)
    rng = np.random.default_rng(0)
    max_length = parent.manifest.tokenizer.max_length
    for batch, width in [(1, 1), (5, 1), (1, max_length), (5, max_length), (3, 7)]:
        lengths = rng.integers(1, width + 1, size=batch)
        lengths[0] = width
        ids = rng.integers(3, parent.manifest.architecture.vocab, size=(batch, width))
        ids[np.arange(width)[None, :] >= lengths[:, None]] = 0
        feeds = {"input_ids": ids, "lengths": lengths}
        if parent.manifest.task.kind == "pair":
            feeds.update(input_ids_b=ids[:, : max(1, width - 1)].copy(), lengths_b=np.minimum(lengths, max(1, width - 1)))
        with torch.no_grad():
            expected = model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).numpy()
        assert np.abs(backend.run_feeds(feeds) - expected).max() < 1e-5, (batch, width)


def test_optimum_loads_the_bert_export(tiny_bundles: dict[str, Bundle], tmp_path: Path) -> None:
    ORTModelForSequenceClassification = pytest.importorskip(
        "optimum.onnxruntime", reason="optimum is not installed: pip install 'edgekd[optimum]'").ORTModelForSequenceClassification

    from edgekd.modeling import load_torch_model

    parent = tiny_bundles["tinybert"]
    bundle = export(parent.path, ExportConfig(format="onnx"), tmp_path / "out")
    ort_model = ORTModelForSequenceClassification.from_pretrained(bundle.path)
    golden = np.load(bundle.file("golden.npz"))
    # The export's own inputs: a single-sentence export takes no token_type_ids, so its golden file holds none.
    feeds = {k: torch.from_numpy(golden[k]) for k in ("input_ids", "attention_mask", "token_type_ids") if k in golden.files}
    assert ("token_type_ids" in feeds) == (parent.manifest.task.kind == "pair")
    with torch.no_grad():
        expected = load_torch_model(parent)(**feeds).logits.numpy()
    got = ort_model(**feeds).logits
    assert np.abs(np.asarray(got) - expected).max() < 1e-4


def test_a_broken_export_is_caught_and_nothing_is_written(
    tiny_bundles: dict[str, Bundle], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = spec_module.FAMILIES["bert"]

    def perturbed(model: torch.nn.Module) -> torch.nn.Module:
        module = original.onnx_module(model)
        copy = type(model)(model.config)
        copy.load_state_dict(model.state_dict())
        with torch.no_grad():
            copy.classifier.weight.add_(0.05)  # a deliberately wrong weight in the exported graph only
        module.model = copy.eval()
        return module

    from dataclasses import replace

    monkeypatch.setitem(spec_module.FAMILIES, "bert", replace(original, onnx_module=perturbed))
    out = tmp_path / "broken"
    with pytest.raises(ParityError) as caught:
        export(tiny_bundles["tinybert"].path, ExportConfig(format="onnx"), out)
    message = str(caught.value)
    assert "golden" in message and "dev" in message and "max |diff|" in message
    assert not out.exists() and not list(tmp_path.glob(".broken.partial-*"))
    # The CLI says so with exit code 1 (a check failed), not 2 (bad input).
    assert main(["export", str(tiny_bundles["tinybert"].path), "--to", "onnx", "-o", str(out)]) == 1
    assert not out.exists()


def test_export_errors(tiny_bundles: dict[str, Bundle], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    student = tiny_bundles["tinybert"]
    assert main(["export", str(student.path), "--to", "coreml"]) == 2
    assert "valid: onnx, tflite, executorch" in capsys.readouterr().err
    assert main(["export", str(tmp_path), "--to", "onnx"]) == 2
    assert "not an edgekd bundle" in capsys.readouterr().err
    assert main(["export", str(student.path), "--to", "tflite", "--buckets", "1,x"]) == 2
    assert "--buckets" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="ONNX exports only"):
        export(student.path, ExportConfig(format="tflite", fuse=True), tmp_path / "z")
    with pytest.raises(UnsupportedError, match="BERT graphs only; this model is a bilstm"):
        export(tiny_bundles["bilstm"].path, ExportConfig(format="onnx", fuse=True), tmp_path / "x")
    onnx_bundle = export(student.path, ExportConfig(format="onnx"), tmp_path / "onnx")
    with pytest.raises(UnsupportedError, match="already a onnx bundle"):
        export(onnx_bundle.path, ExportConfig(format="onnx"), tmp_path / "again")
    with pytest.raises(ConfigError, match="only data"):
        export(student.path, ExportConfig(format="onnx"), tmp_path / "y", overrides=["seed=1"])
    with pytest.raises(BundleError, match="already exists"):
        export(student.path, ExportConfig(format="onnx"), tmp_path / "onnx")


def test_cli_export_prints_parity(tiny_bundles: dict[str, Bundle], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli-onnx"
    assert main(["export", str(tiny_bundles["teacher"].path), "--to", "onnx", "-o", str(out), "--parity-samples", "all"]) == 0
    text = capsys.readouterr().out
    assert "parity dev" in text and "dev (40 examples): accuracy" in text
    assert Bundle.open(out).manifest.metrics.dev["examples"] == 40
    # An override may come before the bundle: it is not read as the bundle's path.
    out2 = tmp_path / "cli-onnx-20"
    assert main(["export", "data.max_dev_examples=20", str(tiny_bundles["teacher"].path), "--to", "onnx", "-o", str(out2), "--parity-samples", "all"]) == 0
    assert Bundle.open(out2).manifest.metrics.dev["examples"] == 20


def test_every_family_has_export_tests() -> None:
    """A new FamilySpec needs its own cases: here (bert, bilstm) or in tests/parity/test_families.py (every Hugging
    Face family, which also checks that each of those has its cells)."""
    from edgekd.hf_families import HF_FAMILIES

    assert set(spec_module.FAMILIES) == {"bert", "bilstm"} | set(HF_FAMILIES)
