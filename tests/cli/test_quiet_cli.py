"""What a user sees on stderr and stdout: edgekd's own lines only (the libraries underneath with --verbose), progress
that stays a few lines off a terminal, outputs refused before torch loads, a missing backend as a one-line hint,
`predict` on torch bundles in transformers' pipeline format, and a help that lists each verb once."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from edgekd import logs, progress, testing
from edgekd.bundle import Bundle
from edgekd.cli import VERBS, main

# Variables the CLI sets for the libraries it runs (`edgekd.logs.setup_cli`): a test of what a fresh process does
# starts without them (an earlier in-process `main` may have set them in this one).
SET_BY_THE_CLI = ("TORCH_LOGS", "TRANSFORMERS_VERBOSITY", "TF_CPP_MIN_LOG_LEVEL", "HF_DATASETS_DISABLE_PROGRESS_BARS",
                  "HF_HUB_DISABLE_PROGRESS_BARS", "PYTHONWARNINGS")
# Third-party chatter of each kind, made during an export (a driver wraps its loading of the task data, before the
# stage's modules are imported, so torch is first imported inside `main` as in `edgekd export`): a library's warning
# record, a root-logger INFO record as jax and litert-torch log, a Python warning from a module that is not edgekd's.
NOISY_EXPORT = textwrap.dedent("""
    import logging, sys, warnings
    import edgekd.data
    from edgekd.cli import main

    original = edgekd.data.load_task_data

    def noisy(*args, **kwargs):
        logging.getLogger("somelibrary").warning("NOISE-LIBRARY-WARNING")
        logging.info("NOISE-ROOT-INFO")
        warnings.warn("NOISE-PYTHON-WARNING")
        return original(*args, **kwargs)

    edgekd.data.load_task_data = noisy
    assert "torch" not in sys.modules
    sys.exit(main(sys.argv[1:]))
