"""No traceback reaches the user: every verb, run against a table of failures of the files and the machine around it
(an unreadable file, a full or read-only disk, a file where a folder belongs, an output that is a file, an exception
no check foresaw, a lack of memory), prints one line naming the file and what edgekd was doing, and exits 2."""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from edgekd import testing
from edgekd.bundle import Bundle
from edgekd.cli import main

# Each fault makes the first matching call fail the way the operating system (or Python) would.
FAULTS: dict[str, tuple[tuple[str, ...], Callable[[str], BaseException]]] = {
    # Reading a bundle's files: every verb that opens a bundle hashes its files first.
    "unreadable": (("edgekd.bundle.sha256_file",), lambda path: PermissionError(errno.EACCES, "Permission denied", path)),
    # Making a written file or bundle appear: the last step of every writer.
    "disk full": (("os.replace", "os.rename"), lambda path: OSError(errno.ENOSPC, "No space left on device", path)),
    "read-only": (("os.replace", "os.rename"), lambda path: OSError(errno.EROFS, "Read-only file system", path)),
    "bug": (("edgekd.bundle.parse_manifest",), lambda path: TypeError("'NoneType' object is not subscriptable")),
    "memory": (("edgekd.bundle.parse_manifest",), lambda path: MemoryError()),
}


@pytest.fixture(scope="module")
def bundles(untrained_onnx: dict[str, Bundle], tmp_path_factory: pytest.TempPathFactory, tiny_encoder: Path,
            single_task: Path) -> dict[str, Path]:
    """An ONNX bundle, its torch parent, an archive of it, a report and a budget, and a recipe of the tiny teacher."""
    onnx = untrained_onnx["tinybert-single"]
    root = tmp_path_factory.mktemp("errors")
    recipe = root / "tiny.yaml"
    raw = testing.tiny_recipe(single_task, tiny_encoder, root / "run", train={"epochs": 1, "max_steps": 2})
    recipe.write_text(yaml.safe_dump({**raw, "teacher": {**raw["teacher"], "cache_logits": False}}), encoding="utf-8")
    assert main(["pack", str(onnx.path), str(root / "bundle.tar.gz")]) == 0
    report = root / "report.json"
    report.write_text(json.dumps({"schema_version": 1}), encoding="utf-8")
    budget = root / "budget.yaml"
    budget.write_text(yaml.safe_dump({"default": {"max_latency_ratio": 2.0}}), encoding="utf-8")
    assert onnx.manifest.parent is not None
    return {"onnx": onnx.path, "torch": Path(onnx.manifest.parent.path), "archive": root / "bundle.tar.gz",
            "report": report, "budget": budget, "recipe": recipe}


def _argv(verb: str, paths: dict[str, Path], out: Path) -> list[str]:
    onnx, torch = str(paths["onnx"]), str(paths["torch"])
    return {
        "inspect": ["inspect", onnx],
        "predict": ["predict", onnx, "a good film"],
        "export": ["export", torch, "--to", "onnx", "--parity-samples", "4", "-o", str(out)],
        "quantize": ["quantize", onnx, "--method", "onnx-dynamic", "--eval-samples", "4", "-o", str(out)],
        "prune": ["prune", torch, "--method", "magnitude", "--sparsity", "0.5", "-o", str(out)],
        "pack": ["pack", onnx, str(out) + ".tar.gz"],
        "import": ["import", str(paths["archive"]), "-o", str(out)],
        "target check": ["target", "check", onnx, "--target", "local", "--samples", "2"],
        "bench": ["bench", onnx, "-o", str(out), "--texts", "4"],
        "teacher": ["teacher", str(paths["recipe"]), "-o", str(out)],
    }[verb]


def _failing(real: Callable[..., object], make: Callable[[str], BaseException], fault: str, ours: list[Path]) -> Callable[..., object]:
    def failing(*args: object, **kwargs: object) -> object:
        path = str(args[-1]) if args else "?"
        # Fail on edgekd's own files only, not on what the libraries write to their caches.
        if fault in ("bug", "memory") or any(str(p) in path for p in ours):
            raise make(path)
        return real(*args, **kwargs)

    return failing


CASES = [
    *((verb, "unreadable") for verb in ("inspect", "predict", "export", "quantize", "prune", "pack", "target check", "bench")),
    *((verb, "disk full") for verb in ("teacher", "export", "quantize", "pack")),
    *((verb, "read-only") for verb in ("prune", "import")),
    *((verb, fault) for verb in ("inspect", "predict", "import") for fault in ("bug", "memory")),
]


