"""`edgekd target setup qemu-aarch64 DIR`: a Debian bookworm arm64 root filesystem that runs the edgekd child under
qemu user emulation (runtime/targets/qemu.py).

Steps (each logged, each with a timeout, each named in the error if it fails):
  1. host packages: debootstrap and qemu-user-static, installed with apt-get when missing;
  2. binfmt_misc: debootstrap's second stage, dpkg and `python -m venv` run arm64 programs that start arm64 programs,
     so the kernel must hand arm64 binaries to qemu (registered from qemu-user-static's own binfmt.d file; the `F`
     flag makes it work inside a chroot). Running a bundle later does not need it: the target names qemu itself;
  3. debootstrap, two stages: minbase with python3 and python3-venv, every .deb fetched by the host;
  4. /opt/edgekd-venv, and the runtime's arm64 wheels (numpy, pydantic, onnxruntime, ai-edge-litert, tokenizers, at
     the versions this host has) downloaded by the host's pip and installed offline in the chroot: nothing inside
     the chroot needs the network, DNS or the host's TLS certificates;
  5. an import check through qemu, then DIR/etc/edgekd-target.json with the versions (the mark of a finished DIR).
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from edgekd.errors import ConfigError, UnsupportedError

from . import TargetError
from .qemu import MARKER, QEMU, VENV_PYTHON, check_rootfs_path, chroot_env

logger = logging.getLogger(__name__)

SUITE = "bookworm"
GLIBC_MINOR = 36  # bookworm's glibc 2.36: the newest manylinux tag its wheels may carry
MIRROR = "http://deb.debian.org/debian"
HOST_PACKAGES = {"debootstrap": "/usr/sbin/debootstrap", "qemu-user-static": QEMU}
BINFMT = Path("/proc/sys/fs/binfmt_misc")
BINFMT_CONF = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")
# The runtime's imports (runtime/child.py, runtime/backends.py) by distribution name, and their module names.
RUNTIME = {"numpy": "numpy", "pydantic": "pydantic", "onnxruntime": "onnxruntime", "ai-edge-litert": "ai_edge_litert",
           "tokenizers": "tokenizers"}
WHEELS = "tmp/edgekd-wheels"


def setup(directory: Path, *, mirror: str = MIRROR) -> tuple[dict[str, object], bool]:
    """Make DIR an arm64 root filesystem for `qemu-aarch64://DIR`; (its facts, whether anything was done)."""
    root = Path(check_rootfs_path(os.path.abspath(directory)))
    marker = root / MARKER
    if marker.is_file():
        logger.info("%s is already a finished arm64 root filesystem: nothing to do", root)
        return json.loads(marker.read_text(encoding="utf-8")), False
    if os.geteuid() != 0:
        raise UnsupportedError("the qemu-aarch64 setup needs root (debootstrap, chroot, binfmt_misc): run it as root or with sudo")
    if platform.system() != "Linux":
        raise UnsupportedError(f"the qemu-aarch64 setup needs Linux (binfmt_misc, chroot), not {platform.system()}")
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ConfigError(
            f"{root} is not empty and not a finished root filesystem (no /{MARKER}): choose a new or empty directory, "
            f"or remove this one (an interrupted setup leaves one behind; `findmnt -R {root}` must show nothing first)"
        )
    try:
        facts = _build(root, mirror)
    except (TargetError, OSError) as exc:
        left = f"\n{root} is left as the failed step left it: remove it before setting up again" if root.exists() else ""
        raise TargetError(f"{exc}{left}" if isinstance(exc, TargetError) else f"setup of {root} failed: {exc}{left}") from None
    marker.write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
    logger.info("%s is ready (%.0f s): use --target qemu-aarch64://%s", root, facts["setup_seconds"], root)
    return facts, True


def _build(root: Path, mirror: str) -> dict[str, object]:
    """Every step but the marker; the marker's facts."""
    started = time.monotonic()
    timings: dict[str, float] = {}
    try:
        _host_packages(timings)
        _binfmt(timings)
        root.mkdir(parents=True, exist_ok=True)
        _step(timings, "debootstrap (first stage, downloads)", [
            "debootstrap", "--foreign", "--arch=arm64", "--variant=minbase", "--include=python3,python3-venv",
            SUITE, str(root), mirror,
        ], 1800)
        shutil.copy2(QEMU, root / QEMU.lstrip("/"))
        _step(timings, "debootstrap (second stage, emulated)", ["chroot", str(root), "/debootstrap/debootstrap", "--second-stage"], 3600)
        _step(timings, "python venv", _in_chroot(root, "/usr/bin/python3", "-m", "venv", "/opt/edgekd-venv"), 900)
        pins = _pins()
        python_version = _step(timings, "python version", _in_chroot(root, VENV_PYTHON, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"), 300).strip()
        _download_wheels(timings, root, pins, python_version)
        _step(timings, "pip install (emulated, offline)", _in_chroot(
            root, VENV_PYTHON, "-m", "pip", "install", "--no-index", "--find-links", f"/{WHEELS}", "--no-cache-dir",
            "--disable-pip-version-check", "--no-warn-script-location", "-q", *pins,
        ), 3600)
        probe = "import json, platform, importlib; print(json.dumps({'arch': platform.machine(), 'python': platform.python_version(), " \
                f"'packages': {{m: importlib.import_module(m).__version__ for m in {sorted(RUNTIME.values())!r}}}}}))"
        facts = json.loads(_step(timings, "import check (emulated)", _in_chroot(root, VENV_PYTHON, "-c", probe), 900))
    finally:
        shutil.rmtree(root / WHEELS, ignore_errors=True)
        _unmount_under(root)
    if facts.get("arch") != "aarch64":
        raise TargetError(f"setup step 'import check' saw machine {facts.get('arch')!r}, not aarch64: is qemu really emulating?")
    # The downloaded .debs are not needed any more (apt is never run in the chroot).
    for deb in (root / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    return {
        "schema": 1, "kind": "qemu-aarch64", "suite": SUITE, "mirror": mirror, **facts,
        "python_path": VENV_PYTHON, "qemu": _qemu_version(),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "setup_seconds": round(time.monotonic() - started, 1), "step_seconds": timings,
    }


# ---- steps ------------------------------------------------------------------------------------------------------


def _host_packages(timings: dict[str, float]) -> None:
    missing = [name for name, path in HOST_PACKAGES.items() if not Path(path).exists()]
    if not missing:
        return
    if shutil.which("apt-get") is None:
        raise UnsupportedError(f"{', '.join(missing)} missing and there is no apt-get: install them with your package manager")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    try:
        _step(timings, f"apt-get install {' '.join(missing)}", install, 900, env=env)
    except TargetError:
        logger.info("retrying after apt-get update")
        _step(timings, "apt-get update", ["apt-get", "update"], 900, env=env)
        _step(timings, f"apt-get install {' '.join(missing)}", install, 900, env=env)


def _binfmt(timings: dict[str, float]) -> None:
    """Let the kernel run arm64 programs through qemu (host-wide, until reboot), unless it already does."""
    entry = BINFMT / "qemu-aarch64"
    if not (BINFMT / "register").exists():
        if "binfmt_misc" not in Path("/proc/filesystems").read_text():
            raise UnsupportedError("this kernel has no binfmt_misc: the arm64 root filesystem cannot be bootstrapped here")
        _step(timings, "mount binfmt_misc", ["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], 60)
    if entry.exists():
        if entry.read_text().splitlines()[0].strip() != "enabled":
            entry.write_text("1")
        return
    if not BINFMT_CONF.is_file():
        raise TargetError(f"setup step 'binfmt_misc': {BINFMT_CONF} (from qemu-user-static) is missing; reinstall qemu-user-static")
    rule = next(line for line in BINFMT_CONF.read_text().splitlines() if line.startswith(":"))
    try:
        (BINFMT / "register").write_text(rule)
    except OSError as exc:
        raise TargetError(f"setup step 'binfmt_misc': registering qemu-aarch64 failed: {exc}") from None
    logger.info("registered qemu-aarch64 with binfmt_misc (host-wide until reboot)")


def _pins() -> list[str]:
    """The runtime's distributions at this host's versions, so both sides compute with the same code."""
    pins = []
    for name in RUNTIME:
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pins.append(name)
    return pins


def _download_wheels(timings: dict[str, float], root: Path, pins: list[str], python_version: str) -> None:
    platforms = ["manylinux2014_aarch64", *(f"manylinux_2_{minor}_aarch64" for minor in range(17, GLIBC_MINOR + 1))]
    command = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--python-version", python_version,
               "--implementation", "cp", "-d", str(root / WHEELS), "-q", "--disable-pip-version-check"]
    for tag in platforms:
        command += ["--platform", tag]
    _step(timings, "pip download (arm64 wheels)", [*command, *pins], 1800)


def _in_chroot(root: Path, *words: str) -> list[str]:
    return ["chroot", str(root), QEMU, *words]


def _step(timings: dict[str, float], name: str, command: list[str], timeout: float, env: dict[str, str] | None = None) -> str:
    """Run one step; its stdout, or a TargetError that names the step."""
    logger.info("%s ...", name)
    started = time.monotonic()
    if env is None:
        env = chroot_env() if command[0] == "chroot" else None
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        raise TargetError(f"setup step {name!r} did not finish within {timeout:.0f} s") from None
    except OSError as exc:
        raise TargetError(f"setup step {name!r} could not start: {exc}") from None
    timings[name] = round(time.monotonic() - started, 1)
    logger.debug("%s: stdout %s", name, done.stdout[-4000:])
    if done.returncode != 0:
        detail = (done.stderr.strip() or done.stdout.strip())[-1500:]
        hint = " (check the network: deb.debian.org and pypi.org must be reachable)" if _looks_offline(detail) else ""
        raise TargetError(f"setup step {name!r} failed (exit {done.returncode}){hint}: {detail}")
    logger.info("%s: done in %.0f s", name, timings[name])
    return done.stdout


def _looks_offline(detail: str) -> bool:
    words = ("Temporary failure in name resolution", "Could not resolve", "Connection refused", "Network is unreachable",
             "Failed getting release file", "NewConnectionError", "No matching distribution", "timed out")
    return any(w.lower() in detail.lower() for w in words)


def _unmount_under(root: Path) -> None:
    """Unmount whatever a failed step left mounted inside DIR (debootstrap mounts /proc and /sys), deepest first."""
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    inside = sorted((m for m in mounts if m.startswith(f"{root}/")), key=len, reverse=True)
    for mount in inside:
        done = subprocess.run(["umount", "--lazy", mount], capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            logger.warning("could not unmount %s: %s", mount, done.stderr.strip())


def _qemu_version() -> str:
    done = subprocess.run([QEMU, "--version"], capture_output=True, text=True, timeout=30, check=False)
    return done.stdout.splitlines()[0] if done.returncode == 0 and done.stdout else "unknown"
