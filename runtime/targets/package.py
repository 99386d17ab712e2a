"""edgekd as one importable archive for a device: Python imports a pure-Python package straight from a zip on
PYTHONPATH, so a device that already has the runtime's dependencies needs no install."""

from __future__ import annotations

import atexit
import functools
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import edgekd

from . import TargetError

logger = logging.getLogger(__name__)


@functools.cache
def runtime_archive() -> Path:
    """A wheel of edgekd built from this checkout, or (when edgekd is installed from a wheel) a zip of the package."""
    package = Path(edgekd.__file__).resolve().parent
    checkout = package.parent
    out = Path(tempfile.mkdtemp(prefix="edgekd-wheel-"))
    # Built once per process (cached) and used by every target it opens: removed when the process exits.
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    if (checkout / "pyproject.toml").is_file() and (checkout / "runtime").is_dir():
        # Built from a copy of the package's sources: setuptools leaves build/ and *.egg-info where it builds, and a
        # stale build/ of the checkout would put modules deleted since into the device's wheel.
        source = out / "source"
        _copy_sources(checkout, source)
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(source)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
        wheels = sorted(out.glob("edgekd-*.whl"))
        if done.returncode != 0 or not wheels:
            raise TargetError(f"could not build the edgekd wheel for the device: {done.stderr.strip()[-800:]}")
        logger.info("built %s for the device", wheels[0].name)
        return wheels[0]
    archive = out / "edgekd-runtime.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        for path in package.rglob("*.py"):
            bundle.write(path, Path("edgekd") / path.relative_to(package))
    return archive


# What the wheel is built from: pyproject.toml, its readme, and the folders its package-dir maps (the stage folders
# and edgekd/, whose links to them are kept as links).
SOURCE_FILES = ("pyproject.toml", "README.md")
SOURCE_FOLDERS = ("edgekd", "distill", "export", "quantize", "runtime", "benchmarks", "recipes")


def _copy_sources(checkout: Path, source: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "results")
    source.mkdir()
    for name in SOURCE_FILES:
        shutil.copy2(checkout / name, source / name)
    for name in SOURCE_FOLDERS:
        shutil.copytree(checkout / name, source / name, symlinks=True, ignore=ignore)