@pytest.mark.parametrize(("verb", "fault"), CASES, ids=[f"{v}-{f}" for v, f in CASES])
def test_a_failing_machine_is_one_line_and_exit_2(bundles: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str], verb: str, fault: str) -> None:
    targets, make = FAULTS[fault]
    for target in targets:
        module_name, _, attribute = target.rpartition(".")
        module = sys.modules[module_name] if module_name in sys.modules else __import__(module_name, fromlist=[attribute])
        monkeypatch.setattr(module, attribute, _failing(getattr(module, attribute), make, fault, [tmp_path, *bundles.values()]))
    capsys.readouterr()
    code = main(["-q", *_argv(verb, bundles, tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    # The error is the last thing printed: one message (a bundle's check may list several files, one per line).
    message = err[err.index(f"edgekd {verb}: error: "):] if f"edgekd {verb}: error: " in err else ""
    assert message and message.count("error: ") == 1, err
    expected = {"unreadable": "Permission denied", "disk full": "No space left on device [ENOSPC]",
                "read-only": "Read-only file system [EROFS]", "bug": "unexpected TypeError", "memory": "ran out of memory"}[fault]
    assert expected in message, message
    if fault in ("unreadable", "disk full", "read-only"):
        # Names the file.
        assert str(tmp_path) in message or any(str(p) in message for p in bundles.values()), message
    # Nothing half-written is left at the output.
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.tar.gz").exists()


def test_outputs_that_are_files_or_under_files(bundles: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine\n", encoding="utf-8")
    a_dir = tmp_path / "folder"
    a_dir.mkdir()
    cases = [
        ["pack", str(bundles["onnx"]), str(a_file / "x.tar.gz")],               # a folder of the output is a file
        ["pack", str(bundles["onnx"]), str(a_dir), "--force"],                   # the archive is an existing folder
        ["import", str(bundles["archive"]), "-o", str(a_file / "bundle")],
        ["import", str(bundles["archive"]), "-o", str(a_file), "--force"],       # a user's file is never replaced
        ["quantize", str(bundles["onnx"]), "--method", "onnx-dynamic", "-o", str(a_file), "--force"],
        ["gate", str(a_dir), "--budget", str(bundles["budget"])],                # a folder where a file is read
    ]
    for argv in cases:
        capsys.readouterr()
        code = main(["-q", *argv])
        err = capsys.readouterr().err
        assert code == 2 and "Traceback" not in err, (argv, err)
        assert f"edgekd {argv[0]}: error: " in err, (argv, err)
    assert a_file.read_text(encoding="utf-8") == "mine\n" and a_dir.is_dir()


def test_a_file_size_limit_is_one_line_in_a_real_process(bundles: dict[str, Path], tmp_path: Path) -> None:
    """A real write failure of the operating system: a process may write no file over 64 kB (`ulimit -f`), so packing
    a bundle (a larger archive) fails with EFBIG in the middle of writing, as a full disk would."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel stops the process instead of failing the write
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))

    out = tmp_path / "big.tar.gz"
    done = subprocess.run([sys.executable, "-m", "edgekd.cli", "pack", str(bundles["onnx"]), str(out)], capture_output=True,
                          text=True, timeout=120, preexec_fn=limit, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "File too large [EFBIG]" in done.stderr and "ulimit -f" in done.stderr
    assert not out.exists() and not list(tmp_path.glob(".big.tar.gz*")), list(tmp_path.iterdir())


def test_sigterm_unwinds_and_exits_143(tmp_path: Path, tiny_encoder: Path, single_task: Path) -> None:
    """SIGTERM in the middle of a stage: the process says so, exits 143, and leaves no partial bundle."""
    raw = testing.tiny_recipe(single_task, tiny_encoder, tmp_path / "run", train={"epochs": 50, "checkpoint_every": 2})
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(raw), encoding="utf-8")
    child = subprocess.Popen([sys.executable, "-m", "edgekd.cli", "teacher", str(recipe)], stderr=subprocess.PIPE, text=True)
    try:
        # Wait until training has started (its first checkpoint exists), then stop it.
        deadline = 120.0
        while not list(tmp_path.glob("run/**/*checkpoint*")) and deadline > 0 and child.poll() is None:
            deadline -= 0.2
            subprocess.run(["sleep", "0.2"], check=True)
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 143, err
    assert "edgekd teacher: terminated" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "teacher").exists()
    assert not list((tmp_path / "run").glob(".teacher.partial-*"))
