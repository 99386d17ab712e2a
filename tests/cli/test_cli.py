"""The command line: help, exit codes, error messages without tracebacks, and the verbs that work now."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edgekd import testing
from edgekd.cli import VERBS, main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_every_verb_with_an_example() -> None:
    # A real subprocess: the console entry point, and `--help` must not import the heavy backends.
    probe = "import sys; from edgekd.cli import main; main(['--help'])"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for verb, (_, example) in VERBS.items():
        assert verb in result.stdout and f"$ {example}" in result.stdout
    heavy = subprocess.run(
        [sys.executable, "-c", "import sys; import edgekd.cli, edgekd.bundle, edgekd.config; print(sorted(m for m in ('torch', 'transformers', 'onnxruntime') if m in sys.modules))"],
        capture_output=True, text=True, timeout=60,
    )
    assert heavy.stdout.strip() == "[]"


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2


def write_recipe(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_validate_ok_and_print(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "validate", "sst2", "teacher.train.epochs=2", "--print")
    assert code == 0 and "is a valid recipe (sst2)" in out
    assert yaml.safe_load(out.split("\n", 1)[1])["teacher"]["train"]["epochs"] == 2


def test_validate_reports_every_problem_and_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write_recipe(tmp_path, {"name": "x", "data": {"task": "sst2"}, "teacher": {"train": {"epoch": 1, "lr": 1}}})
    code, out, err = run(capsys, "validate", str(path))
    assert code == 2 and out == ""
    assert "2 problem(s)" in err and "did you mean 'epochs'" in err and "did you mean 'learning_rate'" in err
    assert "Traceback" not in err


def test_debug_shows_the_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--debug", "validate", "no-such-recipe")
    assert code == 2 and "Traceback" in err and "no such recipe file" in err


def test_teacher_then_inspect(capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_encoder: Path, single_task: Path) -> None:
    path = write_recipe(tmp_path, testing.tiny_recipe(single_task, tiny_encoder, tmp_path / "run", train={"epochs": 1}))
    code, out, err = run(capsys, "teacher", str(path), "teacher.cache_logits=false")
    assert code == 0, err
    bundle_dir = tmp_path / "run" / "teacher"
    assert f"teacher bundle: {bundle_dir}" in out and "dev (48 examples): accuracy" in out

    code, out, _ = run(capsys, "inspect", str(bundle_dir))
    assert code == 0 and "(teacher, torch, schema 1" in out and "all hashes verified" in out and "model.safetensors" in out
    code, out, _ = run(capsys, "inspect", str(bundle_dir), "--json")
    data = json.loads(out)
    assert code == 0 and data["kind"] == "teacher" and data["metrics"]["dev"]["examples"] == 48

    # A second run to the same place needs --force; the first bundle is untouched.
    code, _, err = run(capsys, "teacher", str(path), "teacher.cache_logits=false")
    assert code == 2 and "already exists" in err and "--force" in err

    weights = bundle_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    code, out, err = run(capsys, "inspect", str(bundle_dir))
    assert code == 2 and out == "" and "model.safetensors: truncated" in err and "Traceback" not in err


def test_inspect_not_a_bundle(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "inspect", str(tmp_path))
    assert code == 2 and "not an edgekd bundle (manifest.json is missing)" in err


def test_teacher_bad_data_exits_2_without_output(capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_encoder: Path) -> None:
    data = tmp_path / "data"
    testing.write_rows(data / "train.csv", [{"text": "a", "label": 0}])
    testing.write_rows(data / "dev.csv", [{"text": "a", "label": 0}])
    path = write_recipe(tmp_path, testing.tiny_recipe(data, tiny_encoder, tmp_path / "run"))
    code, _, err = run(capsys, "teacher", str(path))
    assert code == 2 and "missing column(s) 'sentence'" in err
    assert not (tmp_path / "run" / "teacher").exists()


def test_distill_verb(capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_encoder: Path, single_task: Path) -> None:
    raw = testing.tiny_recipe(single_task, tiny_encoder, tmp_path / "run", train={"epochs": 1})
    path = write_recipe(tmp_path, raw)
    code, out, err = run(capsys, "distill", str(path))
    assert code == 2 and "has no students; add a `students:` section" in err

    raw["students"] = testing.tiny_students()
    path = write_recipe(tmp_path, raw)
    code, _, err = run(capsys, "distill", str(path), "--student", "bilstm")
    assert code == 2 and "teacher" in err and "no such directory" in err, "no teacher bundle yet"
    assert run(capsys, "teacher", str(path))[0] == 0
    code, _, err = run(capsys, "distill", str(path), "-o", str(tmp_path / "x"))
    assert code == 2 and "-o names one bundle but 2 students" in err
    code, out, err = run(capsys, "distill", str(path), "--student", "bilstm", "students.bilstm.stages.0.train.epochs=1")
    assert code == 0, err
    assert f"student bilstm: {tmp_path / 'run' / 'bilstm'}" in out and "agreement with the teacher" in out
    code, out, _ = run(capsys, "inspect", str(tmp_path / "run" / "bilstm"))
    assert code == 0 and "(student, torch" in out and "family bilstm" in out
    code, out, _ = run(capsys, "inspect", "--table", str(tmp_path / "run" / "teacher"), str(tmp_path / "run" / "bilstm"))
    rows = out.strip().splitlines()
    assert code == 0 and len(rows) == 4 and rows[0].startswith("| bundle | kind | model | parameters | dev accuracy")
    assert "| teacher | bert 2L/32 |" in rows[2] and "| student | bilstm 16x2 |" in rows[3]


def test_every_verb_has_a_handler() -> None:
    from edgekd.verbs import HANDLERS

    verbs = {name.split()[0] for name in HANDLERS}
    assert verbs == set(VERBS), verbs ^ set(VERBS)


def test_flags_left_out_take_the_configs_own_defaults(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """No shadow defaults: export and bench flags default to None, the verb passes only the flags given, and the help
    shows the config field's default (read from it, not written twice)."""
    import edgekd.benchmarks.bench
    import edgekd.export.stage
    from edgekd.cli import build_parser
    from edgekd.config import BenchConfig, ExportConfig
    from edgekd.errors import ConfigError

    parser = build_parser()
    export_args = parser.parse_args(["export", "B", "--to", "onnx"])
    assert (export_args.opset, export_args.buckets, export_args.parity_samples) == (None, None, None)
    bench_args = parser.parse_args(["bench", "B", "-o", "out"])
    assert all(getattr(bench_args, key) is None for key in ("target", "threads", "queries", "seconds", "texts", "reference"))
    bench_help = parser._subparsers._group_actions[0].choices["bench"].format_help()
    assert f"from the config, {BenchConfig.model_fields['texts'].default}" in " ".join(bench_help.split())

    seen: dict[str, object] = {}

    def stop(key: str) -> object:
        def record(*args: object, **kwargs: object) -> object:
            seen[key] = args[1]
            raise ConfigError("stopped by the test")
        return record

    monkeypatch.setattr(edgekd.benchmarks.bench, "bench", stop("bench"))
    monkeypatch.setattr(edgekd.export.stage, "export", stop("export"))
    assert run(capsys, "bench", "B", "-o", str(tmp_path), "--texts", "30")[0] == 2
    assert seen["bench"] == BenchConfig(reference=None, texts=30)
    assert run(capsys, "export", "B", "--to", "tflite", "--buckets", "16,32")[0] == 2
    assert seen["export"] == ExportConfig(format="tflite", buckets=[16, 32])
