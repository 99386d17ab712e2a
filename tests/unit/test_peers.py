"""The peer harness (edgekd/peers.py, edgekd/benchmarks/peers.py): Optimum's and ONNX Runtime's plain INT8 files of a student, measured beside
edgekd's in one child in rounds at fixed lengths, with dev accuracy; and the rounds' inputs (runtime/rounds.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edgekd import peers
from edgekd.bundle import Bundle
from edgekd.config import OnnxDynamicConfig
from edgekd.runtime.classifier import Classifier
from edgekd.runtime.encoder import sequence_length
from edgekd.runtime.rounds import at_length


def test_peers_of_a_student_side_by_side(untrained_onnx: dict[str, Bundle], tmp_path: Path) -> None:
    from edgekd.quantize.stage import quantize

    student = untrained_onnx["tinybert-single"]
    ours = quantize(student.path, OnnxDynamicConfig(per_channel=False), tmp_path / "ours-int8")
    out = tmp_path / "peers"
    result = peers.peers(student.path, out, [ours.path], lengths=[8, 16], rounds=12)
    rows = {row["name"]: row for row in result["models"]}
    assert list(rows) == [student.path.name, *peers.PEERS, "ours-int8"]
    for name, row in rows.items():
        for length in ("8", "16"):
            at = row["latency"][length]
            assert at["p50_ms"] > 0 and at["p90_ms"] >= at["p50_ms"]
            ratio = at["vs_reference"]
            assert ratio["low"] <= ratio["median"] <= ratio["high"]
            if name == peers.REFERENCE:
                assert ratio["median"] == ratio["low"] == ratio["high"] == 1.0
        assert row["dev"]["examples"] == 48 and row["startup_ms"] > 0
    # Each file's dev accuracy is the runtime's on the whole dev split, with the paired difference from the reference.
    made = {name: Bundle.open(out / name) for name in peers.PEERS}
    assert made["optimum-arm64"].manifest.architecture.quantize["preset"] == "arm64"
    assert made["ort-quantize-dynamic"].manifest.architecture.quantize["operators"].startswith("quantize_dynamic's defaults")
    for name, bundle in made.items():
        assert rows[name]["dev"]["value"] == pytest.approx(bundle.manifest.metrics.dev["accuracy"], abs=1e-6)
    assert rows[peers.REFERENCE]["dev"]["vs_reference_points"] == {"value": 0.0, "low": 0.0, "high": 0.0}
    saved = json.loads((out / "peers.json").read_text())
    assert saved["models"] == result["models"] and saved["lengths"] == [8, 16]
    table = (out / "peers.md").read_text()
    assert all(f"| {name} |" in table for name in rows) and "p50 L16 ms (x ref)" in table
    # A second run takes the peers it made (same student, same methods) instead of quantizing again.
    stamps = {name: os.stat(out / name / "manifest.json").st_mtime_ns for name in peers.PEERS}
    peers.peers(student.path, out, lengths=[8], rounds=10)
    assert stamps == {name: os.stat(out / name / "manifest.json").st_mtime_ns for name in peers.PEERS}


def test_bad_peer_inputs_are_one_line_exit_2(untrained_onnx: dict[str, Bundle], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgekd.quantize.stage import quantize

    student = untrained_onnx["tinybert-single"]
    quantized = quantize(student.path, OnnxDynamicConfig(), tmp_path / "q")
    assert peers.main([str(quantized.path), "-o", str(tmp_path / "a")]) == 2
    assert "is a quantized ONNX bundle; give the student's FP32 ONNX export" in capsys.readouterr().err
    assert peers.main([str(student.path), "-o", str(tmp_path / "b"), "--rounds", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "at least 10 rounds" in err
    assert peers.main([str(student.path), "-o", str(tmp_path / "c"), "--with", str(student.path)]) == 2
    assert "is already named" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def test_an_input_at_each_length_or_none_past_the_largest_bucket(untrained_onnx: dict[str, Bundle]) -> None:
    texts = [("a short text",), ("another one with more words in it",)]
    for name in ("tinybert-single", "bilstm-single", "tinybert-pair"):
        classifier = Classifier.load(untrained_onnx[name].path)
        columns = [t * classifier.bundle.manifest.task.columns for t in texts]
        for length in (4, 9, 16):
            example = at_length(classifier, columns, length)
            assert example is not None and sequence_length(example) == length, (name, length)
            assert np.isfinite(classifier.backend.run([example])).all()
        bucketed = SimpleNamespace(backend=SimpleNamespace(buckets={8: "seq8"}), bundle=classifier.bundle)
        assert at_length(bucketed, columns, 16) is None  # type: ignore[arg-type]


def test_an_architecture_only_model_is_timed_never_scored(untrained_onnx: dict[str, Bundle]) -> None:
    from edgekd.benchmarks.peers import markdown, measure, summarize
    from edgekd.data import lineage_data, load_task_data

    student = untrained_onnx["tinybert-single"]
    m = student.manifest
    shape = Bundle(student.path, m.model_copy(update={"architecture": m.architecture.model_copy(update={"architecture_only": True})}), student.sha256)
    models = {"student": student, "shape": shape}
    dev = load_task_data(lineage_data(student)).dev
    rows = summarize(models, measure(models, "local", [8], 10, 1, dev.texts[:20]), dev, "student")
    assert rows[0]["dev"]["value"] >= 0 and rows[1]["dev"] is None and rows[1]["latency"]["8"]["p50_ms"] > 0
    page = markdown({"student": "s", "target": {"name": "local", "latency_source": "measured_host"}, "machine": {"cpu": "c", "flags": []},
                     "threads": 1, "rounds": 10, "lengths": [8], "reference": "student", "dev_examples": len(dev), "metric": "accuracy",
                     "command": "c", "models": rows})
    assert "| shape | none (float) |" in page and "n/a (architecture only)" in page
