"""Where a bundle runs: `local`, `ssh://user@host[:port]`, `qemu-aarch64://ROOTFS` (emulated arm64). One interface:
`push`, `run`, `fetch`, `cleanup` (a target is a context manager: leaving it cleans up, on failure too).

`ChildSession` is the one protocol over it: push the texts and each bundle once, run `python -m edgekd.runtime.child`
in a fresh process per call, fetch its JSON result. `run_child` (golden check and logits) and the benchmark use it.
"""

from __future__ import annotations

import json
import logging
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from edgekd.errors import ConfigError, EdgekdError
from edgekd.runtime.child import texts_file_text

logger = logging.getLogger(__name__)

LatencySource = Literal["measured_host", "measured_device", "emulated"]


class TargetError(EdgekdError):
    """A target could not be reached, refused us, failed or timed out."""


class Target(ABC):
    # Shown in reports: never a credential.
    name: str
    latency_source: LatencySource

    def __enter__(self) -> Target:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    @abstractmethod
    def push(self, local: Path) -> str:
        """Copy a file or a directory into the target's work directory; return its path there."""

    @abstractmethod
    def run(self, args: list[str], timeout: float) -> str:
        """Run `python -m edgekd.runtime.child ARGS` on the target; return its stdout."""

    @abstractmethod
    def fetch(self, remote: str, local: Path) -> None:
        """Copy a file from the target."""

    @abstractmethod
    def cleanup(self) -> None:
        """Remove everything this target put on the device."""


def parse_target(url: str) -> Target:
    """A target from its URL; an unknown scheme is a ConfigError listing the valid ones."""
    if url == "local":
        from .local import LocalTarget

        return LocalTarget()
    if url.startswith("ssh://"):
        from .ssh import SshTarget

        return SshTarget.from_url(url)
    if url.startswith("qemu-aarch64://"):
        from .qemu import QemuTarget

        return QemuTarget.from_url(url)
    raise ConfigError(
        f"target {url!r} is unknown; valid: local, ssh://user@host[:port][?python=PATH&identity=KEY&known_hosts=FILE], "
        "qemu-aarch64://ROOTFS[?cpu=MODEL] (made by `edgekd target setup qemu-aarch64 ROOTFS`)"
    )


class ChildSession:
    """Children on one target over one set of texts: the texts and each bundle pushed once, a fresh child process per
    `run`, its JSON result fetched. A context manager: leaving it removes its local scratch (the target's own work
    directory goes when the target is left)."""

    def __init__(self, target: Target, texts: Sequence[tuple[str, ...]]) -> None:
        self.target = target
        self._scratch = tempfile.TemporaryDirectory(prefix="edgekd-child-")
        self.scratch = Path(self._scratch.name)
        texts_file = self.scratch / "texts.jsonl"
        texts_file.write_text(texts_file_text(texts), encoding="utf-8")
        try:
            # The texts' path on the target; the children's result files are written beside it.
            self.texts = target.push(texts_file)
        except BaseException:
            self._scratch.cleanup()
            raise
        self._pushed: dict[Path, str] = {}
        self._runs = 0

    def __enter__(self) -> ChildSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self._scratch.cleanup()

    def push(self, bundle: Path) -> str:
        """The bundle's path on the target, pushed the first time it is asked for."""
        if bundle not in self._pushed:
            self._pushed[bundle] = self.target.push(bundle)
        return self._pushed[bundle]

    def run(self, args: list[str], timeout: float) -> dict[str, Any]:
        """Run a fresh child with `args` (its `--out` added); its JSON result."""
        self._runs += 1
        remote_out = f"{self.texts}.{self._runs}.json"
        self.target.run([*args, "--out", remote_out], timeout)
        local_out = self.scratch / f"{self._runs}.json"
        self.target.fetch(remote_out, local_out)
        return json.loads(local_out.read_text(encoding="utf-8"))


def run_child(target: Target, bundle: Path, texts: list[tuple[str, ...]], *, threads: int = 1, timeout: float = 600) -> dict[str, Any]:
    """Run the bundle on the target over the golden texts and `texts`; the child's JSON result, with where it ran."""
    with ChildSession(target, texts) as session:
        result = session.run([session.push(bundle), "--texts", session.texts, "--threads", str(threads)], timeout)
    return {**result, "target": target.name, "latency_source": target.latency_source}
