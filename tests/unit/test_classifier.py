"""The runtime Classifier over ONNX and TFLite bundles, its thread safety, its footprint, and `edgekd predict`."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from edgekd.bundle import Bundle
from edgekd.cli import main
from edgekd.config import ExportConfig
from edgekd.errors import DataError, UnsupportedError
from edgekd.families import family_spec, to_torch
from edgekd.export.stage import export
from edgekd.modeling import load_torch_model
from edgekd.runtime.classifier import Classifier
from edgekd.runtime.encoder import collate


@pytest.fixture(scope="module")
def deployed(tiny_bundles: dict[str, Bundle], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Bundle]:
    root = tmp_path_factory.mktemp("deployed")
    return {
        "tinybert-onnx": export(tiny_bundles["tinybert"].path, ExportConfig(format="onnx"), root / "tinybert-onnx"),
        "bilstm-onnx": export(tiny_bundles["bilstm"].path, ExportConfig(format="onnx"), root / "bilstm-onnx"),
        "tinybert-tflite": export(tiny_bundles["tinybert"].path, ExportConfig(format="tflite", buckets=[8, 16]), root / "tinybert-tflite"),
    }


def _texts(bundle: Bundle) -> list[tuple[str, ...]]:
    golden = np.load(bundle.file("golden.npz"))
    texts = [tuple(str(t) for t in row) for row in golden["texts"]]
    return texts + [("",) * len(texts[0]), ("the film was good but the plot was boring " * 5,) * len(texts[0])]


@pytest.mark.parametrize("name", ["tinybert-onnx", "bilstm-onnx", "tinybert-tflite"])
def test_predictions_match_the_torch_parent(deployed: dict[str, Bundle], tiny_bundles: dict[str, Bundle], name: str) -> None:
    bundle = deployed[name]
    parent = tiny_bundles[name.split("-")[0]]
    classifier = Classifier.load(bundle.path, batch_size=3)
    texts = _texts(bundle)
    predictions = classifier.predict(texts)
    # The parent, through its own tokenizer at the export's max length (TFLite truncates at its largest bucket).
    examples = classifier.encoder.encode(texts)
    with torch.no_grad():
        expected = family_spec(parent.manifest.architecture).reference(load_torch_model(parent), to_torch(collate(examples, classifier.encoder.pad_id)))
    labels = list(parent.manifest.task.labels)
    assert [p.label for p in predictions] == [labels[i] for i in expected.argmax(-1).tolist()]
    for prediction in predictions:
        assert set(prediction.probabilities) == set(labels) and abs(sum(prediction.probabilities.values()) - 1) < 1e-4
    assert np.abs(classifier.logits(texts) - expected.numpy()).max() < 1e-4


@pytest.mark.parametrize("name", ["tinybert-onnx", "tinybert-tflite"])
def test_one_classifier_shared_by_threads_gives_the_serial_results(deployed: dict[str, Bundle], name: str) -> None:
    classifier = Classifier.load(deployed[name].path)
    texts = _texts(deployed[name]) * 4
    serial = classifier.logits(texts)
    results: list[np.ndarray] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                results.append(classifier.logits(texts))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 40
    assert all(np.array_equal(r, serial) for r in results)


def test_the_runtime_imports_neither_torch_nor_transformers(deployed: dict[str, Bundle]) -> None:
    script = (
        "import sys\n"
        "from edgekd.runtime.classifier import Classifier\n"
        f"for path in {[str(deployed['tinybert-onnx'].path), str(deployed['bilstm-onnx'].path)]!r}:\n"
        "    c = Classifier.load(path)\n"
        "    c.predict([('good film',) * (2 if c.bundle.manifest.task.kind == 'pair' else 1)])\n"
        "print(sorted(m for m in ('torch', 'transformers', 'onnx', 'datasets') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_the_runtime_refuses_a_torch_bundle(tiny_bundles: dict[str, Bundle]) -> None:
    with pytest.raises(UnsupportedError, match="runs onnx, tflite or executorch bundles"):
        Classifier.load(tiny_bundles["bilstm"].path)


def test_cli_predict(deployed: dict[str, Bundle], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = deployed["tinybert-onnx"]
    pair = bundle.manifest.task.kind == "pair"
    text = "good film\tthe plot was happy" if pair else "a good film"
    assert main(["predict", str(bundle.path), text]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    assert row["label"] in bundle.manifest.task.labels and abs(sum(row["probabilities"].values()) - 1) < 1e-4
    lines = tmp_path / "texts.txt"
    lines.write_text("\n".join([text] * 3) + "\n", encoding="utf-8")
    assert main(["predict", str(bundle.path), "--input", str(lines), "--threads", "2"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    # Bad input: each a clear message and exit 2.
    wrong = "no tab here" if pair else "one\ttwo"
    lines.write_text(f"{text}\n{wrong}\n", encoding="utf-8")
    assert main(["predict", str(bundle.path), "--input", str(lines)]) == 2
    assert "line 2" in capsys.readouterr().err
    lines.write_bytes(b"\xff\xfe bad bytes")
    assert main(["predict", str(bundle.path), "--input", str(lines)]) == 2
    assert "not UTF-8" in capsys.readouterr().err
    lines.write_text("", encoding="utf-8")
    assert main(["predict", str(bundle.path), "--input", str(lines)]) == 2
    assert "no texts" in capsys.readouterr().err
    assert main(["predict", str(bundle.path), "--input", str(tmp_path / "missing.txt")]) == 2
    assert main(["predict", str(bundle.path)]) == 2


@pytest.mark.parametrize("name", ["tinybert-onnx", "tinybert-tflite"])
@pytest.mark.parametrize("damage", ["truncated", "not a model"])
def test_a_damaged_model_file_is_a_clear_error_before_any_run(deployed: dict[str, Bundle], tmp_path: Path, name: str, damage: str,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    source = deployed[name]
    copy = tmp_path / name
    shutil.copytree(source.path, copy)
    model = next(n for n in source.manifest.files if n.endswith((".onnx", ".tflite")))
    raw = (copy / model).read_bytes()
    (copy / model).write_bytes(raw[: len(raw) // 2] if damage == "truncated" else b"<html>not found</html>\n" * 50)
    # As the manifest stands, the hash check names the file ...
    assert main(["predict", str(copy), "a good film"]) == 2
    assert f"{model}: " in capsys.readouterr().err
    # ... and a manifest re-written to match the damaged file (a tool that re-hashed it) still fails before any
    # prediction, saying what is wrong with the model.
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"][model] = {"sha256": hashlib.sha256((copy / model).read_bytes()).hexdigest(), "bytes": (copy / model).stat().st_size}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert main(["predict", str(copy), "a good film"]) == 2
    err = capsys.readouterr().err
    assert f"{model}: {'onnxruntime' if model.endswith('.onnx') else 'LiteRT'} cannot load it as" in err and "Traceback" not in err


def test_read_texts_rejects_wrong_columns() -> None:
    from edgekd.runtime.classifier import read_texts

    assert read_texts(["a\tb"], 2, "x") == [("a", "b")]
    with pytest.raises(DataError, match="line 1"):
        read_texts(["a"], 2, "x")