""")
NOISE = ("NOISE-LIBRARY-WARNING", "NOISE-ROOT-INFO", "NOISE-PYTHON-WARNING")


def fresh_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in SET_BY_THE_CLI}


def python(code: str, *argv: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=timeout,
                          env=fresh_env(), check=False)


def torch_parent(onnx_bundle: Bundle) -> Path:
    """The torch bundle an ONNX bundle of the fixtures was exported from."""
    assert onnx_bundle.manifest.parent is not None
    return Path(onnx_bundle.manifest.parent.path)


def test_help_lists_each_verb_once(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0
    for verb, (what, _) in VERBS.items():
        listed = [line for line in out.splitlines() if line.split()[:1] == [verb]]
        assert len(listed) == 1, f"{verb!r} is listed {len(listed)} times:\n{out}"
        assert out.count(what) == 1
    assert "-v, --verbose" in out and "-q, --quiet" in out


def test_an_export_shows_only_edgekd_lines_and_verbose_shows_the_rest(untrained_onnx: dict[str, Bundle], tmp_path: Path) -> None:
    teacher = str(torch_parent(untrained_onnx["tinybert-single"]))
    quiet = python(NOISY_EXPORT, "export", teacher, "--to", "onnx", "-o", str(tmp_path / "quiet"))
    assert quiet.returncode == 0, quiet.stderr
    assert "onnx bundle:" in quiet.stdout
    lines = quiet.stderr.splitlines()
    # Every line is edgekd's own log line: no torch `_pytree` notice, no torchao kernel probe, none of the noise.
    assert lines and all(line.startswith(("INFO edgekd.", "WARNING edgekd.")) for line in lines), quiet.stderr
    assert not any(noise in quiet.stderr for noise in NOISE) and "_pytree" not in quiet.stderr
    # Off a terminal (a pipe here) progress is a few log lines, not a redrawn bar.
    shown = [line for line in lines if line.startswith("INFO edgekd.progress:")]
    assert 2 <= len(shown) <= 12 and "\r" not in quiet.stderr
    assert any("export: converting to ONNX: done in" in line for line in shown)

    verbose = python(NOISY_EXPORT, "-v", "export", teacher, "--to", "onnx", "-o", str(tmp_path / "verbose"))
    assert verbose.returncode == 0, verbose.stderr
    for noise in NOISE:
        assert noise in verbose.stderr, f"--verbose hides {noise}:\n{verbose.stderr[-3000:]}"


def test_a_bar_off_a_terminal_logs_a_few_lines(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    clock = iter(float(t) for t in range(10_000))
    monkeypatch.setattr(progress, "_enabled", True)  # as `edgekd` without -q (an earlier in-process `main` may have had it)
    monkeypatch.setattr(progress, "on_terminal", lambda: False)
    monkeypatch.setattr(progress, "_now", lambda: next(clock))
    with caplog.at_level(logging.INFO, logger="edgekd.progress"), progress.bar(500, "labelling", unit="ex") as shown:
        for _ in range(500):  # one update a second for 500 seconds
            shown.update(1)
    lines = [r.getMessage() for r in caplog.records if r.name == "edgekd.progress"]
    assert 5 <= len(lines) <= 11, lines  # a tenth of the work apart, at least LOG_SECONDS apart
    assert lines[-1].startswith("labelling: 500/500 ex (100%) in")
    assert "about" in lines[0] and "left" in lines[0]

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="edgekd.progress"):
        with progress.step("converting"):  # one second on the test's clock
            pass
        monkeypatch.setattr(progress, "_now", lambda: 0.5)
        quick = progress.bar(10, "quick")
        quick.update(10)
        quick.close()
    assert [r.getMessage() for r in caplog.records] == ["converting ...", "converting: done in 00:01"]  # the quick bar: no line

    caplog.clear()
    progress.enable(False)
    try:
        with caplog.at_level(logging.INFO, logger="edgekd.progress"), progress.step("hidden"), progress.bar(3, "hidden") as hidden:
            hidden.update(3)
    finally:
        progress.enable(True)
    assert caplog.records == []


def test_quiet_turns_progress_off(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SET_BY_THE_CLI:  # restored after the test, as setup_cli sets them
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(progress, "on_terminal", lambda: True)
    try:
        logs.setup_cli("quiet")
        assert not progress.bars_shown() and not isinstance(progress.bar(3, "hidden"), progress._LogBar)
        assert os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] == "1" and os.environ["TORCH_LOGS"] == "-all"
        logs.setup_cli("normal")
        assert progress.bars_shown()
    finally:
        logs.setup_cli("normal")
        progress.enable(True)


def test_a_bar_on_a_terminal_is_tqdm(monkeypatch: pytest.MonkeyPatch) -> None:
    from tqdm import tqdm

    monkeypatch.setattr(progress, "_enabled", True)
    monkeypatch.setattr(progress, "on_terminal", lambda: True)
    shown = progress.bar(3, "drawn", disable=False)
    assert isinstance(shown, tqdm)
    shown.close()
    assert not isinstance(progress.bar(3, "a data-parallel worker's", disable=True), tqdm)


def test_native_stderr_lines_are_filtered_unless_verbose(capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    xnnpack = b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
    monkeypatch.setattr(logs, "_show_third_party", False)  # as `edgekd` without -v (an earlier in-process `main` may have had it)
    with logs.native_stderr_filtered():
        os.write(2, xnnpack + b"a line that stays\n")
    assert capfd.readouterr().err == "a line that stays\n"
    monkeypatch.setattr(logs, "_show_third_party", True)
    with logs.native_stderr_filtered():
        os.write(2, xnnpack)
    assert capfd.readouterr().err == xnnpack.decode()


def test_an_existing_output_is_refused_before_torch_is_imported(untrained_onnx: dict[str, Bundle], tiny_encoder: Path,
                                                                single_task: Path, tmp_path: Path) -> None:
    existing = str(untrained_onnx["bilstm-single"].path)  # any bundle
    onnx = untrained_onnx["tinybert-single"]
    # A copy of the torch teacher whose default export output (BUNDLE-onnx, beside it) is already there.
    teacher = tmp_path / "teacher"
    shutil.copytree(torch_parent(onnx), teacher)
    shutil.copytree(onnx.path, tmp_path / "teacher-onnx")
    raw = testing.tiny_recipe(single_task, tiny_encoder, tmp_path / "run", teacher={"mode": "import"})
    raw["students"] = testing.tiny_students()
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(raw), encoding="utf-8")
    commands = [
        ["export", str(teacher), "--to", "onnx", "-o", existing],
        ["export", str(teacher), "--to", "onnx"],
        ["quantize", str(onnx.path), "--method", "onnx-dynamic", "-o", existing],
        ["prune", str(teacher), "--method", "vocab", "-o", existing],
        ["teacher", str(recipe), "-o", existing],
        ["distill", str(recipe), "--student", "bilstm", "-o", existing],
    ]
    probe = textwrap.dedent("""
        import contextlib, io, json, sys
        from edgekd.cli import main
        for argv in json.loads(sys.argv[1]):
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                code = main(argv)
            print(json.dumps([code, err.getvalue(), "torch" in sys.modules]))
    """)
    done = python(probe, json.dumps(commands))
    assert done.returncode == 0, done.stderr
    for argv, line in zip(commands, done.stdout.splitlines(), strict=True):
        code, err, torch_loaded = json.loads(line)
        assert code == 2 and "already exists" in err and "--force" in err, (argv, err)
        assert not torch_loaded, f"{' '.join(argv[:2])}: torch was imported before the output was refused"


def test_a_missing_backend_is_a_one_line_hint(untrained_onnx: dict[str, Bundle], monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from edgekd.errors import UnsupportedError
    from edgekd.runtime.backends import TfliteBackend

    onnx = untrained_onnx["tinybert-single"]
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    code = main(["predict", str(onnx.path), "a text"])
    err = capsys.readouterr().err
    assert code == 2 and "this bundle needs onnxruntime, which is not installed here: pip install 'edgekd[runtime]'" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err

    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    with pytest.raises(UnsupportedError, match=r"this bundle needs LiteRT, which is not installed here: pip install 'edgekd\[runtime-tflite\]'"):
        TfliteBackend(tmp_path / "model.tflite", 0)

    # A torch verb in an install without torch (a runtime-only one).
    probe = "import sys; sys.modules['torch'] = None; from edgekd.cli import main; sys.exit(main(sys.argv[1:]))"
    done = python(probe, "export", str(torch_parent(onnx)), "--to", "onnx", "-o", str(tmp_path / "out"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == "edgekd export: error: this needs torch, which is not installed here: pip install 'edgekd[full]'"
    assert "Traceback" not in done.stderr


def _predict(capsys: pytest.CaptureFixture[str], *argv: str) -> list[object]:
    capsys.readouterr()
    code = main(["predict", *argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()]


TEXTS = ["a good and lovely film", "a bad , dull plot", "fine", ""]


@pytest.mark.parametrize("name", ["tinybert-single", "bilstm-single"])
def test_predict_on_a_torch_bundle_agrees_with_its_export(name: str, untrained_onnx: dict[str, Bundle], capsys: pytest.CaptureFixture[str]) -> None:
    onnx = untrained_onnx[name]
    source = str(torch_parent(onnx))
    torch_rows = _predict(capsys, source, "--logits", "--", *TEXTS)
    onnx_rows = _predict(capsys, str(onnx.path), "--logits", "--", *TEXTS)
    assert [r["label"] for r in torch_rows] == [r["label"] for r in onnx_rows]  # type: ignore[index]
    for row, exported in zip(torch_rows, onnx_rows):
        assert isinstance(row, dict) and isinstance(exported, dict)
        logits = row["logits"]
        assert logits == pytest.approx(exported["logits"], abs=1e-4)
        assert row["label"] == onnx.manifest.task.labels[max(range(len(logits)), key=logits.__getitem__)]
    # Options before the texts, and the pipeline format: a one-element list per text.
    pipeline_rows = _predict(capsys, source, "--format", "pipeline", *TEXTS[:3])
    assert [rows[0]["label"] for rows in pipeline_rows] == [r["label"] for r in onnx_rows[:3]]  # type: ignore[index]
    assert all(isinstance(rows, list) and len(rows) == 1 and set(rows[0]) == {"label", "score"} for rows in pipeline_rows)


def test_the_pipeline_format_is_transformers_pipeline(untrained_onnx: dict[str, Bundle], capsys: pytest.CaptureFixture[str]) -> None:
    from transformers import pipeline

    source = torch_parent(untrained_onnx["tinybert-single"])
    expected = [pipeline("text-classification", model=str(source), device="cpu")(text) for text in TEXTS[:3]]
    got = _predict(capsys, str(source), "--format", "pipeline", *TEXTS[:3])
    assert [[row["label"] for row in rows] for rows in got] == [[row["label"] for row in rows] for rows in expected]  # type: ignore[index, union-attr]
    assert [rows[0]["score"] for rows in got] == pytest.approx([rows[0]["score"] for rows in expected], abs=1e-6)  # type: ignore[index]
    # The same from the ONNX export.
    exported = _predict(capsys, str(untrained_onnx["tinybert-single"].path), "--format", "pipeline", *TEXTS[:3])
    assert [rows[0]["score"] for rows in exported] == pytest.approx([rows[0]["score"] for rows in expected], abs=1e-5)  # type: ignore[index]


def test_logits_and_the_pipeline_format_do_not_mix(untrained_onnx: dict[str, Bundle], capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["predict", str(untrained_onnx["tinybert-single"].path), "--format", "pipeline", "--logits", "a text"])
    assert code == 2 and "the pipeline format has no place for them" in capsys.readouterr().err
