"""What a reviewer reads in report.html and report.md: the gate's verdict at the top once gated (one line when never
gated), a legend of every column, sources in words, the reference's own row at 1.000 and 1.0x, short names with the
full identifiers at hand, no machine paths, no markdown left over in the HTML, and a flag on a file slower than its
parent."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from edgekd.benchmarks import gate, report as report_module, report_view
from edgekd.benchmarks.report_model import Report
from edgekd.cli import main
from edgekd.config import Budget, ModelBudget

SHIPPED = sorted((Path(__file__).resolve().parents[2] / "benchmarks" / "results").glob("*/report.json"))
BASE_SHAPE = "bert-base-shape-v2-L64-2labels-single-8406160b69"


def _summary(p50: float) -> dict[str, Any]:
    return {"queries": 64, "seconds": 1.2, "p50": p50, "p90": p50 * 1.2, "p99": p50 * 1.5, "min": p50 * 0.8, "max": p50 * 2,
            "mean": p50, "std": 0.1, "p90_early_stopping": p50 * 1.3, "throughput_qps": 1000 / p50,
            "valid_min_queries": True, "valid_min_duration": True}


# The dev set of the crafted reports: 100 examples, half of each class; every model is wrong on the first 15.
GOLD = [i % 2 for i in range(100)]


def _model(name: str, path: str, ratio: tuple[float, float, float] | None, *, role: str = "candidate", parent: str | None = None,
           size: int = 56_000_000, parameters: int = 14_000_000, architecture_only: bool = False) -> dict[str, Any]:
    model = {
        "name": name, "path": path, "sha256": "ab" * 32, "format": "onnx", "role": role, "architecture_only": architecture_only,
        "family": "bert", "size": {"bytes": size, "gzip_bytes": size // 2, "parameters": parameters, "nonzero_parameters": parameters},
        "macs": {}, "accuracy": None if architecture_only else
        {"metric": "accuracy", "value": 0.85, "examples": 100, "reference_value": 0.89, "drop": 0.04,
         "predictions": [1 - g if i < 15 else g for i, g in enumerate(GOLD)]},
        "runs": [{"threads": 1, "startup_ms": 100.0, "first_inference_ms": 3.0, "real": _summary(2.0), "padded": _summary(4.0),
                  "padded_tokens": 64, "memory_kb": 60_000, "latencies_ms": {"real": [2.0, 2.1, 1.9], "padded": [4.0, 4.1, 3.9]},
                  "vs_reference": None if ratio is None else
                  {"median": ratio[0], "low": ratio[1], "high": ratio[2], "pairs": 200, "confidence": 0.95}}],
    }
    if parent is not None:
        model["parent"] = parent
    return model


def _report(*models: dict[str, Any], source: str = "measured_host", teacher: str | None = None) -> dict[str, Any]:
    return {
        "schema_version": 1, "edgekd_version": "0.1.0", "created": "2026-11-30T00:00:00+00:00",
        "target": {"name": "local", "latency_source": source},
        "machine": {"arch": "x86_64", "cpu": "test CPU", "flags": [], "cores": 2, "python": "3.11", "system": "Linux", "versions": {}},
        "settings": {"threads": [1], "queries": 64, "seconds": 1.0, "texts": 200, "batch": 1, "reference": "bert-base-shape",
                     "teacher": None if teacher is None else {"path": teacher, "metric": "accuracy", "value": 0.89, "examples": 872},
                     "data_overrides": []},
        "baseline_vm_hwm_kb": 50_000, "models": list(models),
        "dev": {"task": "sst2", "problem": "classification", "labels": ["negative", "positive"], "sha256": "a" * 64, "gold": GOLD},
    }


@pytest.fixture
def folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A report folder, a current directory beside it, a home folder, and a place outside all three."""
    paths = {name: tmp_path / name for name in ("report", "cwd", "home", "elsewhere")}
    for path in paths.values():
        path.mkdir()
    monkeypatch.chdir(paths["cwd"])
    monkeypatch.setenv("HOME", str(paths["home"]))
    return paths


