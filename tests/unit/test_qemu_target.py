"""qemu-aarch64 target without qemu: hostile or malformed root filesystem paths, missing or unfinished root filesystems,
the work directory's life, fetch never following a link out of it, and the setup's refusals."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from edgekd.cli import main
from edgekd.errors import ConfigError, UnsupportedError
from edgekd.runtime.targets import TargetError, parse_target, qemu
from edgekd.runtime.targets.qemu import MARKER, QEMU, VENV_PYTHON, QemuTarget
from edgekd.runtime.targets.qemu_setup import setup


def _fake_rootfs(root: Path) -> Path:
    """The files QemuTarget checks for, none of them runnable: enough for push, fetch and cleanup."""
    for path in (QEMU, VENV_PYTHON):
        (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / path.lstrip("/")).write_text("")
    (root / "tmp").mkdir()
    (root / "etc").mkdir()
    (root / MARKER).write_text(json.dumps({"schema": 1, "suite": "bookworm", "python": "3.11", "packages": {}, "qemu": "fake"}))
    return root


@pytest.mark.parametrize(
    "url",
    [
        "qemu-aarch64://",
        "qemu-aarch64:///",
        "qemu-aarch64://relative/rootfs",
        "qemu-aarch64:///srv/../etc",
        "qemu-aarch64:///srv/./rootfs",
        "qemu-aarch64:///srv//rootfs",
        "qemu-aarch64:///srv/rootfs/",
        "qemu-aarch64:///srv/root fs",
        "qemu-aarch64:///srv/rootfs;touch /tmp/pwned",
        "qemu-aarch64:///srv/$(touch /tmp/pwned)",
        "qemu-aarch64:///srv/`id`",
        "qemu-aarch64:///srv/rootfs'",
        "qemu-aarch64:///srv/rootfs\ntouch /tmp/pwned",
        "qemu-aarch64:///srv/%2e%2e/etc",
        "qemu-aarch64:///srv/rootfs?python=/bin/sh",
        "qemu-aarch64:///srv/rootfs#x",
        "qemu-aarch64:///srv/rootfs?cpu=max;id",
        "qemu-aarch64:///srv/rootfs?cpu=cortex-a72&cpu=max",
        "qemu-arm64:///srv/rootfs",
    ],
)
def test_hostile_or_malformed_rootfs_paths_are_refused(url: str) -> None:
    with pytest.raises(ConfigError):
        parse_target(url)
    assert not Path("/tmp/pwned").exists()


@pytest.mark.parametrize("query", ["?cpu=", "?cpu=cortex-a99", "?cpu=max%20-L%20/", "?cpu=-L"])
def test_unknown_cpu_models_are_refused(tmp_path: Path, query: str) -> None:
    root = _fake_rootfs(tmp_path / "rootfs")
    with pytest.raises(ConfigError, match="cpu .* is unknown; valid: cortex-a35"):
        parse_target(f"qemu-aarch64://{root}{query}")


def test_the_child_runs_through_qemu_with_an_argument_list_and_a_clean_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _fake_rootfs(tmp_path / "rootfs")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setenv("EDGEKD_SECRET_TOKEN", "host only")
    seen: list[tuple[list[str], dict[str, str]]] = []

    def fake_run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        seen.append((command, kwargs["env"]))  # type: ignore[arg-type]
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(qemu.subprocess, "run", fake_run)
    for query, cpu in (("", "cortex-a76"), ("?cpu=cortex-a72", "cortex-a72")):
        with parse_target(f"qemu-aarch64://{root}{query}") as target:
            assert target.name == f"qemu-aarch64://{root}{query}"
            target._archive = "/tmp/edgekd.x/edgekd.whl"  # type: ignore[attr-defined] - no wheel build here
            target.run(["/tmp/edgekd.x/bundle", "--out", "/tmp/edgekd.x/out.json"], 5)
        command, env = seen[-1]
        assert command == ["chroot", str(root.resolve()), QEMU, "-cpu", cpu, VENV_PYTHON, "-m", "edgekd.runtime.child",
                           "/tmp/edgekd.x/bundle", "--out", "/tmp/edgekd.x/out.json"]
        assert env["PYTHONPATH"] == "/tmp/edgekd.x/edgekd.whl" and "EDGEKD_SECRET_TOKEN" not in env


def test_a_missing_rootfs_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist.*edgekd target setup qemu-aarch64"):
        parse_target(f"qemu-aarch64://{tmp_path}/absent")


def test_an_unfinished_rootfs_is_refused(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    with pytest.raises(ConfigError, match="not a finished"):
        parse_target(f"qemu-aarch64://{tmp_path}")
    _fake_rootfs(tmp_path / "rootfs")
    (tmp_path / "rootfs" / QEMU.lstrip("/")).unlink()
    with pytest.raises(ConfigError, match="lacks /usr/bin/qemu-aarch64-static"):
        parse_target(f"qemu-aarch64://{tmp_path}/rootfs")


def test_a_tmp_link_out_of_the_rootfs_is_refused(tmp_path: Path) -> None:
    root = _fake_rootfs(tmp_path / "rootfs")
    (root / "tmp").rmdir()
    (root / "tmp").symlink_to(tmp_path)
    with pytest.raises(ConfigError, match="tmp is not a plain directory"):
        parse_target(f"qemu-aarch64://{root}")


def test_push_fetch_and_cleanup_stay_inside_the_work_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)  # chroot is never run here: root or not, the same checks apply
    root = _fake_rootfs(tmp_path / "rootfs")
    secret = tmp_path / "host-secret"
    secret.write_text("host only")
    source = tmp_path / "bundle"
    source.mkdir()
    (source / "model.onnx").write_text("model")
    target = parse_target(f"qemu-aarch64://{root}")
    assert isinstance(target, QemuTarget) and target.name == f"qemu-aarch64://{root}" and target.latency_source == "emulated"
    with target:
        inside = target.push(source)
        workdir = target.workdir
        assert workdir is not None and workdir.parent == root / "tmp" and inside == f"/tmp/{workdir.name}/bundle"
        assert (root / inside.lstrip("/") / "model.onnx").read_text() == "model"
        target.fetch(f"{inside}/model.onnx", tmp_path / "fetched")
        assert (tmp_path / "fetched").read_text() == "model"
        # What the chroot (root) leaves behind must not make the host read its own files.
        (workdir / "result.json").symlink_to(secret)
        for remote in (f"/tmp/{workdir.name}/result.json", f"/tmp/{workdir.name}/../../../host-secret", "/etc/edgekd-target.json"):
            with pytest.raises(TargetError, match="not a file in the work directory"):
                target.fetch(remote, tmp_path / "stolen")
        assert not (tmp_path / "stolen").exists()
    assert not workdir.exists() and secret.read_text() == "host only" and (root / "tmp").is_dir()


def test_cleanup_runs_when_the_run_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _fake_rootfs(tmp_path / "rootfs")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    target = parse_target(f"qemu-aarch64://{root}")
    with pytest.raises(TargetError, match="chroot needs root"), target:
        target.push(tmp_path / "rootfs" / MARKER)
        assert len(list((root / "tmp").iterdir())) == 1
        monkeypatch.setattr(os, "geteuid", lambda: 1000)
        target.run(["x"], 5)
    assert list((root / "tmp").iterdir()) == []
    with pytest.raises(TargetError, match="chroot needs root"), target:
        target.push(tmp_path / "rootfs" / MARKER)


def test_cli_refuses_a_bad_qemu_target(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["target", "check", str(tmp_path / "no-bundle"), "--target", "qemu-aarch64://relative"]) == 2
    assert "absolute path" in capsys.readouterr().err
    assert main(["target", "check", str(tmp_path / "no-bundle"), "--target", "telnet://x"]) == 2
    assert "qemu-aarch64://ROOTFS" in capsys.readouterr().err


def _no_subprocess(*args: object, **kwargs: object) -> None:
    raise AssertionError(f"setup ran a command: {args}")


def test_setup_refuses_before_running_anything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subprocess, "run", _no_subprocess)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "something").write_text("")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(UnsupportedError, match="needs root"):
        setup(busy)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    with pytest.raises(ConfigError, match="not empty and not a finished root filesystem"):
        setup(busy)
    with pytest.raises(ConfigError, match="absolute path of letters"):
        setup(tmp_path / "with space")


def test_setup_on_a_finished_rootfs_does_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    root = _fake_rootfs(tmp_path / "rootfs")
    monkeypatch.setattr(subprocess, "run", _no_subprocess)
    facts, done = setup(root)
    assert not done and facts["suite"] == "bookworm"
    assert main(["target", "setup", "qemu-aarch64", str(root)]) == 0
    assert "already a finished arm64 bookworm root filesystem; nothing done" in capsys.readouterr().out
