"""Writing bundles: where a stage may write, one writer per output, and bundles that appear whole or not at all.

`BundleWriter` builds a bundle in a hidden folder beside its target and renames it into place, so a crash never leaves
a half-written bundle where a finished one is expected. `check_output` is the one rule for what an output path may be:
nothing, an empty folder, or (with --force) an edgekd bundle holding only its listed files; never a user's files, `/`,
the home directory, the current directory or its parents.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from edgekd import __version__
from edgekd.bundle import (
    CARD,
    MANIFEST,
    ROOT_LAYOUT,
    SCHEMA_VERSION,
    Bundle,
    Manifest,
    parse_manifest,
    tokenizer_files_in,
)
from edgekd.errors import BundleError
from edgekd.hashing import sha256_file

logger = logging.getLogger(__name__)


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

    What may be at `target` follows `check_output`: nothing, an empty folder, or (with `overwrite`) an edgekd bundle;
    anything else is refused before a byte is written. One writer per target at a time: the writer holds an exclusive
    lock on `.NAME.lock` beside the target from `__enter__` to `__exit__`, and a second one is refused. Leaving the
    block without `commit` (an exception, a kill) leaves no bundle at `target`; a killed process may leave a
    `.NAME.partial-*` directory (or, killed while replacing, the previous bundle as `.NAME.old-*`), which the next
    writer to the same target removes while it holds the lock, so a live build is never mistaken for a stale one.
    """

    def __init__(self, target: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        self.target = Path(target).absolute()
        self.overwrite = overwrite
        self.path = self.target.parent / f".{self.target.name}.partial-{uuid.uuid4().hex[:8]}"
        self._committed = False
        self._lock: _OutputLock | None = None

    def __enter__(self) -> BundleWriter:
        check_output(self.target, overwrite=self.overwrite)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self._lock = _OutputLock(self.target)
        try:
            check_output(self.target, overwrite=self.overwrite)  # again, now that no other writer can change it
            for stale in _leftovers(self.target):
                logger.info("removing %s left by an interrupted run", stale)
                shutil.rmtree(stale, ignore_errors=True)
            self.path.mkdir()
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if not self._committed:
                shutil.rmtree(self.path, ignore_errors=True)
        finally:
            self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def commit(self, **fields: Any) -> Bundle:
        """Hash every file, write the model card and manifest, fsync, and rename into place.

        The tokenizer's files lie at the bundle's root (the Hugging Face layout): whatever `tokenizer.path` and
        `tokenizer.files` the fields carry (a parent's, copied over), the manifest records the root and the tokenizer
        files the stage wrote there (`tokenizer_files_in`)."""
        from edgekd.card import model_card

        tokenizer = fields.get("tokenizer")
        if isinstance(tokenizer, BaseModel):
            tokenizer = tokenizer.model_dump()
        if isinstance(tokenizer, dict):
            fields = {**fields, "tokenizer": {**tokenizer, "path": ROOT_LAYOUT, "files": tokenizer_files_in(self.path)}}
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
        # The build may have taken hours: what is at the target now (a user may have put files into an empty folder
        # meanwhile) is checked again before it is moved aside.
        check_output(self.target, overwrite=self.overwrite)
        old = None
        if self.target.exists():
            old = self.target.parent / f".{self.target.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(self.target, old)
        os.rename(self.path, self.target)
        _fsync(self.target.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def check_output(target: str | os.PathLike[str], *, overwrite: bool, sources: tuple[str | os.PathLike[str], ...] = ()) -> Path:
    """Refuse an output path that a stage must not write, before any work; return it as an absolute path.

    Never an output: `/`, the home directory, the current directory or one of its parents, or one of `sources` (the
    stage's input bundles). An existing path may be an empty folder, or an edgekd bundle (a folder whose manifest.json
    parses) when `overwrite` (--force) is given; a file, a symbolic link or a folder holding anything else is refused
    with or without --force, naming what is there.
    """
    path = _unprotected(target, "writes a bundle there (replacing it would delete everything in it)", "bundle")
    resolved = path.resolve()
    for source in sources:
        if Path(source).resolve() == resolved:
            raise BundleError(f"{path}: is the input bundle; a stage writes a new bundle and never replaces its input. Give another output path.")
    if _existing(path) == "bundle" and not overwrite:
        raise BundleError(f"{path}: already exists. Choose another output path or pass --force to replace it.")
    return path


def check_folder(folder: str | os.PathLike[str]) -> Path:
    """Refuse a folder that must not hold edgekd's outputs (a run's folder, whose stage outputs follow `check_output`):
    `/`, the home directory, the current directory or one of its parents, or a path that is not a folder."""
    path = _unprotected(folder, "uses it as an output folder (its stages would write and replace bundles in it)", "run")
    if path.exists() and not path.is_dir():
        raise BundleError(f"{path}: is a file, not a folder; refusing to use it as an output folder. Choose another path.")
    return path


def _unprotected(target: str | os.PathLike[str], never: str, example: str) -> Path:
    """`target` as an absolute path, unless it is a place edgekd never `never`s: then a BundleError."""
    path = Path(target).absolute()
    where = _protected(path)
    if where:
        raise BundleError(f"{path}: is {where}; edgekd never {never}, with or without --force. Give the path of a new "
                          f"folder, e.g. {path / example}.")
    return path


def _protected(path: Path) -> str | None:
    """What `path` is (resolved, so `.`, `..` and symbolic links count) when it may never be an output, else None."""
    resolved = path.resolve()
    if resolved == Path(resolved.anchor):
        return "the root directory"
    try:
        home: Path | None = Path.home().resolve()
    except (RuntimeError, KeyError):  # no HOME and no passwd entry
        home = None
    if resolved == home:
        return "the home directory"
    try:
        cwd: Path | None = Path.cwd().resolve()
    except OSError:  # the current directory was deleted
        cwd = None
    if cwd is not None and resolved == cwd:
        return "the current directory"
    if cwd is not None and resolved in cwd.parents:
        return "a parent of the current directory"
    return None


def _existing(path: Path) -> Literal["absent", "empty", "bundle"]:
    """What is at an output path when it may be written over; a BundleError naming it when it may not."""
    refuse = "refusing to replace it, with or without --force. Choose another output path."
    if path.is_symlink():
        raise BundleError(f"{path}: is a symbolic link (to {os.readlink(path)}), not an edgekd bundle; {refuse}")
    if not path.exists():
        return "absent"
    if not path.is_dir():
        raise BundleError(f"{path}: is a file ({path.stat().st_size:,} bytes), not an edgekd bundle; {refuse}")
    with os.scandir(path) as scan:
        entries = sorted((e.name + ("/" if e.is_dir(follow_symlinks=False) else "") for e in itertools.islice(scan, _SHOWN_ENTRIES)))
    if not entries:
        return "empty"
    manifest = path / MANIFEST
    if MANIFEST in entries and not manifest.is_symlink():
        with open(manifest, "rb") as handle:
            raw = handle.read(_MAX_MANIFEST_BYTES + 1)
        try:
            if len(raw) > _MAX_MANIFEST_BYTES:
                raise BundleError(f"{manifest}: larger than any manifest ({_MAX_MANIFEST_BYTES:,} bytes)")
            listed = set(parse_manifest(raw, where=manifest).files) | {MANIFEST}
        except BundleError as exc:
            reason = str(exc).splitlines()[0]
            raise BundleError(f"{path}: holds a {MANIFEST} that does not parse ({reason}), so it is not an edgekd bundle; {refuse}") from None
        # A bundle with a user's files added (notes, results) is a bundle no longer: replacing it would delete them.
        added = sorted(name for p in itertools.islice(path.rglob("*"), 100_000)
                       if not p.is_dir() and (name := p.relative_to(path).as_posix()) not in listed)
        if added:
            shown = ", ".join(added[:3]) + (", ..." if len(added) > 3 else "")
            raise BundleError(f"{path}: is an edgekd bundle with {len(added):,} file(s) its manifest does not list ({shown}); "
                              f"{refuse}")
        return "bundle"
    count = f"{len(entries):,}" if len(entries) < _SHOWN_ENTRIES else f"{_SHOWN_ENTRIES:,} or more"
    shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
    noun = "file or folder that is" if len(entries) == 1 else "files or folders that are"
    raise BundleError(f"{path}: holds {count} {noun} not an edgekd bundle ({shown}); {refuse}")


# How many entries of a folder are listed when telling what is there, and the largest manifest worth parsing.
_SHOWN_ENTRIES = 1000
_MAX_MANIFEST_BYTES = 16 << 20


def _leftovers(target: Path) -> list[Path]:
    """The `.NAME.partial-*` and `.NAME.old-*` folders of writers to `target` that were killed (call with the lock held)."""
    prefixes = (f".{target.name}.partial-", f".{target.name}.old-")
    return [
        target.parent / name for name in os.listdir(target.parent)
        if name.startswith(prefixes) and (target.parent / name).is_dir() and not (target.parent / name).is_symlink()
    ]


class _OutputLock:
    """An exclusive, non-blocking flock on `.NAME.lock` beside an output, held by the one process writing it."""

    def __init__(self, target: Path) -> None:
        import fcntl

        self.path = target.parent / f".{target.name}.lock"
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise BundleError(
                    f"{target}: another edgekd process is writing it (it holds {self.path}); wait for it to finish or "
                    "choose another output path."
                ) from None
            except BaseException:
                os.close(fd)
                raise
            # The previous holder removes the file when it is done: a lock on a file no longer at that path guards
            # nothing, so open the path again.
            try:
                current = os.stat(self.path, follow_symlinks=False)
            except FileNotFoundError:
                current = None
            if current is not None and os.path.samestat(os.fstat(fd), current):
                self.fd = fd
                return
            os.close(fd)

    def release(self) -> None:
        # Removed while still held: a process that opened it meanwhile then finds it gone (above) and opens a new one.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.close(self.fd)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dirs(root: Path) -> None:
    for path in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        _fsync(path)