def _crafted(folders: dict[str, Path]) -> dict[str, Any]:
    """An INT8 file (1 byte per parameter) slower than its FP32 parent (4), a long name, the architecture-only reference
    in the home cache."""
    return _report(
        _model("tinybert-onnx", str(folders["cwd"] / "runs" / "tinybert-onnx"), (0.10, 0.095, 0.105), parent="tinybert"),
        _model("tinybert-int8", str(folders["cwd"] / "runs" / "tinybert-int8"), (0.14, 0.135, 0.145), parent="tinybert-onnx",
               size=14_000_000),
        _model("tinybert-vocab-pruned-onnx-static-int8-calibrated-minmax", str(folders["report"] / "models" / "long"),
               (0.05, 0.045, 0.055), parent="tinybert-onnx", size=14_000_000),
        _model("bilstm-int8", str(folders["elsewhere"] / "deep" / "bilstm-int8"), (0.02, 0.019, 0.021), parent="bilstm-onnx",
               size=1_000_000),
        _model(BASE_SHAPE, str(folders["home"] / ".cache" / "edgekd" / BASE_SHAPE), None, role="reference", architecture_only=True,
               size=437_000_000, parameters=109_000_000),
        teacher=str(folders["elsewhere"] / "teacher"),
    )


def _without_images(page: str) -> str:
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)


def _row(page: str, cell: str) -> str:
    """The HTML table row whose first cell starts with `cell`."""
    return next(row for row in page.split("<tr>") if re.match(rf"<td[^>]*>{re.escape(cell)}", row))


def test_the_page_reads_plainly(folders: dict[str, Path]) -> None:
    paths = report_module.write(_crafted(folders), folders["report"])
    page = _without_images(paths["html"].read_text(encoding="utf-8"))
    # Never gated: one line says so, before anything else.
    assert page.count("Not gated") == 1 and page.index("Not gated") < page.index("<table")
    # No markdown left over, no machine path: inside the report folder relative to it, else to the current
    # directory, else under ~, else elided.
    assert "`" not in page and "**" not in page and "<code>" in page and "<strong>" in page
    for folder in folders.values():
        assert str(folder) not in page
    assert "<code>runs/tinybert-onnx</code>" in page and "<code>models/long</code>" in page
    assert f"<code>~/.cache/edgekd/{BASE_SHAPE}</code>" in page and "<code>…/deep/bilstm-int8</code>" in page
    # Sources in words.
    assert "measured on this host" in page and "measured_host" not in page
    # The reference's own row: ratio 1.000, speed-up 1.0x; its short name, the full one in a tooltip and the model list.
    reference = _row(page, "bert-base-shape (reference; architecture only")
    assert "<td>1.000 (reference)</td>" in reference and "<td>1.0x</td>" in reference
    assert f'title="{BASE_SHAPE}' in reference and f"<td><code>{BASE_SHAPE}</code></td>" in page
    long_name = _row(page, "tinybert-vocab-pruned…ted-minmax")
    assert 'title="tinybert-vocab-pruned-onnx-static-int8-calibrated-minmax' in long_name
    # Every column of the results table is explained in the legend.
    results = page[page.index('<table class="results">'):]
    head = re.findall(r"<th>(.*?)</th>", results[: results.index("</thead>")])
    legend = page[page.index("<dl class='legend'>"):]
    terms = re.findall(r"<dt>(.*?)</dt>", legend[: legend.index("</dl>")])
    assert len(head) == 14 and set(head) <= set(terms), (head, terms)
    for words in ("872 examples", "gzip size", "padded to the maximum length (64 tokens)", "early-stopping",
                  "session", "baseline process", "bootstrap 95% confidence interval", "over 200 pairs", "how many times faster"):
        assert words in legend, words


def test_the_markdown_has_the_same_fixes(folders: dict[str, Path]) -> None:
    text = report_module.markdown(report_module.validate(_crafted(folders)), folders["report"])
    assert "## How to read the table" in text and "- **p90 early-stop ms**:" in text and "- **latency source**:" in text
    reference = next(line for line in text.splitlines() if line.startswith("| bert-base-shape (reference"))
    assert "| 1.000 (reference) | 1.0x |" in reference
    assert "measured on this host" in text and "measured_host" not in text
    assert not any(str(folder) in text for folder in folders.values())
    assert f"| `{BASE_SHAPE}` | `~/.cache/edgekd/{BASE_SHAPE}` |" in text


