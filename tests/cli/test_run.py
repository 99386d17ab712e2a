"""`edgekd run`: a tiny recipe end to end through the CLI: every stage, the cache, a kill and a resume, the gate's exit
code. One scenario, in order, because each step starts from what the previous one left."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edgekd import testing
from edgekd.bundle import Bundle
from edgekd.cli import main

STEPS = ["teacher", "distill tinybert", "distill bilstm", "export teacher-onnx", "export tinybert-onnx",
         "quantize tinybert-int8", "export bilstm-onnx", "bench", "gate"]


def step_lines(out: str) -> dict[str, str]:
    """The last state line of each step: `cached: ...`, `done in ...`, `PASS in ...`."""
    lines = {}
    for line in out.splitlines():
        if line.startswith("[") and "]" in line:
            rest = line.split("]", 1)[1].strip()
            title = next((s for s in sorted(STEPS, key=len, reverse=True) if rest.startswith(s + " ")), None)
            if title:
                lines[title] = rest[len(title):].strip()
    return lines


def cached(out: str) -> set[str]:
    return {title for title, state in step_lines(out).items() if state.startswith("cached")}


def _run_until(recipe: Path, ready: Callable[[str], bool], what: str) -> str:
    """Start `edgekd run` in a real process and SIGKILL it as soon as `ready(stdout so far)`; its stderr (the log)."""
    process = subprocess.Popen([sys.executable, "-m", "edgekd.cli", "run", str(recipe)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    deadline = time.monotonic() + 180
    while not ready("".join(lines)) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    alive = process.poll() is None
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    log = process.stderr.read()  # type: ignore[union-attr]
    assert alive, f"the run ended before it could be killed {what}: {''.join(lines)}{log[-2000:]}"
    return log


def test_run_end_to_end_cache_kill_resume_and_gate(tmp_path: Path, tiny_encoder: Path, single_task: Path,
                                                   capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edgekd")
    recipe = testing.tiny_run_recipe(tmp_path, tiny_encoder, single_task)
    out = tmp_path / "run"

    # 1. Killed (SIGKILL) in the middle of the teacher's fine-tune, once a checkpoint exists: no bundle is left.
    _run_until(recipe, lambda _: (out / ".teacher.checkpoint" / "state.json").is_file(), "mid fine-tune")
    assert not (out / "teacher").exists()

    # 2. The next run resumes the fine-tune from that checkpoint and makes everything; the gate passes.
    assert main(["run", str(recipe)]) == 0
    first = capsys.readouterr()
    assert "resumed from" in caplog.text and "checkpoint" in caplog.text, caplog.text[-3000:]
    assert set(step_lines(first.out)) == set(STEPS) and not cached(first.out), first.out
    for name in ("teacher", "tinybert", "bilstm", "teacher-onnx", "tinybert-onnx", "tinybert-int8", "bilstm-onnx"):
        Bundle.open(out / name)  # complete and verified
    report = out / "report"
    assert {"report.json", "report.md", "report.html", "gate.xml", "gate.md", "run.json"} <= {p.name for p in report.iterdir()}
    assert "speed-up vs teacher" in first.out and f"report: {report / 'report.html'}" in first.out
    assert "<h2>Gate: PASS</h2>" in (report / "report.html").read_text(encoding="utf-8")  # the verdict at the page's top

    # 3. Again: every stage is skipped, the gate's verdict is kept.
    assert main(["run", str(recipe)]) == 0
    again = capsys.readouterr().out
    assert cached(again) == set(STEPS), again

    # 4. Another quantization method: quantize, bench and gate run again, nothing else.
    method = "artifacts.tinybert-int8.quantize.method=onnx-static"
    assert main(["run", str(recipe), method]) == 0
    changed = capsys.readouterr().out
    assert set(STEPS) - cached(changed) == {"quantize tinybert-int8", "bench", "gate"}, changed
    assert 'quantize.method "onnx-dynamic" -> "onnx-static"' in changed
    assert Bundle.open(out / "tinybert-int8").manifest.architecture.quantize["method"] == "onnx-static"

    # 5. A budget the models miss: only the gate runs; exit code 1, the failing check named.
    assert main(["run", str(recipe), method, "gate.models.tinybert-int8.max_bytes=1000"]) == 1
    failed = capsys.readouterr().out
    assert set(STEPS) - cached(failed) == {"gate"}, failed
    assert "FAIL         tinybert-int8 size" in failed and "gate: FAIL" in failed
    assert "<h2>Gate: FAIL</h2>" in (report / "report.html").read_text(encoding="utf-8")

    # 6. A bundle made by a single verb with the recipe's config counts as finished (the previous run's is replaced).
    assert main(["quantize", str(out / "tinybert-onnx"), "--method", "onnx-dynamic", "-o", str(out / "tinybert-int8"), "--force"]) == 0
    capsys.readouterr()
    assert main(["run", str(recipe)]) == 0
    adopted = capsys.readouterr().out
    assert "quantize tinybert-int8" in cached(adopted) and "bench" not in cached(adopted), adopted


def test_run_refuses_a_second_run_on_the_same_folder(tmp_path: Path, tiny_encoder: Path, single_task: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import fcntl

    recipe = testing.tiny_run_recipe(tmp_path, tiny_encoder, single_task)
    (tmp_path / "run").mkdir()
    with open(tmp_path / "run" / ".run.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert main(["run", str(recipe)]) == 2
    assert "another `edgekd run` is writing to" in capsys.readouterr().err
    assert not (tmp_path / "run" / "teacher").exists()


def test_a_run_killed_in_each_stage_leaves_no_partial_bundle_and_resumes(tmp_path: Path, tiny_encoder: Path, single_task: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    recipe = testing.tiny_run_recipe(tmp_path, tiny_encoder, single_task)
    out = tmp_path / "run"

    def partial(name: str) -> Callable[[], bool]:
        return lambda _: any(out.glob(f".{name}.partial-*"))

    # Killed mid-training of a student (a checkpoint exists), then while each kind of bundle is being written.
    _run_until(recipe, lambda _: (out / ".tinybert.work" / "stage0.checkpoint" / "state.json").is_file(), "while distilling")
    assert not (out / "tinybert").exists() and Bundle.open(out / "teacher")
    log = _run_until(recipe, partial("tinybert-onnx"), "while exporting")
    assert "resumed from" in log and not (out / "tinybert-onnx").exists()
    _run_until(recipe, partial("tinybert-int8"), "while quantizing")
    assert not (out / "tinybert-int8").exists() and Bundle.open(out / "tinybert-onnx")
    _run_until(recipe, lambda stdout: re.search(r"] bench +running", stdout) is not None, "while benchmarking")
    assert "bench" not in json.loads((out / "report" / "run.json").read_text() if (out / "report" / "run.json").is_file() else "{}")

    # The next run finishes what was left and keeps what was done; nothing half-written remains.
    assert main(["run", str(recipe)]) == 0
    done = capsys.readouterr().out
    assert set(STEPS) - cached(done) == {"bench", "gate"}, done
    for name in ("teacher", "tinybert", "bilstm", "teacher-onnx", "tinybert-onnx", "tinybert-int8", "bilstm-onnx"):
        Bundle.open(out / name)
    assert not [p.name for p in out.iterdir() if ".partial-" in p.name or ".old-" in p.name]
    assert json.loads((out / "report" / "report.json").read_text())["models"]
