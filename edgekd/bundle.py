"""The bundle: the directory every stage reads and writes, and the manifest that describes it.

A bundle is immutable once written. `BundleWriter` builds it in a temporary directory beside the target and renames
it into place, so a crash never leaves a half-written bundle where a finished one is expected. `Bundle.open` checks the
schema version and the size and sha256 of every listed file, and names the file that is missing or altered.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import uuid
from datetime import datetime, UTC
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgekd import __version__
from edgekd.errors import BundleError
from edgekd.hashing import sha256_file

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
CARD = "README.md"
GOLDEN = "golden.npz"
# transformers' model config; also beside exported models, where optimum's ORTModel reads it.
HF_CONFIG = "config.json"
# How many dev examples (spread over the length range) a bundle keeps as golden inputs.
GOLDEN_EXAMPLES = 8


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FileEntry(_Frozen):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)


class TensorSpec(_Frozen):
    name: str
    dtype: str
    shape: list[int | str]


class TaskInfo(_Frozen):
    name: str
    kind: Literal["single", "pair"]
    problem: Literal["classification", "regression"]
    labels: list[str]
    text_columns: list[str]

    @property
    def columns(self) -> int:
        """Texts per example: 1 for single sentences, 2 for pairs."""
        return 2 if self.kind == "pair" else 1


class TokenizerInfo(_Frozen):
    type: Literal["wordpiece", "word"]
    max_length: int = Field(gt=0)
    lowercase: bool
    path: str = "tokenizer"


class Parent(_Frozen):
    path: str
    sha256: str


class ProducedBy(_Frozen):
    stage: str
    config: dict[str, Any]
    seed: int | None = None
    git_commit: str | None = None
    time: str


class Manifest(_Frozen):
    schema_version: int
    edgekd_version: str
    kind: Literal["teacher", "student"]
    format: Literal["torch", "onnx", "tflite"]
    task: TaskInfo
    architecture: dict[str, Any]
    files: dict[str, FileEntry]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    tokenizer: TokenizerInfo
    parent: Parent | None = None
    produced_by: ProducedBy
    metrics: dict[str, Any] = {}
    golden: str | None = None


class Bundle:
    """An opened, verified bundle directory."""

    def __init__(self, path: Path, manifest: Manifest, sha256: str) -> None:
        self.path = path
        self.manifest = manifest
        # Identity of the whole bundle: the manifest lists every file's hash, so hashing it covers them all.
        self.sha256 = sha256

    def __repr__(self) -> str:
        m = self.manifest
        return f"Bundle({str(self.path)!r}, kind={m.kind}, format={m.format}, task={m.task.name})"

    def file(self, name: str) -> Path:
        """Return the path of a file the manifest lists; a name it does not list is a BundleError."""
        if name not in self.manifest.files:
            listed = ", ".join(sorted(self.manifest.files)) or "none"
            raise BundleError(f"{self.path}: the bundle has no file {name!r} (files listed: {listed})")
        return self.path / name

    @property
    def tokenizer_dir(self) -> Path:
        return self.path / self.manifest.tokenizer.path

    def read_golden(self) -> tuple[Any, list[tuple[str, ...]]]:
        """golden.npz's arrays (inputs, logits, ...) and its texts as tuples of 1 or 2 strings."""
        if not self.manifest.golden:
            raise BundleError(f"{self.path}: has no golden inputs; re-create it with the stage that wrote it")
        golden = np.load(self.file(self.manifest.golden))
        return golden, [tuple(str(t) for t in row) for row in golden["texts"]]

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, verify: bool = True) -> Bundle:
        """Open a bundle, checking its schema version and (with `verify`) every file's size and sha256."""
        root = Path(path)
        if not root.exists():
            raise BundleError(f"{root}: no such directory. Give the path of a bundle written by an edgekd stage.")
        if not root.is_dir():
            raise BundleError(f"{root}: is a file, not a bundle directory. Give the directory that holds {MANIFEST}.")
        manifest_path = root / MANIFEST
        if not manifest_path.is_file():
            raise BundleError(
                f"{root}: not an edgekd bundle ({MANIFEST} is missing). Bundles are written by `edgekd teacher`, "
                "`edgekd distill`, `edgekd export`, ...; if a stage was interrupted, run it again."
            )
        raw_bytes = manifest_path.read_bytes()
        manifest = parse_manifest(raw_bytes, where=manifest_path)
        if verify:
            problems = [p for name, entry in manifest.files.items() if (p := _check_file(root, name, entry))]
            if problems:
                lines = "\n".join(f"  - {p}" for p in problems)
                raise BundleError(
                    f"{root}: the bundle does not match its manifest:\n{lines}\n"
                    "A bundle is never modified in place: re-create it with the stage that produced it."
                )
            _warn_unlisted(root, manifest)
        return cls(root, manifest, hashlib.sha256(raw_bytes).hexdigest())


