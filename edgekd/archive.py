"""A bundle as one file: `pack` writes a verified bundle into a .tar.gz or .zip; `unpack` (`edgekd import`) reads
one back.

An archive is untrusted input. Before a byte is written, `unpack` reads the member table and refuses names that
could land outside the destination (absolute, `..`, backslashes), anything but regular files and folders (symbolic
and hard links, devices, FIFOs), more members or more bytes than the limits, and members the archive's manifest does
not list. Members are then streamed into a temporary folder beside the destination with their sizes counted as they
are read, every file is checked against the manifest's sha256, and the bundle is renamed into place: an archive that
fails any check leaves nothing behind.
"""

from __future__ import annotations

import gzip
import logging
import lzma
import os
import shutil
import stat
import struct
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from edgekd.bundle import MANIFEST, Bundle, parse_manifest
from edgekd.errors import BundleError
from edgekd.writer import BundleWriter, check_output

logger = logging.getLogger(__name__)

MAX_BYTES = 8 << 30  # all members together, uncompressed (a BERT-base teacher bundle is about 0.5 GB)
MAX_MEMBERS = 10_000
MAX_MANIFEST_BYTES = 16 << 20
_CHUNK = 1 << 20
# What the readers raise on damaged or truncated input (not OSError at large: a full disk is not a damaged archive).
_BROKEN = (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, gzip.BadGzipFile, lzma.LZMAError, NotImplementedError)
Reader = Callable[["Member"], IO[bytes]]


@dataclass(frozen=True)
class Member:
    """One archive entry as both formats describe it: its name, declared size, and whether it is a plain file."""

    name: str
    size: int
    kind: str  # "file", "dir", or what it is instead ("symbolic link", "hard link", "device", ...)


