"""`qemu-aarch64://ROOTFS[?cpu=MODEL]`: an emulated arm64 machine, a Debian root filesystem run through qemu user
emulation.

ROOTFS is made by `edgekd target setup qemu-aarch64 ROOTFS` (runtime/targets/qemu_setup.py). Each target gets a fresh
work directory under ROOTFS/tmp; the child runs as

    chroot ROOTFS /usr/bin/qemu-aarch64-static -cpu cortex-a76 /opt/edgekd-venv/bin/python -m edgekd.runtime.child ...

with argument lists (no shell) and a clean environment. qemu is named explicitly, so running needs no binfmt_misc
registration on the host (only the setup does, for debootstrap's second stage). Nothing is mounted: the child's one
use of /proc (the CPU model in /proc/cpuinfo) is optional, and under qemu-user /proc/cpuinfo would describe the x86
host, not the emulated CPU. Timings are `emulated`: they say nothing about a real arm64 device.

The CPU model decides which kernels the backends pick, as on a device: the default, Cortex-A76 (Raspberry Pi 5,
RK3588), has NEON and dot-product instructions. qemu's own default (`max`) also offers SVE and SME, and ONNX Runtime's
SVE/SME kernels run about 20x slower under emulation than its NEON ones (7.5 s against 0.45 s for one 16-token query
of a 4-layer TinyBERT, 1.7 ms on the x86 host), so `cpu=max` is for checking those kernels, not for everyday checks.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import parse_qs

from edgekd.errors import ConfigError

from . import Target, TargetError

logger = logging.getLogger(__name__)

SCHEME = "qemu-aarch64://"
# Every component: letters, digits, _ . + - (no "..", no ".", no empty component, no trailing slash).
_ROOTFS = re.compile(r"^(/[A-Za-z0-9_.+-]+)+$")
MARKER = "etc/edgekd-target.json"
QEMU = "/usr/bin/qemu-aarch64-static"
VENV_PYTHON = "/opt/edgekd-venv/bin/python"
# Inside the chroot: nothing of the host's environment leaks in.
CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SETUP_HINT = "make one with `edgekd target setup qemu-aarch64 DIR` (as root)"
# qemu 7.2's arm64 CPU models (`qemu-aarch64-static -cpu help`).
CPUS = ("cortex-a35", "cortex-a53", "cortex-a57", "cortex-a72", "cortex-a76", "neoverse-n1", "a64fx", "max")
DEFAULT_CPU = "cortex-a76"


def check_rootfs_path(path: str) -> str:
    """`path` if it is a plain absolute directory path (no `..`, `.`, `//`, quotes, spaces or shell characters)."""
    if not _ROOTFS.match(path) or any(part in (".", "..") for part in path.split("/")):
        raise ConfigError(
            f"qemu-aarch64 root filesystem {path!r}: give an absolute path of letters, digits, _ . + - "
            "without '.' or '..' components or a trailing slash, e.g. qemu-aarch64:///srv/edgekd-arm64"
        )
    return path


def chroot_env(**extra: str) -> dict[str, str]:
    """A clean environment for a process in the chroot (the host's variables stay out)."""
    env = {"PATH": CHROOT_PATH, "HOME": "/root", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "TOKENIZERS_PARALLELISM": "false"}
    return {**env, **extra}


class QemuTarget(Target):
    latency_source = "emulated"

    def __init__(self, rootfs: str, cpu: str = DEFAULT_CPU) -> None:
        check_rootfs_path(rootfs)
        if cpu not in CPUS:
            raise ConfigError(f"qemu-aarch64 cpu {cpu!r} is unknown; valid: {', '.join(CPUS)}")
        root = Path(rootfs)
        marker = root / MARKER
        if not root.is_dir():
            raise ConfigError(f"qemu-aarch64 root filesystem {rootfs} does not exist; {SETUP_HINT}")
        if not marker.is_file():
            raise ConfigError(f"{rootfs} is not a finished edgekd arm64 root filesystem (no /{MARKER}); {SETUP_HINT}")
        try:
            self.facts = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{rootfs}/{MARKER} is unreadable ({exc}); run the setup again into an empty directory") from None
        missing = [p for p in (QEMU, VENV_PYTHON) if not (root / p.lstrip("/")).exists()]
        if missing:
            raise ConfigError(f"{rootfs} lacks {', '.join(missing)}; {SETUP_HINT} into an empty directory")
        # Work only with the real location, and only if ROOTFS/tmp is a directory inside it (not a link out of it).
        self.rootfs = root.resolve()
        tmp = self.rootfs / "tmp"
        if tmp.is_symlink() or not tmp.is_dir():
            raise ConfigError(f"{rootfs}/tmp is not a plain directory; {SETUP_HINT} into an empty directory")
        self.cpu = cpu
        self.name = f"{SCHEME}{rootfs}" + (f"?cpu={cpu}" if cpu != DEFAULT_CPU else "")
        self.workdir: Path | None = None  # on the host: ROOTFS/tmp/edgekd.XXXX
        self._archive: str | None = None  # in the chroot: the pushed edgekd wheel

    @classmethod
    def from_url(cls, url: str) -> QemuTarget:
        rootfs, _, query = url.removeprefix(SCHEME).partition("?")
        options = parse_qs(query, keep_blank_values=True, strict_parsing=False) if query else {}
        unknown = sorted(set(options) - {"cpu"})
        if not url.startswith(SCHEME) or unknown or any(len(v) != 1 for v in options.values()):
            raise ConfigError(
                f"target {url!r}: write {SCHEME}ROOTFS[?cpu=MODEL], e.g. {SCHEME}/srv/edgekd-arm64?cpu=cortex-a72"
                + (f" (unknown options: {', '.join(unknown)})" if unknown else "")
            )
        return cls(rootfs, options.get("cpu", [DEFAULT_CPU])[0])

    # ---- the four steps ---------------------------------------------------------------------------------------

    def push(self, local: Path) -> str:
        destination = self._workdir() / local.name
        try:
            if local.is_dir():
                shutil.copytree(local, destination, symlinks=False)
            else:
                shutil.copy2(local, destination)
        except OSError as exc:
            raise TargetError(f"{self.name}: could not copy {local} into the root filesystem: {exc}") from None
        return self._inside(destination)

    def run(self, args: list[str], timeout: float) -> str:
        _need_root(self.name)
        if self._archive is None:
            from .package import runtime_archive

            self._archive = self.push(runtime_archive())
        command = ["chroot", str(self.rootfs), QEMU, "-cpu", self.cpu, VENV_PYTHON, "-m", "edgekd.runtime.child", *args]
        logger.debug("%s: %s", self.name, command)
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False,
                                  env=chroot_env(PYTHONPATH=self._archive))
        except subprocess.TimeoutExpired:
            raise TargetError(f"{self.name}: the run did not finish within {timeout:.0f} s (under emulation a model runs "
                              "a few hundred times slower than on the host: raise --timeout)") from None
        if done.returncode != 0:
            raise TargetError(f"{self.name}: the run failed (exit {done.returncode}): {done.stderr.strip()[-800:]}")
        return done.stdout

    def fetch(self, remote: str, local: Path) -> None:
        workdir = self._workdir()
        source = self.rootfs / remote.lstrip("/")
        # The chroot runs as root: never follow a link it may have left out of the work directory.
        if source.is_symlink() or not source.resolve().is_relative_to(workdir):
            raise TargetError(f"{self.name}: {remote} is not a file in the work directory {self._inside(workdir)}")
        try:
            shutil.copyfile(source, local, follow_symlinks=False)
        except OSError as exc:
            raise TargetError(f"{self.name}: could not fetch {remote}: {exc}") from None

    def cleanup(self) -> None:
        if self.workdir is None:
            return
        workdir, self.workdir, self._archive = self.workdir, None, None
        try:
            shutil.rmtree(workdir)
        except OSError as exc:
            logger.warning("%s: could not remove %s: %s", self.name, workdir, exc)

    # ---- helpers ----------------------------------------------------------------------------------------------

    def _workdir(self) -> Path:
        if self.workdir is None:
            _need_root(self.name)
            try:
                self.workdir = Path(tempfile.mkdtemp(prefix="edgekd.", dir=self.rootfs / "tmp")).resolve()
            except OSError as exc:
                raise TargetError(f"{self.name}: could not make a work directory in {self.rootfs / 'tmp'}: {exc}") from None
            self.workdir.chmod(0o755)
        return self.workdir

    def _inside(self, host_path: Path) -> str:
        """The path a process in the chroot sees for a host path under ROOTFS."""
        return "/" + str(host_path.relative_to(self.rootfs))


def _need_root(name: str) -> None:
    if os.geteuid() != 0:
        raise TargetError(f"{name}: chroot needs root; run edgekd as root (or with sudo)")