def test_a_file_slower_than_its_parent_is_flagged(folders: dict[str, Path]) -> None:
    report = report_module.validate(_crafted(folders))
    (flag,) = report_view.slower_than_parent(report)  # the long-named INT8 is faster; bilstm's parent was not measured
    assert (flag.model, flag.parent, flag.threads) == ("tinybert-int8", "tinybert-onnx", 1) and flag.factor == pytest.approx(1.4)
    assert flag.headline == "tinybert-int8 is slower than its parent tinybert-onnx (1.40x its latency)"
    assert "1.0 bytes per parameter against its parent's 4.0" in flag.detail and "dynamic INT8" in flag.detail
    for render in (report_module.markdown(report), report_module.page(report, {})):
        assert "tinybert-int8 is slower than its parent tinybert-onnx (1.40x its latency)" in render
        assert "quantize and dequantize steps cost more" in render
    page = report_module.page(report, {})
    row = _row(page, "tinybert-int8")
    assert 'class="flagged"' in row and "slower than its parent" in row
    assert 'class="flagged"' not in _row(page, "tinybert-onnx")


def test_a_slower_file_within_the_noise_or_without_a_measured_parent_is_not_flagged() -> None:
    close = _report(_model("fp32", "/m/fp32", (0.10, 0.09, 0.12)), _model("int8", "/m/int8", (0.11, 0.10, 0.13), parent="fp32"),
                    _model(BASE_SHAPE, "/m/base", None, role="reference", architecture_only=True))
    assert report_view.slower_than_parent(report_module.validate(close)) == []
    orphan = _report(_model("int8", "/m/int8", (0.5, 0.45, 0.55), parent="fp32"),
                     _model(BASE_SHAPE, "/m/base", None, role="reference", architecture_only=True))
    assert report_view.slower_than_parent(report_module.validate(orphan)) == []
    # Against the reference itself (exactly 1.000): a child at 1.2 (1.1-1.3) is slower than its parent, the reference.
    child = _report(_model("int8", "/m/int8", (1.2, 1.1, 1.3), parent="fp32"), _model("fp32", "/m/fp32", None, role="reference"))
    (flag,) = report_view.slower_than_parent(report_module.validate(child))
    assert flag.parent == "fp32" and flag.factor == pytest.approx(1.2)


def test_an_emulated_report_says_so() -> None:
    report = report_module.validate(_report(_model("m", "/m/m", (0.5, 0.4, 0.6)), _model(BASE_SHAPE, "/m/b", None, role="reference",
                                                                                         architecture_only=True), source="emulated"))
    page = report_module.page(report, {})
    assert "Latencies are <strong>emulated (functional only, not device latency)</strong>" in page


