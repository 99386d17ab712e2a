"""The machine edgekd runs on: a temporary work directory and a fresh Python process per run."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import Target, TargetError


class LocalTarget(Target):
    name = "local"
    latency_source = "measured_host"

    def __init__(self) -> None:
        # Made by the first push, so a target that is created and then never used (a later argument was refused
        # before its `with` block) leaves no empty folder in the temporary directory; `cleanup` removes it.
        self._workdir: Path | None = None

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="edgekd-target-"))
        return self._workdir

    def push(self, local: Path) -> str:
        destination = self.workdir / local.name
        if local.is_dir():
            shutil.copytree(local, destination)
        else:
            shutil.copy2(local, destination)
        return str(destination)

    def run(self, args: list[str], timeout: float) -> str:
        command = [sys.executable, "-m", "edgekd.runtime.child", *args]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise TargetError(f"local: the run did not finish within {timeout:.0f} s") from None
        if done.returncode != 0:
            raise TargetError(f"local: the run failed (exit {done.returncode}): {done.stderr.strip()[-800:]}")
        return done.stdout

    def fetch(self, remote: str, local: Path) -> None:
        shutil.copy2(remote, local)

    def cleanup(self) -> None:
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