def parse_manifest(raw: bytes, *, where: Path | str = MANIFEST) -> Manifest:
    """Parse and validate manifest bytes; every problem becomes one BundleError naming the field."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        # ValueError: UnicodeDecodeError, JSONDecodeError, and an integer past Python's 4,300-digit limit;
        # RecursionError: arrays or objects nested deeper than the interpreter's recursion limit.
        raise BundleError(f"{where}: not valid UTF-8 JSON ({exc}). The manifest is damaged: re-create the bundle.") from None
    if not isinstance(data, dict):
        raise BundleError(f"{where}: expected a JSON object, found {type(data).__name__}. Re-create the bundle.")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BundleError(
            f"{where}: schema_version {version!r} is not one this edgekd ({__version__}) reads "
            f"(it reads {SCHEMA_VERSION}). Use the edgekd version that wrote the bundle, or re-create it."
        )
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        lines = "\n".join(
            f"  - {'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in exc.errors()
        )
        raise BundleError(f"{where}: invalid manifest:\n{lines}\nRe-create the bundle with its stage.") from None
    for name in manifest.files:
        _check_member_name(name, where)
    return manifest


def _check_member_name(name: str, where: Path | str) -> None:
    """Reject file names that could reach outside the bundle (absolute, `..`, backslashes, empty parts)."""
    pure = PurePosixPath(name)
    if not name or "\\" in name or pure.is_absolute() or any(part in ("..", ".", "") for part in name.split("/")):
        raise BundleError(f"{where}: file name {name!r} is not a plain relative path inside the bundle; refusing it.")


def _check_file(root: Path, name: str, entry: FileEntry) -> str | None:
    path = root / name
    if path.is_symlink():
        return f"{name}: is a symbolic link; bundles hold regular files only"
    if not path.is_file():
        return f"{name}: missing (the manifest lists it, {entry.bytes} bytes)"
    size = path.stat().st_size
    if size != entry.bytes:
        state = "truncated" if size < entry.bytes else "grown"
        return f"{name}: {state}, {size} bytes on disk but {entry.bytes} in the manifest"
    if sha256_file(path) != entry.sha256:
        return f"{name}: altered, its sha256 differs from the manifest's"
    return None


def _warn_unlisted(root: Path, manifest: Manifest) -> None:
    listed = set(manifest.files) | {MANIFEST}
    extra = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and str(p.relative_to(root)) not in listed)
    if extra:
        logger.warning("%s: files not listed in the manifest are ignored: %s", root, ", ".join(extra[:10]))


def write_golden(
    directory: Path,
    inputs: dict[str, np.ndarray],
    logits: np.ndarray,
    texts: list[tuple[str, ...]],
    parent_logits: np.ndarray | None = None,
) -> str:
    """Write golden.npz: a few real encoded inputs (as the model takes them), the model's logits, and the texts
    (examples, 1 or 2 columns) so a later stage or a device can check its tokenizer and outputs against them; an
    exported or quantized model also keeps its parent's logits."""
    extra = {} if parent_logits is None else {"parent_logits": parent_logits}
    np.savez(directory / GOLDEN, **inputs, logits=logits, texts=np.asarray(texts, dtype=str), **extra)
    return GOLDEN


def copy_support_files(parent: Bundle, directory: Path) -> None:
    """Carry the parent's tokenizer, and its config.json when it has one, into a new bundle directory."""
    shutil.copytree(parent.tokenizer_dir, directory / parent.manifest.tokenizer.path)
    if HF_CONFIG in parent.manifest.files:
        shutil.copy2(parent.file(HF_CONFIG), directory / HF_CONFIG)


