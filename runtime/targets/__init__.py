"""Where a bundle runs: `local`, `ssh://user@host[:port]`, `qemu-aarch64://ROOTFS` (emulated arm64). One interface:
`push`, `run`, `fetch`, `cleanup` (a target is a context manager: leaving it cleans up, on failure too).

`run_child` pushes a bundle and texts, runs `python -m edgekd.runtime.child` there and fetches its JSON result.
"""

from __future__ import annotations

import json
import logging
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Literal

from edgekd.errors import ConfigError, EdgekdError

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


def run_child(target: Target, bundle: Path, texts: list[tuple[str, ...]], *, threads: int = 1, timeout: float = 600) -> dict[str, Any]:
    """Run the bundle on the target over the golden texts and `texts`; the child's JSON result."""
    with tempfile.TemporaryDirectory() as scratch:
        texts_file = Path(scratch) / "texts.jsonl"
        texts_file.write_text("".join(json.dumps(list(t), ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
        remote_bundle = target.push(bundle)
        remote_texts = target.push(texts_file)
        remote_out = f"{remote_texts}.result.json"
        target.run([remote_bundle, "--out", remote_out, "--texts", remote_texts, "--threads", str(threads)], timeout)
        local_out = Path(scratch) / "result.json"
        target.fetch(remote_out, local_out)
        result = json.loads(local_out.read_text(encoding="utf-8"))
    result["target"] = target.name
    result["latency_source"] = target.latency_source
    return result
