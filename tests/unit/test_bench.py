"""`edgekd bench` on tiny exported models: the protocol's fields, the report schema, the markdown, the CLI."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from edgekd.benchmarks import report as report_module
from edgekd.benchmarks.bench import bench
from edgekd.benchmarks.report_model import Target
from edgekd.bundle import Bundle
from edgekd.cli import main
from edgekd.config import BenchConfig, ExportConfig
from edgekd.config.run import MIN_QUERIES, MIN_SECONDS
from edgekd.errors import BundleError, UnsupportedError
from edgekd.export.stage import export


@pytest.fixture(scope="module")
def measured(tiny_bundles: dict[str, Bundle], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("bench")
    bundles = {name: export(tiny_bundles[name].path, ExportConfig(format="onnx"), root / f"{name}-onnx") for name in ("tinybert", "teacher")}
    cfg = BenchConfig(reference=str(bundles["teacher"].path), teacher=str(tiny_bundles["teacher"].path), texts=20)
    return {"report": bench([bundles["tinybert"].path], cfg), "bundles": bundles, "root": root, "teacher": tiny_bundles["teacher"].path,
            "parents": {name: tiny_bundles[name].path.name for name in ("tinybert", "teacher")}}


def test_report_follows_the_protocol(measured: dict[str, Any]) -> None:
    report = measured["report"]
    assert report_module.validate(report.dump()) == report
    # The schema's floors are the protocol's minimums of the benchmark config (one number each).
    floors = report_module.schema()["$defs"]["Settings"]["properties"]
    assert (floors["queries"]["minimum"], floors["seconds"]["minimum"]) == (MIN_QUERIES, MIN_SECONDS)
    assert report.target == Target(name="local", latency_source="measured_host") and report.machine.cores >= 1
    candidate, reference = report.models
    assert (candidate.role, reference.role) == ("candidate", "reference")
    run = candidate.runs[0]
    for summary, latencies in ((run.real, run.latencies_ms.real), (run.padded, run.latencies_ms.padded)):
        assert summary.queries >= MIN_QUERIES and summary.seconds >= MIN_SECONDS and summary.valid_min_queries and summary.valid_min_duration
        assert summary.min <= summary.p50 <= summary.p90 <= summary.p99 <= summary.max
        assert len(latencies) == summary.queries
    # From the text: the same protocol's minimums, one latency per query, and tokenization on top of the model.
    e2e = run.end_to_end
    assert e2e is not None and e2e.queries >= MIN_QUERIES and e2e.seconds >= MIN_SECONDS and len(run.latencies_ms.end_to_end or []) == e2e.queries
    assert e2e.min <= e2e.p50 <= e2e.p90 and e2e.p50 > 0.5 * run.real.p50
    assert run.padded_tokens == 32 and run.startup_ms > 0 and run.first_inference_ms > 0
    assert run.memory_kb is not None and run.memory_kb > 0
    ratio = run.vs_reference
    assert ratio is not None and ratio.low <= ratio.median <= ratio.high and ratio.pairs >= MIN_QUERIES
    assert reference.runs[0].vs_reference is None
    # The tiny student is smaller than the tiny teacher: fewer MACs, and its accuracy drop is against the teacher.
    assert candidate.macs.at_max_length < reference.macs.at_max_length
    assert candidate.accuracy is not None and candidate.accuracy.examples == 40 and candidate.accuracy.drop is not None
    # The teacher's dev metric comes from its manifest, as the manifest's typed metrics give it.
    teacher = report.settings.teacher
    assert teacher is not None and teacher.path == str(measured["teacher"]) and teacher.examples == 40
    # Each model names the bundle it was made from (its manifest's parent), for the slower-than-parent flag.
    assert (candidate.parent, reference.parent) == (measured["parents"]["tinybert"], measured["parents"]["teacher"])


def test_report_files_and_markdown(measured: dict[str, Any], tmp_path: Path) -> None:
    paths = report_module.write(measured["report"], tmp_path / "out")
    assert report_module.load(paths["json"]) == measured["report"]
    assert json.loads(paths["json"].read_text()) == measured["report"].dump()
    text = paths["md"].read_text()
    assert "measured on this host" in text and "latency vs reference" in text and "tinybert-onnx" in text
    assert "| 1.000 (reference) | 1.0x |" in text and "## How to read the table" in text
    assert "p50 / p90 ms (text in)" in text and "| not measured |" not in text
    assert not list((tmp_path / "out").glob("*.partial*"))
    page = paths["html"].read_text()
    for key in ("accuracy_latency", "latency_distribution", "size"):
        assert paths[f"plot_{key}"].stat().st_size > 5000 and f'id="plot-{key}"' in page
    assert page.count("data:image/png;base64,") == 3 and '<table class="results">' in page and "http" not in page.split("<style>")[0]
    assert "Not gated" in page and "<dl class='legend'>" in page


def test_a_report_rewrite_killed_halfway_leaves_no_report_json(measured: dict[str, Any], tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    report_module.write(measured["report"], out)
    real_write = report_module.write_text_atomic

    def dies_at_the_html(path: Path, text: str) -> None:
        if path.name == "report.html":
            raise KeyboardInterrupt  # the writer stops between files
        real_write(path, text)

    monkeypatch.setattr(report_module, "write_text_atomic", dies_at_the_html)
    with pytest.raises(KeyboardInterrupt):
        report_module.write(measured["report"], out)
    # The new report.md is there beside the old report.html: without report.json, nothing reads the mix as a report.
    assert (out / "report.md").is_file() and not (out / "report.json").exists()
    with pytest.raises(BundleError, match="no such report"):
        report_module.load(out / "report.json")
    monkeypatch.undo()
    assert report_module.load(report_module.write(measured["report"], out)["json"]) == measured["report"]


def test_pareto_front() -> None:
    from edgekd.benchmarks.plots import pareto

    points = [(1.0, 80.0), (2.0, 85.0), (3.0, 84.0), (0.5, 70.0), (2.0, 86.0)]
    assert pareto(points) == [3, 0, 4]  # (3.0, 84) is beaten by (2.0, 86); (2.0, 85) too


def test_a_report_breaking_the_schema_is_refused(measured: dict[str, Any], tmp_path: Path) -> None:
    broken = copy.deepcopy(measured["report"].dump())
    broken["models"][0]["runs"][0]["real"]["p50"] = "fast"
    del broken["machine"]
    with pytest.raises(BundleError) as caught:
        report_module.write(broken, tmp_path / "bad")
    assert "machine" in str(caught.value) and "p50" in str(caught.value)
    assert not (tmp_path / "bad" / "report.json").exists()
    (tmp_path / "x.json").write_text("[1, 2")
    with pytest.raises(BundleError, match="not a JSON report"):
        report_module.load(tmp_path / "x.json")


def test_bench_errors(measured: dict[str, Any], tiny_bundles: dict[str, Bundle], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = str(measured["bundles"]["tinybert"].path)
    assert main(["bench", bundle, "-o", str(tmp_path), "--queries", str(MIN_QUERIES - 1)]) == 2
    assert f"queries: Input should be greater than or equal to {MIN_QUERIES}" in capsys.readouterr().err
    with pytest.raises(UnsupportedError, match="edgekd export first"):
        bench([tiny_bundles["tinybert"].path], BenchConfig())
    assert main(["bench", str(measured["bundles"]["tinybert"].path), "-o", str(tmp_path), "--threads", "one"]) == 2
    assert "--threads" in capsys.readouterr().err
    assert main(["bench", str(measured["bundles"]["tinybert"].path), "-o", str(tmp_path), "--target", "gopher://x"]) == 2


def test_gate_trust_trial_and_harness_overhead(measured: dict[str, Any]) -> None:
    from edgekd.benchmarks.gate_trust import trial
    from edgekd.benchmarks.harness_overhead import overhead

    teacher = measured["bundles"]["teacher"].path
    # A model against itself with a generous budget (2x) must pass: a FAIL here would be a false fail.
    assert trial(teacher, teacher, 2.0, (), 20) == "PASS"
    columns = 2 if measured["bundles"]["teacher"].manifest.task.kind == "pair" else 1
    result = overhead(teacher, [("a good film",) * columns], queries=100)
    assert result["harness_p50_ms"] > 0 and result["bare_session_run_p50_ms"] > 0


def test_the_reference_passes_its_own_golden_self_check(untrained_onnx: dict[str, Bundle], tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """bert-base-shape's golden logits are its exported file's own: `Classifier.load` (which checks them) accepts it.
    (They were torch's, 0.17 away from onnxruntime's on the BERT-base shape: `make demo` stopped at the benchmark.)
    The shape is shrunk here; the code path is the reference's."""
    from edgekd.benchmarks import reference
    from edgekd.runtime.classifier import Classifier

    monkeypatch.setattr(reference, "SHAPE", {**reference.SHAPE, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                                             "intermediate_size": 128})
    monkeypatch.setenv("EDGEKD_CACHE_DIR", str(tmp_path))
    built = reference.bert_base_shape(untrained_onnx["tinybert-single"])
    check = Classifier.load(built).check_golden()
    assert check.passed and check.max_abs_diff <= 1e-5, check


