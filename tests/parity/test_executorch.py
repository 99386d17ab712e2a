"""ExecuTorch exports (`.pte`, XNNPACK delegate): FP32 and INT8 against their parents, and the runtime over them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgekd.bundle import Bundle
from edgekd.cli import main
from edgekd.config import ExportConfig
from edgekd.errors import BundleError
from edgekd.export.stage import export
from edgekd.footprint import footprint
from edgekd.hashing import sha256_file
from edgekd.runtime.classifier import Classifier

CASES = [("tinybert", None), ("bilstm", None), ("tinybert", "static"), ("tinybert", "dynamic")]


def _methods(path: Path) -> list[str]:
    from executorch.runtime import Runtime

    return sorted(Runtime.get().load_program(path).method_names)


@pytest.mark.parametrize(("model", "int8"), CASES, ids=[f"{m}-{q or 'fp32'}" for m, q in CASES])
def test_executorch_export_matches_its_parent(tiny_bundles: dict[str, Bundle], tmp_path: Path, model: str, int8: str | None) -> None:
    parent = tiny_bundles[model]
    bundle = export(parent.path, ExportConfig(format="executorch", buckets=[8, 16], int8=int8), tmp_path / "out")
    m = bundle.manifest
    assert (m.format, m.architecture.export["buckets"], m.tokenizer.max_length) == ("executorch", [8, 16], 16)
    assert all(t.dtype == "int64" and t.shape[0] == 1 for t in m.inputs)
    parity = {row["name"]: row for row in m.metrics.parity["outputs"]}
    # Every bucket is exercised: the empty text in the smallest, the over-long text in the largest.
    assert {"edge cases, bucket 8", "edge cases, bucket 16"} <= set(parity)
    path = bundle.file("model.pte")
    assert _methods(path) == ["edgekd_nonzero_parameters", "edgekd_parameters", "seq16", "seq8"]
    # The same weights as the parent (INT8 codes for a quantized program), counted from the program the exporter lowered.
    assert footprint(path)["parameters"] == m.metrics.parent_footprint["parameters"]
    if int8 is None:
        assert all(row["max_abs_diff"] <= 1e-4 and row["agreement"] == 1.0 for row in parity.values()), parity
    else:
        assert m.architecture.export["int8"]["mode"] == int8 and parity["dev"]["agreement"] >= 0.9
    # The runtime loads it (verifying its golden texts) and agrees with the export's own golden logits.
    golden = np.load(bundle.file("golden.npz"))
    texts = [tuple(str(t) for t in row) for row in golden["texts"]]
    logits = Classifier.load(bundle.path).logits(texts)
    np.testing.assert_allclose(logits, golden["logits"], atol=1e-5)
    # XNNPACK's kernels use the thread count asked for (ExecuTorch's pool starts with one thread per core).
    from executorch.extension.pybindings import portable_lib

    Classifier.load(bundle.path, threads=2, verify=False)
    assert portable_lib._threadpool_get_thread_count() == 2
    Classifier.load(bundle.path, threads=1, verify=False)
    assert portable_lib._threadpool_get_thread_count() == 1


def test_a_damaged_or_foreign_pte_is_a_bundle_error_before_any_run(tiny_bundles: dict[str, Bundle], tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    bundle = export(tiny_bundles["tinybert"].path, ExportConfig(format="executorch", buckets=[8]), tmp_path / "out")
    for damage in ("truncated", "not a model"):
        copy = tmp_path / damage
        shutil.copytree(bundle.path, copy)
        raw = (copy / "model.pte").read_bytes()
        (copy / "model.pte").write_bytes(raw[: len(raw) // 2] if damage == "truncated" else b"<html>not found</html>\n" * 50)
        manifest = json.loads((copy / "manifest.json").read_text())
        manifest["files"]["model.pte"] = {"sha256": sha256_file(copy / "model.pte"), "bytes": (copy / "model.pte").stat().st_size}
        (copy / "manifest.json").write_text(json.dumps(manifest))
        assert main(["predict", str(copy), "a good film"]) == 2
        err = capsys.readouterr().err
        assert "model.pte: ExecuTorch cannot load it as a program" in err and "Traceback" not in err, err
    # A program whose methods take other inputs than the manifest lists.
    with pytest.raises(BundleError, match=r"its methods take \[[23]\] inputs, but the manifest lists \[.input_ids.\]"):
        from edgekd.runtime.pte import PteBackend

        PteBackend(bundle.file("model.pte"), 0, ["input_ids"])


def test_int8_applies_to_executorch_only(tiny_bundles: dict[str, Bundle], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(tiny_bundles["tinybert"].path), "--to", "onnx", "--int8", "static"]) == 2
    assert "int8 applies to ExecuTorch exports only" in capsys.readouterr().err


def test_bench_measures_a_pte_model_only_and_from_the_text(tiny_bundles: dict[str, Bundle], tmp_path: Path) -> None:
    from edgekd.benchmarks.bench import bench
    from edgekd.config import BenchConfig

    bundle = export(tiny_bundles["tinybert"].path, ExportConfig(format="executorch", buckets=[8, 16]), tmp_path / "pte")
    report = bench([bundle.path], BenchConfig(reference=None, texts=20))
    (model,) = report.models
    run = model.runs[0]
    assert model.format == "executorch" and model.size.parameters == bundle.manifest.metrics.footprint["parameters"]
    assert run.real.valid_min_queries and run.end_to_end is not None and run.end_to_end.p50 > 0.5 * run.real.p50
    # The padded worst case is the largest bucket; accuracy is of the .pte itself through the runtime, on all of dev.
    assert run.padded_tokens == 16 and model.accuracy is not None and model.accuracy.examples == 40