def pack(bundle_path: str | os.PathLike[str], archive: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write the verified bundle at `bundle_path` into `archive` (.tar.gz, .tgz or .zip), under one top folder named
    after the bundle. Only the manifest and the files it lists are packed."""
    target = Path(archive).absolute()
    kind = _kind_from_suffix(target)
    _check_archive_output(target, overwrite)
    bundle = Bundle.open(bundle_path)
    top = bundle.path.absolute().name
    names = [MANIFEST, *sorted(bundle.manifest.files)]
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(handle)
    try:
        if kind == "tar":
            with tarfile.open(temporary, "w:gz") as tar:
                for name in names:
                    tar.add(bundle.path / name, arcname=f"{top}/{name}", recursive=False, filter=_plain)
        else:
            with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                for name in names:
                    zf.write(bundle.path / name, arcname=f"{top}/{name}")
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def unpack(archive: str | os.PathLike[str], destination: str | os.PathLike[str] | None = None, *, overwrite: bool = False,
           max_bytes: int = MAX_BYTES, max_members: int = MAX_MEMBERS) -> Bundle:
    """Check and extract a bundle archive to `destination` (default: the archive's top folder name, in the current
    directory); the bundle is verified before it appears there."""
    source = Path(archive)
    if not source.is_file():
        raise BundleError(f"{source}: no such file. Give the path of a bundle archive (.tar.gz or .zip) made by `edgekd pack`.")
    if destination is not None:
        check_output(destination, overwrite=overwrite)
    with _opened(source, max_members) as (members, read):
        top = _check_members(source, members, max_bytes, max_members)
        target = Path(destination) if destination is not None else _default_destination(source, top)
        check_output(target, overwrite=overwrite)
        manifest_name = f"{top}/{MANIFEST}" if top else MANIFEST
        manifest = parse_manifest(_read_all(read, members[manifest_name], MAX_MANIFEST_BYTES, source),
                                  where=f"{source}:{manifest_name}")
        listed = {f"{top}/{name}" if top else name for name in [MANIFEST, *manifest.files]}
        files = [m for m in members.values() if m.kind == "file"]  # in archive order: extracting needs no seeking back
        names = {m.name for m in files}
        if names - listed:
            raise BundleError(f"{source}: holds files its manifest does not list ({', '.join(sorted(names - listed)[:5])}); refusing it.")
        if listed - names:
            raise BundleError(f"{source}: lacks files its manifest lists ({', '.join(sorted(listed - names)[:5])}): the archive is incomplete.")
        free = shutil.disk_usage(target.absolute().parent if target.absolute().parent.exists() else Path.cwd()).free
        needed = sum(m.size for m in files)
        if needed > free:
            raise BundleError(f"{source}: needs {needed:,} bytes unpacked but only {free:,} are free at {target.absolute().parent}.")
        with BundleWriter(target, overwrite=overwrite) as writer:
            for member in files:
                path = writer.path / (member.name[len(top) + 1:] if top else member.name)
                path.parent.mkdir(parents=True, exist_ok=True)
                with read(member) as stream, open(path, "wb") as out:
                    _copy(stream, out, member, source)
            bundle = writer.commit_existing()
    logger.info("imported %s into %s (%d files, %s bytes)", source, bundle.path, len(files), f"{needed:,}")
    return bundle


def _kind_from_suffix(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".tar.gz", ".tgz")):
        return "tar"
    if name.endswith(".zip"):
        return "zip"
    raise BundleError(f"{path}: unknown archive type; name it .tar.gz, .tgz or .zip.")


def _check_archive_output(target: Path, overwrite: bool) -> None:
    """An archive is written where nothing is, or (with --force) over a regular file; never over a folder or a link."""
    refuse = "refusing to replace it, with or without --force. Choose another archive path."
    if target.is_symlink():
        raise BundleError(f"{target}: is a symbolic link (to {os.readlink(target)}); {refuse}")
    if target.exists() and not target.is_file():
        raise BundleError(f"{target}: is a {'folder' if target.is_dir() else 'special file'}, not an archive; {refuse}")
    if target.exists() and not overwrite:
        raise BundleError(f"{target}: already exists. Choose another archive path or pass --force to replace it.")


def _default_destination(source: Path, top: str) -> Path:
    """Where `edgekd import` puts a bundle without -o: its top folder's name, else the archive's name without its
    suffix, in the current directory; a name that is no folder name (`..tar.gz` gives `.`) is refused."""
    name = top or _stem(source)
    if name in ("", ".", "..") or "/" in name or "\\" in name:
        raise BundleError(
            f"{source}: cannot name the imported bundle after the archive ({name!r} is not a folder name); "
            "give its output path with -o."
        )
    return Path(name)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".tar.gz", ".tgz", ".zip"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _plain(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Packed members carry no owner, group or times from this machine."""
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o644
    return info


@contextmanager
def _opened(source: Path, max_members: int) -> Iterator[tuple[dict[str, Member], Reader]]:
    """The member table of a tar (any compression) or zip archive, and a function opening a member for reading. The
    type is read from the content, not the name. Members are counted as they are read: an archive of more than
    `max_members` is refused after reading one more, not after building a table of all of them."""
    try:
        if zipfile.is_zipfile(source):
            _refuse_many(source, _zip_entries(source, max_members), max_members)
            with zipfile.ZipFile(source) as zf:
                infos = zf.infolist()
                members = _table(source, [_zip_member(i) for i in infos])
                by_name = {i.filename.rstrip("/") or i.filename: i for i in infos}
                yield members, lambda m: zf.open(by_name[m.name])
        elif tarfile.is_tarfile(source):
            with tarfile.open(source, "r:*") as tar:
                infos = []
                # Reads the whole archive once (a truncated one fails here), one header at a time.
                while (info := tar.next()) is not None:
                    infos.append(info)
                    _refuse_many(source, len(infos), max_members)
                members = _table(source, [_tar_member(i) for i in infos])
                by_name = {i.name.rstrip("/") or i.name: i for i in infos}
                yield members, lambda m: _tar_stream(tar, by_name[m.name], source)
        else:
            raise BundleError(f"{source}: not a .tar.gz or .zip archive (or a damaged one). Re-download it or pack it again with `edgekd pack`.")
    except _BROKEN as exc:
        raise BundleError(f"{source}: the archive is damaged or truncated ({type(exc).__name__}: {exc}). Re-download it or pack it again.") from None


def _refuse_many(source: Path, count: int, max_members: int) -> None:
    if count > max_members:
        shown = f"{count:,}" if count > max_members + 1 else f"{count:,} or more"
        raise BundleError(f"{source}: {shown} members, more than the {max_members:,} allowed; refusing it.")


# The zip end-of-central-directory record, its zip64 locator and zip64 record (APPNOTE.TXT 4.3.14-4.3.16), and the
# fixed part of a central directory header (4.3.12): signature ... name, extra field and comment lengths.
_EOCD = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_CENTRAL_HEADER = struct.Struct("<4s4B4HL2L5H2L")


def _zip_entries(source: Path, limit: int) -> int:
    """How many entries a zip's central directory holds, counted header by header and stopping past `limit`:
    zipfile would otherwise parse (and keep) every one of them before the count could be checked. The directory is
    found as zipfile finds it (the record at the end, zip64 when present); what is not found here zipfile reports."""
    with open(source, "rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        tail_size = min(size, _EOCD.size + 0xFFFF)  # the record, then a comment of up to 64 kB
        handle.seek(size - tail_size)
        tail = handle.read(tail_size)
        # zipfile's order: the record ending the file (no comment), else the last signature in the tail.
        at = len(tail) - _EOCD.size if tail[-_EOCD.size:-_EOCD.size + 4] == b"PK\x05\x06" else tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) - at < _EOCD.size:
            return 0
        _, _, _, _, declared, directory_size, _, _ = _EOCD.unpack_from(tail, at)
        end = size - tail_size + at  # the central directory ends where the record starts
        if at >= _ZIP64_LOCATOR.size and tail[at - _ZIP64_LOCATOR.size:at - _ZIP64_LOCATOR.size + 4] == b"PK\x06\x07":
            handle.seek(end - _ZIP64_LOCATOR.size - _ZIP64_EOCD.size)
            record = handle.read(_ZIP64_EOCD.size)
            if len(record) == _ZIP64_EOCD.size and record[:4] == b"PK\x06\x06":
                declared, directory_size = _ZIP64_EOCD.unpack(record)[7:9]
                end -= _ZIP64_LOCATOR.size + _ZIP64_EOCD.size
        if declared > limit:
            return declared
        count, position = 0, max(end - directory_size, 0)
        while position < end and count <= limit:
            handle.seek(position)
            header = handle.read(_CENTRAL_HEADER.size)
            if len(header) < _CENTRAL_HEADER.size or header[:4] != b"PK\x01\x02":
                break
            fields = _CENTRAL_HEADER.unpack(header)
            position += _CENTRAL_HEADER.size + fields[12] + fields[13] + fields[14]
            count += 1
        return count


def _table(source: Path, members: list[Member]) -> dict[str, Member]:
    table: dict[str, Member] = {}
    for member in members:
        if member.name in table:
            raise BundleError(f"{source}: member {member.name!r} appears twice; refusing an ambiguous archive.")
        table[member.name] = member
    return table


def _zip_member(info: zipfile.ZipInfo) -> Member:
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        kind = "symbolic link"
    elif info.is_dir():
        kind = "dir"
    elif stat.S_IFMT(mode) and not stat.S_ISREG(mode):  # many writers leave the type bits at 0 for a file
        kind = "special file"
    else:
        kind = "file"
    return Member(info.filename.rstrip("/") if kind == "dir" else info.filename, info.file_size, kind)


def _tar_member(info: tarfile.TarInfo) -> Member:
    kinds = {tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file", tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symbolic link",
             tarfile.LNKTYPE: "hard link", tarfile.CHRTYPE: "device", tarfile.BLKTYPE: "device", tarfile.FIFOTYPE: "FIFO"}
    kind = kinds.get(info.type, "special member")
    return Member(info.name.rstrip("/") if kind == "dir" else info.name, info.size, kind)


def _tar_stream(tar: tarfile.TarFile, info: tarfile.TarInfo, source: Path) -> IO[bytes]:
    stream = tar.extractfile(info)
    if stream is None:
        raise BundleError(f"{source}: member {info.name!r} has no data")
    return stream


def _check_members(source: Path, members: dict[str, Member], max_bytes: int, max_members: int) -> str:
    """Every member a plain file or folder with a safe relative name, within the limits; the bundle's top folder
    ('' when the manifest sits at the root)."""
    if len(members) > max_members:
        raise BundleError(f"{source}: {len(members):,} members, more than the {max_members:,} allowed; refusing it.")
    problems = []
    for member in members.values():
        pure = PurePosixPath(member.name)
        if (not member.name or "\\" in member.name or "\x00" in member.name or pure.is_absolute()
                or any(part in ("..", ".", "") for part in member.name.split("/"))):
            problems.append(f"{member.name!r}: not a plain relative path (it could be written outside the destination)")
        elif member.kind not in ("file", "dir"):
            problems.append(f"{member.name!r}: a {member.kind}; bundles hold regular files only")
        elif member.size > max_bytes:
            problems.append(f"{member.name!r}: {member.size:,} bytes, more than the {max_bytes:,} allowed")
    if problems:
        raise BundleError(f"{source}: refusing the archive:\n" + "\n".join(f"  - {p}" for p in problems[:20]))
    total = sum(m.size for m in members.values() if m.kind == "file")
    if total > max_bytes:
        raise BundleError(f"{source}: {total:,} bytes unpacked, more than the {max_bytes:,} allowed (--max-bytes); refusing it.")
    if MANIFEST in members:
        return ""
    tops = {m.name.split("/", 1)[0] for m in members.values()}
    if len(tops) == 1 and f"{next(iter(tops))}/{MANIFEST}" in members:
        return next(iter(tops))
    raise BundleError(f"{source}: no {MANIFEST} at the top or in a single top folder: not a bundle archive made by `edgekd pack`.")


def _read_all(read: Reader, member: Member, limit: int, source: Path) -> bytes:
    if member.size > limit:
        raise BundleError(f"{source}: {member.name} is {member.size:,} bytes; a manifest is far smaller. Refusing it.")
    with read(member) as stream:
        return stream.read(limit)


def _copy(stream: IO[bytes], out: IO[bytes], member: Member, source: Path) -> None:
    """Copy at most the declared size: a member that holds more than its header says is refused."""
    written = 0
    while chunk := stream.read(_CHUNK):
        written += len(chunk)
        if written > member.size:
            raise BundleError(f"{source}: member {member.name!r} holds more than its declared {member.size:,} bytes; refusing it.")
        out.write(chunk)
    if written != member.size:
        raise BundleError(f"{source}: member {member.name!r} ends after {written:,} of {member.size:,} bytes: the archive is truncated.")
