"""Pruning tiny students: vocabulary and magnitude, then export, against their parents."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from edgekd.bundle import Bundle
from edgekd.cli import main
from edgekd.config import ExportConfig, MagnitudePruneConfig, StructuredPruneConfig, VocabPruneConfig
from edgekd.errors import UnsupportedError
from edgekd.export.stage import export
from edgekd.quantize.prune import PRUNERS, prune
from edgekd.runtime.encoder import load_encoder


@pytest.mark.parametrize("model", ["tinybert", "bilstm"])
def test_vocab_pruning_keeps_predictions_on_seen_text(tiny_bundles: dict[str, Bundle], tmp_path: Path, model: str) -> None:
    parent = tiny_bundles[model]
    bundle = prune(parent.path, VocabPruneConfig(), tmp_path / "vocab")
    m = bundle.manifest
    details = m.architecture.prune
    # (The tiny BiLSTM's vocabulary is its training text's, so nothing goes; TinyBERT's WordPiece table shrinks.)
    assert details["vocab"] < details["vocab_before"] if model == "tinybert" else details["vocab"] == details["vocab_before"]
    # The fixture's dev text uses only words of its training text: every piece is kept, predictions are identical.
    rows = {row["name"]: row for row in m.metrics.parity["outputs"]}
    assert rows["dev"]["agreement"] == 1.0 and rows["dev"]["max_abs_diff"] < 1e-5, rows
    assert m.metrics.footprint["parameters"] <= m.metrics.parent_footprint["parameters"]
    # Text with pieces the training text never used reads as [UNK] through the runtime's tokenizer.
    columns = 2 if m.task.kind == "pair" else 1
    encoder = load_encoder(bundle.tokenizer_dir, m.tokenizer.type, m.tokenizer.max_length, columns)
    unseen = encoder.encode([("xylophone quiz",) * columns])[0]["input_ids"]
    unk = 1
    assert unk in unseen.tolist() and int(unseen.max()) < details["vocab"]
    # The smaller model exports, and the export matches it (the tokenizer remap travels with the bundle).
    onnx_bundle = export(bundle.path, ExportConfig(format="onnx"), tmp_path / "vocab-onnx")
    assert all(r["max_abs_diff"] < 1e-4 for r in onnx_bundle.manifest.metrics.parity["outputs"])


def test_bilstm_vocab_pruning_drops_words_the_training_text_lacks(tiny_bundles: dict[str, Bundle], tmp_path: Path) -> None:
    parent = tiny_bundles["bilstm"]
    bundle = prune(parent.path, VocabPruneConfig(), tmp_path / "vocab", overrides=["data.max_train_examples=3"])
    details = bundle.manifest.architecture.prune
    assert details["vocab"] < details["vocab_before"]
    assert bundle.manifest.metrics.footprint["parameters"] < bundle.manifest.metrics.parent_footprint["parameters"]


def test_min_count_keeps_fewer_pieces(tiny_bundles: dict[str, Bundle], tmp_path: Path) -> None:
    parent = tiny_bundles["tinybert"]
    everything = prune(parent.path, VocabPruneConfig(), tmp_path / "all").manifest.architecture.prune["vocab"]
    frequent = prune(parent.path, VocabPruneConfig(min_count=60), tmp_path / "frequent").manifest.architecture.prune["vocab"]
    assert frequent < everything


def test_wordpiece_remap_splits_text_as_before(tiny_bundles: dict[str, Bundle], tmp_path: Path) -> None:
    """A kept piece keeps its place in every split: the new ids are the old ones renumbered, others [UNK]."""
    parent = tiny_bundles["tinybert"]
    bundle = prune(parent.path, VocabPruneConfig(), tmp_path / "vocab")
    columns = 2 if parent.manifest.task.kind == "pair" else 1
    old = load_encoder(parent.tokenizer_dir, "wordpiece", 32, columns)
    new = load_encoder(bundle.tokenizer_dir, "wordpiece", 32, columns)
    text = [("the movie was good, not boring!",) * columns]
    old_ids, new_ids = old.encode(text)[0]["input_ids"], new.encode(text)[0]["input_ids"]
    assert len(old_ids) == len(new_ids)
    vocab = json.loads((bundle.tokenizer_dir / "tokenizer.json").read_text())["model"]["vocab"]
    assert all(n == 1 or n in vocab.values() for n in new_ids.tolist())


def test_magnitude_pruning_reaches_its_sparsity(tiny_bundles: dict[str, Bundle], tmp_path: Path) -> None:
    parent = tiny_bundles["tinybert"]
    bundle = prune(parent.path, MagnitudePruneConfig(sparsity=0.5), tmp_path / "sparse")
    m = bundle.manifest
    details = m.architecture.prune
    assert abs(details["zeroed"] / details["linear_weights"] - 0.5) < 0.01
    size, before = m.metrics.footprint, m.metrics.parent_footprint
    assert size["parameters"] == before["parameters"]
    assert before["nonzero_parameters"] - size["nonzero_parameters"] >= 0.49 * details["linear_weights"]
    assert size["gzip_bytes"] < before["gzip_bytes"]
    assert m.metrics.dev is not None and m.metrics.parity["outputs"][0]["examples"] == 8


def test_structured_pruning_shrinks_the_exported_matrices(tiny_bundles: dict[str, Bundle], tmp_path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    parent = tiny_bundles["teacher"]  # 2 layers of 2 heads, hidden 32, FFN 64
    bundle = prune(parent.path, StructuredPruneConfig(heads=0.5, ffn=0.5, samples=32), tmp_path / "structured")
    details = bundle.manifest.architecture.prune
    assert details["heads_kept"] == 2 and details["ffn_kept"] == 32
    assert all(len(heads) == 1 for heads in details["heads_removed"].values())  # one head left in every layer
    assert bundle.manifest.metrics.footprint["parameters"] < bundle.manifest.metrics.parent_footprint["parameters"]
    onnx_bundle = export(bundle.path, ExportConfig(format="onnx"), tmp_path / "structured-onnx")
    shapes = sorted(numpy_helper.to_array(t).shape for t in onnx.load(str(onnx_bundle.file("model.onnx"))).graph.initializer)
    assert (32, 32) in shapes and (32, 16) in shapes  # FFN up-projection (hidden, 32 kept); one 16-wide head's Q/K/V
    assert (32, 64) not in shapes and (64, 32) not in shapes
    assert all(r["max_abs_diff"] < 1e-4 for r in onnx_bundle.manifest.metrics.parity["outputs"])


def test_prune_errors(tiny_bundles: dict[str, Bundle], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValidationError):
        MagnitudePruneConfig(sparsity=1.0)
    student = str(tiny_bundles["bilstm"].path)
    assert main(["prune", student, "--method", "magnitude", "--sparsity", "1.5"]) == 2
    assert "sparsity" in capsys.readouterr().err
    assert main(["prune", student, "--method", "heads"]) == 2
    assert "methods: magnitude" in capsys.readouterr().err
    with pytest.raises(UnsupportedError, match="FFN neurons of bert, .*; this model is a bilstm"):
        prune(student, StructuredPruneConfig(heads=0.5), tmp_path / "y")
    with pytest.raises(ValidationError, match="heads > 0 or ffn > 0"):
        StructuredPruneConfig()
    onnx_bundle = export(student, ExportConfig(format="onnx"), tmp_path / "onnx")
    with pytest.raises(UnsupportedError, match="reads a torch bundle"):
        prune(onnx_bundle.path, VocabPruneConfig(), tmp_path / "x")


def test_every_pruning_method_is_tested() -> None:
    # Registered pruning methods (config class and handler) against the ones the tests above run.
    assert {config for config, _ in PRUNERS.table().values()} == {MagnitudePruneConfig, VocabPruneConfig, StructuredPruneConfig}


def test_cli_prune(tiny_bundles: dict[str, Bundle], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli-vocab"
    assert main(["prune", str(tiny_bundles["bilstm"].path), "--method", "vocab", "-o", str(out)]) == 0
    assert "non-zero" in capsys.readouterr().out
    golden = np.load(Bundle.open(out).file("golden.npz"))
    assert "parent_logits" in golden