def test_tables_and_macs_read_the_typed_manifest_records(measured: dict[str, Any], tiny_bundles: dict[str, Bundle]) -> None:
    from edgekd.benchmarks import artifact_table, training_table
    from edgekd.benchmarks.macs import macs

    trained = training_table.table([tiny_bundles["teacher"], tiny_bundles["bilstm"]])
    bilstm = tiny_bundles["bilstm"].manifest
    assert f"bilstm {bilstm.architecture.shape('hidden')}x2" in trained and "dev accuracy" in trained
    assert f"{100 * bilstm.metrics.scores().values['accuracy']:.2f}" in trained
    export = measured["bundles"]["tinybert"].manifest
    derived = artifact_table.table([measured["bundles"]["tinybert"]]).splitlines()[-1]
    assert derived.startswith("| tinybert-onnx | onnx") and f"({export.metrics.scores().examples})" in derived
    # The BiLSTM's count comes from its shape facts: a fixed head plus a recurrent cost linear in the length.
    counts = [macs(tiny_bundles["bilstm"], length) for length in (10, 20, 30)]
    assert counts[0] is not None and 0 < counts[1] - counts[0] == counts[2] - counts[1] < counts[0]


def test_macs_count_every_supported_family_from_its_config(tmp_path: Path) -> None:
    import json
    from types import SimpleNamespace

    from edgekd.benchmarks.macs import macs
    from edgekd.hf_families import HF_FAMILIES

    def bundle_of(config: dict[str, Any]) -> Any:
        (tmp_path / "config.json").write_text(json.dumps(config))
        manifest = SimpleNamespace(architecture=SimpleNamespace(family=config["model_type"]), files={"config.json": None})
        return SimpleNamespace(manifest=manifest, file=lambda name: tmp_path / name)

    bert = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "num_labels": 2}
    expected = macs(bundle_of({**bert, "model_type": "bert"}), 16)
    # DistilBERT spells the same shape its own way; every other family uses transformers' names.
    distil = {"dim": 32, "hidden_dim": 64, "n_layers": 2, "n_heads": 2, "num_labels": 2, "model_type": "distilbert"}
    assert macs(bundle_of(distil), 16) == expected
    assert all(macs(bundle_of({**bert, "model_type": family}), 16) == expected for family in HF_FAMILIES if family != "distilbert")
    assert macs(bundle_of({**bert, "model_type": "albert"}), 16) is None and macs(bundle_of({**bert, "model_type": "bert"}), 32) > expected