def test_the_gate_puts_its_verdict_at_the_top(folders: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    data = _crafted(folders)
    report_module.write(data, folders["report"])
    before = {p.name: p.read_bytes() for p in folders["report"].iterdir() if p.name != "report.html"}
    budget = folders["cwd"] / "budget.yaml"
    budget.write_text("threads: 1\ndefault:\n  max_latency_ratio: 0.12\nmodels:\n  bilstm-int8:\n    max_latency_ratio: 0.5\n"
                      "    max_bytes: 2000000\n")
    args = ["gate", str(folders["report"] / "report.json"), "--budget", str(budget), "--no-remeasure"]
    assert main(args) == 1
    assert f"({folders['report'] / 'report.html'})" in capsys.readouterr().out
    page = _without_images((folders["report"] / "report.html").read_text(encoding="utf-8"))
    # Only the page changed; its verdict comes first, failures first in its table, with the limits and intervals.
    assert {p.name: p.read_bytes() for p in folders["report"].iterdir() if p.name != "report.html"} == before
    assert "Not gated" not in page and page.index('<section id="gate" class="gate-fail"><h2>Gate: FAIL</h2>') < page.index("<ul")
    verdicts = page[page.index('<table class="verdicts">'): page.index("</section>")]
    rows = verdicts.split("<tr>")[2:]
    # The five budget lines and each judged model's majority floor (4 models).
    assert [re.search(r"<strong>(\w+)</strong>", row).group(1) for row in rows] == ["FAIL"] + ["PASS"] * 8  # type: ignore[union-attr]
    assert "<td>tinybert-int8</td><td>latency ratio</td><td>0.140 (95% CI 0.135-0.145) of bert-base-shape</td><td>&lt;= 0.120</td>" in rows[0]
    assert 'class="v-fail"' in rows[0] and "<td>1,000,000 bytes</td><td>&lt;= 2,000,000 bytes</td>" in verdicts
    # The budget file outside the report folder is shown relative to the current directory.
    assert "9 checks: 1 FAIL, 8 PASS. Judged at 1 thread(s) against <code>budget.yaml</code>" in page
    assert "`" not in page and "**" not in page and not any(str(folder) in page for folder in folders.values())
    # A budget the models meet: PASS.
    budget.write_text("default:\n  max_latency_ratio: 0.5\n")
    assert main(args) == 0
    assert '<h2>Gate: PASS</h2>' in (folders["report"] / "report.html").read_text(encoding="utf-8")


def test_publish_from_a_recipe_budget(tmp_path: Path) -> None:
    report = report_module.validate(_report(_model("m", "/m/m", (0.5, 0.4, 0.6)),
                                            _model(BASE_SHAPE, "/m/b", None, role="reference", architecture_only=True)))
    budget = Budget(default=ModelBudget(max_latency_ratio=0.7))
    page = gate.publish(tmp_path / "report.json", report, gate.judge(report, budget), budget)
    assert page == tmp_path / "report.html" and [p.name for p in tmp_path.iterdir()] == ["report.html"]
    assert "<h2>Gate: PASS</h2>" in page.read_text() and "against the recipe's <code>gate:</code> budget" in page.read_text()


@pytest.mark.parametrize("path", SHIPPED, ids=[p.parent.name for p in SHIPPED])
def test_shipped_reports_render_without_machine_paths(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(path.parents[3])  # the checkout, where the runs/ folders they name were
    report = report_module.load(path)
    page = report_module.page(report, {}, base=path.parent)
    text = report_module.markdown(report, path.parent)
    for render in (page, text):
        assert not re.search(r"(?<![\w.~])/(root|home|work|tmp|Users)/", render), re.findall(r"\S*/(?:root|home|work|tmp)/\S*", render)[:3]
        assert "measured_host" not in render
    assert "`" not in page and "**" not in page
    # The long bert-base-shape identifier only in tooltips and the model list.
    assert "bert-base-shape-L" not in re.sub(r' title="[^"]*"', "", page).split("<h2>Models")[0]
    assert "bert-base-shape-L" not in text.split("## Models")[0]
    results = text.split("## How to read the table")[0].splitlines()
    rows = [line for line in results if line.startswith("| ") and "(reference" in line.split(" | ")[0]]
    # A report measured without --reference (mobile-demo) has no reference row; every other shipped one has exactly one.
    references = sum(m.role == "reference" for m in report.models)
    assert len(rows) == references <= 1 and all("| 1.000 (reference) | 1.0x |" in row for row in rows)
    assert json.loads(path.read_text()) == report.dump()  # rendering reads, never changes, the report


def test_display_names() -> None:
    report = Report.model_validate(_report(_model("a" * 40, "/m/a", (0.5, 0.4, 0.6)), _model("a" * 41, "/m/b", (0.5, 0.4, 0.6)),
                                           _model(BASE_SHAPE, "/m/c", None, role="reference", architecture_only=True)))
    # Two long names that would read the same keep their full names; bert-base-shape is short.
    assert report_view.display_names(report) == ["a" * 40, "a" * 41, "bert-base-shape"]
    assert report_view.shown_target("qemu-aarch64:///srv/rootfs?cpu=max", Path("/srv")) == "qemu-aarch64://rootfs?cpu=max"
    assert report_view.shown_target("ssh://pi@raspberrypi:22") == "ssh://pi@raspberrypi:22"


def test_the_gate_writes_its_page_without_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The gate installs without the plotting library: the page still carries the verdict, and says why it has no plots."""
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else find_spec(name, *a))
    report = report_module.validate(_report(_model("m", "/m/m", (0.5, 0.4, 0.6)),
                                            _model(BASE_SHAPE, "/m/b", None, role="reference", architecture_only=True)))
    budget = Budget(default=ModelBudget(max_latency_ratio=0.45))
    text = gate.publish(tmp_path / "report.json", report, gate.judge(report, budget), budget).read_text()
    assert "<h2>Gate: INCONCLUSIVE</h2>" not in text and "<h2>Gate: FAIL</h2>" in text and "INCONCLUSIVE" in text
    assert "No plots: matplotlib is not installed here" in text and "<figure" not in text