def git_commit() -> str | None:
    """The commit of the edgekd checkout running this code, when it runs from one."""
    source = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def produced_by(stage: str, config: dict[str, Any], seed: int | None) -> ProducedBy:
    """The lineage record for a bundle a stage writes now."""
    return ProducedBy(
        stage=stage,
        config=config,
        seed=seed,
        git_commit=git_commit(),
        time=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def write_text_atomic(path: Path, text: str) -> None:
    """Write a text file so that it appears whole or not at all: written beside it under a name of this process,
    then renamed (a kill leaves at most a `NAME.partial-PID` file, never a half-written NAME)."""
    partial = path.with_name(f"{path.name}.partial-{os.getpid()}")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


class BundleWriter:
    """Build a bundle in a temporary directory beside `target`; `commit` makes it appear atomically.

    Usage::

        with BundleWriter(out) as writer:
            model.save_pretrained(writer.path)
            bundle = writer.commit(kind="teacher", format="torch", ...)

    Leaving the block without `commit` (an exception, a kill) leaves no bundle at `target`; a killed process may leave
    a `.NAME.partial-*` directory (or, killed while replacing, the previous bundle as `.NAME.old-*`), which the next
    writer to the same target removes.
    """

    def __init__(self, target: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        self.target = Path(target).absolute()
        self.overwrite = overwrite
        self.path = self.target.parent / f".{self.target.name}.partial-{uuid.uuid4().hex[:8]}"
        self._committed = False

    def __enter__(self) -> BundleWriter:
        if self.target.exists() and not self.overwrite:
            raise BundleError(f"{self.target}: already exists. Choose another output path or pass --force to replace it.")
        self.target.parent.mkdir(parents=True, exist_ok=True)
        stale_dirs = [*self.target.parent.glob(f".{self.target.name}.partial-*"), *self.target.parent.glob(f".{self.target.name}.old-*")]
        for stale in stale_dirs:
            logger.info("removing %s left by an interrupted run", stale)
            shutil.rmtree(stale, ignore_errors=True)
        self.path.mkdir()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._committed:
            shutil.rmtree(self.path, ignore_errors=True)

    def commit(self, **fields: Any) -> Bundle:
        """Hash every file, write the model card and manifest, fsync, and rename into place."""
        from edgekd.card import model_card

        header = {"schema_version": SCHEMA_VERSION, "edgekd_version": __version__, **fields}
        # Validate everything but the file table first, so a wrong field fails before the card is written.
        Manifest.model_validate({**header, "files": {}})
        (self.path / CARD).write_text(model_card(Manifest.model_validate({**header, "files": {}})), encoding="utf-8")
        files: dict[str, dict[str, Any]] = {}
        for path in sorted(self.path.rglob("*")):
            if path.is_symlink():
                raise BundleError(f"{path}: a stage wrote a symbolic link into a bundle; bundles hold regular files.")
            if path.is_file() and path.name != MANIFEST:
                _fsync(path)
                name = path.relative_to(self.path).as_posix()
                files[name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
        manifest = Manifest.model_validate({**header, "files": files})
        raw = (manifest.model_dump_json(indent=2) + "\n").encode("utf-8")
        with open(self.path / MANIFEST, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        _fsync_dirs(self.path)
        self._swap_into_place()
        self._committed = True
        return Bundle(self.target, manifest, hashlib.sha256(raw).hexdigest())

    def commit_existing(self) -> Bundle:
        """Put a complete bundle that was copied into `self.path` (its own manifest included, e.g. unpacked from an
        archive) into place, after checking every file against that manifest."""
        copied = Bundle.open(self.path)
        _fsync_dirs(self.path)
        self._swap_into_place()
        self._committed = True
        return Bundle(self.target, copied.manifest, copied.sha256)

    def _swap_into_place(self) -> None:
        old = None
        if self.target.exists():
            old = self.target.parent / f".{self.target.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(self.target, old)
        os.rename(self.path, self.target)
        _fsync(self.target.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dirs(root: Path) -> None:
    for path in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        _fsync(path)