def test_bench_keeps_per_example_predictions_and_scores_the_teacher_on_them(untrained_onnx: dict[str, Bundle], tmp_path: Path) -> None:
    import numpy as np

    from edgekd.benchmarks import gate
    from edgekd.config import Budget, ModelBudget
    from edgekd.metrics import accuracy

    exported, student = untrained_onnx["tinybert-single"], untrained_onnx["bilstm-single"]
    assert exported.manifest.parent is not None
    teacher = exported.manifest.parent.path  # the torch teacher the ONNX file was exported from
    report = bench([exported.path, student.path], BenchConfig(reference=None, teacher=teacher, texts=20))
    dev, scored = report.dev, report.settings.teacher
    assert dev is not None and scored is not None and scored.predictions is not None
    assert dev.task == exported.manifest.task.name and dev.labels == exported.manifest.task.labels and len(dev.sha256) == 64
    gold = np.asarray(dev.gold)
    # The teacher is scored now, through its torch model, on the same examples: its value is its predictions' accuracy.
    assert scored.examples == gold.size and scored.value == pytest.approx(accuracy(np.asarray(scored.predictions), gold), abs=1e-6)
    for model in report.models:
        assert model.accuracy is not None and model.accuracy.predictions is not None and len(model.accuracy.predictions) == gold.size
        assert model.accuracy.value == pytest.approx(accuracy(np.asarray(model.accuracy.predictions), gold), abs=1e-6)
    # The teacher's own export predicts what the teacher predicts: its paired drop is exactly 0.
    assert report.models[0].accuracy.predictions == scored.predictions  # type: ignore[union-attr]
    (drop,) = [c for c in gate.judge(report, Budget(models={exported.path.name: ModelBudget(max_accuracy_drop=0.5)})) if c.name == "accuracy drop"]
    assert drop.verdict == "PASS" and drop.measured == "accuracy drop 0.00 pts (95% CI 0.00 to 0.00)"
    # report.json keeps each list of numbers on one line, and reads back the same.
    paths = report_module.write(report, tmp_path)
    text = paths["json"].read_text()
    assert '"gold": [' + ",".join(map(str, dev.gold)) + "]" in text
    assert report_module.load(paths["json"]) == report
