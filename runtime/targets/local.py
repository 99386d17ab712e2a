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
        self.workdir = Path(tempfile.mkdtemp(prefix="edgekd-target-"))

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
        shutil.rmtree(self.workdir, ignore_errors=True)
