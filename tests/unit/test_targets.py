"""Targets: local and a real OpenSSH server on loopback; hostile names, unknown host keys, hangs, leftovers."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgekd.bundle import Bundle
from edgekd.cli import main
from edgekd.config import ExportConfig
from edgekd.errors import ConfigError
from edgekd.export.stage import export
from edgekd.runtime.child import read_texts_file
from edgekd.runtime.targets import ChildSession, Target, TargetError, parse_target, run_child
from edgekd.runtime.targets.ssh import SshTarget

VENV_PYTHON = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "python")


@pytest.fixture(scope="module")
def onnx_bundle(tiny_bundles: dict[str, Bundle], tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    return export(tiny_bundles["bilstm"].path, ExportConfig(format="onnx"), tmp_path_factory.mktemp("target") / "bilstm-onnx")


def _texts(bundle: Bundle) -> list[tuple[str, ...]]:
    columns = 2 if bundle.manifest.task.kind == "pair" else 1
    return [("a good film",) * columns, ("sad and boring",) * columns]


def _python() -> str:
    import sys

    return VENV_PYTHON if Path(VENV_PYTHON).is_file() else sys.executable


def test_local_target_runs_the_child(onnx_bundle: Bundle) -> None:
    with parse_target("local") as target:
        result = run_child(target, onnx_bundle.path, _texts(onnx_bundle))
        workdir = target.workdir  # type: ignore[attr-defined]
    assert result["golden_max_abs_diff"] < 1e-5 and len(result["logits"]) == 2
    assert result["latency_source"] == "measured_host" and result["machine"]["cores"] >= 1
    assert not Path(workdir).exists()


class _Recording(Target):
    """A target in a local folder whose child echoes its arguments: what the session asks of a target, in order."""

    name = "recording"
    latency_source = "measured_host"

    def __init__(self, root: Path) -> None:
        self.root, self.calls = root, []

    def push(self, local: Path) -> str:
        self.calls.append(("push", local.name))
        (shutil.copytree if local.is_dir() else shutil.copy2)(local, self.root / local.name)
        return str(self.root / local.name)

    def run(self, args: list[str], timeout: float) -> str:
        self.calls.append(("run", args[0]))
        Path(args[args.index("--out") + 1]).write_text(json.dumps({"args": args}), encoding="utf-8")
        return ""

    def fetch(self, remote: str, local: Path) -> None:
        shutil.copy2(remote, local)

    def cleanup(self) -> None:
        pass


def test_a_child_session_pushes_each_bundle_once_and_runs_fresh_children(tmp_path: Path) -> None:
    (tmp_path / "device").mkdir()
    (tmp_path / "bundle").mkdir()
    target = _Recording(tmp_path / "device")
    texts = [("a good\u2028film",), ("sad",)]
    with ChildSession(target, texts) as session:
        first = session.run([session.push(tmp_path / "bundle"), "--texts", session.texts], timeout=5)
        second = session.run([session.push(tmp_path / "bundle"), "--bench"], timeout=5)
        scratch = session.scratch
    assert target.calls == [("push", "texts.jsonl"), ("push", "bundle"), ("run", first["args"][0]), ("run", second["args"][0])]
    # Every child writes its own result file beside the texts; the texts arrive whole.
    assert first["args"][-1] != second["args"][-1] and read_texts_file(Path(session.texts)) == texts
    assert not scratch.exists()


def test_texts_holding_line_separators_reach_the_child_whole(onnx_bundle: Bundle) -> None:
    # JSON keeps U+2028, NEL and form feeds unescaped; the child splits its texts file at "\n" only.
    columns = 2 if onnx_bundle.manifest.task.kind == "pair" else 1
    texts = [("a good\u2028film\x85really\x0c",) * columns, ("sad",) * columns]
    with parse_target("local") as target:
        result = run_child(target, onnx_bundle.path, texts)
    assert len(result["logits"]) == 2


def test_ssh_target_matches_local(onnx_bundle: Bundle, ssh_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with parse_target("local") as local:
        expected = run_child(local, onnx_bundle.path, _texts(onnx_bundle))
    target = parse_target(ssh_server.url(python=_python()))
    with target:
        result = run_child(target, onnx_bundle.path, _texts(onnx_bundle))
        workdir = target.workdir  # type: ignore[attr-defined]
    assert np.allclose(result["logits"], expected["logits"], atol=1e-6) and result["golden_max_abs_diff"] < 1e-5
    assert result["target"] == f"ssh://root@127.0.0.1:{ssh_server.port}" and result["latency_source"] == "measured_device"
    # The work directory is gone from the device, and no credential reached the logs or the result.
    assert subprocess.run(["test", "-e", workdir]).returncode != 0
    private = ssh_server.identity.read_text()
    assert private.splitlines()[1] not in caplog.text and str(ssh_server.identity) not in str(result)


def test_remote_words_reach_the_device_literally(ssh_server: Any, tmp_path: Path) -> None:
    """Behind the strict patterns, every word is quoted: shell syntax in one arrives as text and runs nothing."""
    marker = tmp_path / "pwned"
    hostile = [f"$(touch {marker})", f"`touch {marker}`", f"; touch {marker}", f"' ; touch {marker} '", "a b\tc\nd", "$HOME"]
    target = parse_target(ssh_server.url(python=_python()))
    with target:
        echoed = target._ssh(["printf", "%s\\0", *hostile], timeout=30)  # type: ignore[attr-defined]
    assert echoed.decode().split("\0")[:-1] == hostile and not marker.exists()


def test_an_unknown_host_key_is_refused(onnx_bundle: Bundle, ssh_server: Any, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    target = SshTarget("root", "127.0.0.1", ssh_server.port, python=_python(), identity=str(ssh_server.identity), known_hosts=str(empty))
    with pytest.raises(TargetError, match="host key"), target:
        run_child(target, onnx_bundle.path, _texts(onnx_bundle))


def test_a_hanging_device_times_out_and_is_cleaned(onnx_bundle: Bundle, ssh_server: Any, tmp_path: Path) -> None:
    hang = tmp_path / "hanging-python"
    hang.write_text("#!/bin/sh\nsleep 60\n")
    hang.chmod(0o755)
    target = parse_target(ssh_server.url(python=str(hang)))
    with pytest.raises(TargetError, match="did not finish within 3 s"):
        with target:
            workdir_holder: list[str] = []
            try:
                run_child(target, onnx_bundle.path, _texts(onnx_bundle), timeout=3)
            finally:
                workdir_holder.append(str(target.workdir))  # type: ignore[attr-defined]
    assert workdir_holder[0].startswith("/tmp/edgekd.") and not Path(workdir_holder[0]).exists()


@pytest.mark.parametrize(
    "url",
    [
        "ssh://ro ot@127.0.0.1",
        "ssh://root;touch /tmp/pwned@127.0.0.1",
        "ssh://$(touch /tmp/pwned)@127.0.0.1",
        "ssh://root@127.0.0.1?python=/usr/bin/python3;touch%20/tmp/pwned",
        "ssh://root@127.0.0.1?python=$(id)",
        "ssh://root@127.0.0.1?python=/usr/bin/python3%27%20x",
        "ssh://root@host'name",
        "ssh://root@127.0.0.1:99999",
        "ssh://root@127.0.0.1?shell=/bin/sh",
        "ssh://127.0.0.1",
        "ftp://root@127.0.0.1",
    ],
)
def test_hostile_or_malformed_targets_are_refused_before_anything_runs(url: str) -> None:
    with pytest.raises(ConfigError, match="ssh target|is unknown; valid: local"):
        parse_target(url)
    assert not Path("/tmp/pwned").exists()


def test_cli_target_check(onnx_bundle: Bundle, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["target", "check", str(onnx_bundle.path), "--target", "local", "--samples", "10"]) == 0
    out = capsys.readouterr().out
    assert "agreement with this machine 1.0000" in out and "measured_host" in out
    assert main(["target", "check", str(onnx_bundle.path), "--target", "telnet://x"]) == 2
    assert "valid: local, ssh://" in capsys.readouterr().err


def test_the_child_reads_the_protocol_without_the_configs() -> None:
    """A device may lack PyYAML: the child takes the protocol's minimums from `edgekd.protocol`, not the configs."""
    probe = ("import sys, edgekd.runtime.child, edgekd.runtime.targets; "
             "print(sorted(m for m in ('yaml', 'edgekd.config') if m in sys.modules))")
    done = subprocess.run([_python(), "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
