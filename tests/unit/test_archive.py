"""Shipping a bundle as one file: `edgekd pack` and `edgekd import`, and every hostile archive refused before a byte
lands (path traversal, links, devices, oversized or unlisted members, damage)."""

from __future__ import annotations

import io
import json
import stat
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from edgekd.archive import pack, unpack
from edgekd.bundle import Bundle
from edgekd.cli import main
from edgekd.errors import BundleError
from edgekd.testing import fake_bundle

Member = tuple[str, bytes | None, str]  # name, data (None for a folder or a link), kind: file, dir, symlink, hardlink, fifo, device


@pytest.fixture
def bundle(tmp_path: Path) -> Bundle:
    return fake_bundle(tmp_path / "src" / "tiny")


def members_of(bundle: Bundle, top: str = "tiny") -> list[Member]:
    names = ["manifest.json", *sorted(bundle.manifest.files)]
    return [(f"{top}/{name}" if top else name, (bundle.path / name).read_bytes(), "file") for name in names]


def write_tar(path: Path, members: list[Member]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data, kind in members:
            info = tarfile.TarInfo(name)
            types = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
                     "fifo": tarfile.FIFOTYPE, "device": tarfile.CHRTYPE}
            info.type = types[kind]
            if kind in ("symlink", "hardlink"):
                info.linkname = "/etc/passwd"
            info.size = len(data) if data is not None else 0
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def write_zip(path: Path, members: list[Member]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data, kind in members:
            info = zipfile.ZipInfo(name)
            if kind == "symlink":
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                data = b"/etc/passwd"
            zf.writestr(info, data or b"")
    return path


def nothing_written(root: Path, destination: Path) -> bool:
    leftovers = [p.name for p in root.iterdir() if ".partial" in p.name]
    return not destination.exists() and not leftovers and not Path("/tmp/pwned").exists()


@pytest.mark.parametrize("suffix", [".tar.gz", ".zip"])
def test_pack_then_import_round_trip(bundle: Bundle, tmp_path: Path, suffix: str) -> None:
    archive = pack(bundle.path, tmp_path / "shipped" / f"tiny{suffix}")
    imported = unpack(archive, tmp_path / "out" / "tiny")
    assert imported.sha256 == bundle.sha256 and Bundle.open(imported.path).manifest == bundle.manifest
    for name in bundle.manifest.files:
        assert (imported.path / name).read_bytes() == (bundle.path / name).read_bytes()
    with pytest.raises(BundleError, match="already exists"):
        pack(bundle.path, archive)
    with pytest.raises(BundleError, match="already exists"):
        unpack(archive, tmp_path / "out" / "tiny")
    assert unpack(archive, tmp_path / "out" / "tiny", overwrite=True).sha256 == bundle.sha256


def test_an_archive_with_the_manifest_at_its_root_imports_too(bundle: Bundle, tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "flat.zip", members_of(bundle, top=""))
    assert unpack(archive, tmp_path / "flat").sha256 == bundle.sha256


HOSTILE: dict[str, Callable[[list[Member]], list[Member]]] = {
    "parent traversal": lambda m: [*m, ("tiny/../../pwned", b"x", "file")],
    "absolute path": lambda m: [*m, ("/tmp/pwned", b"x", "file")],
    "backslash": lambda m: [*m, ("tiny\\..\\pwned", b"x", "file")],
    "dot part": lambda m: [*m, ("tiny/./model.bin", b"x", "file")],
    "symbolic link": lambda m: [*m, ("tiny/link", None, "symlink")],
}
TAR_ONLY: dict[str, Callable[[list[Member]], list[Member]]] = {
    "hard link": lambda m: [*m, ("tiny/hard", None, "hardlink")],
    "FIFO": lambda m: [*m, ("tiny/fifo", None, "fifo")],
    "device": lambda m: [*m, ("tiny/dev", None, "device")],
}
MESSAGES = {"parent traversal": "not a plain relative path", "absolute path": "not a plain relative path",
            "backslash": "not a plain relative path", "dot part": "not a plain relative path",
            "symbolic link": "a symbolic link; bundles hold regular files only", "hard link": "a hard link; bundles hold regular files only",
            "FIFO": "a FIFO; bundles", "device": "a device; bundles"}


@pytest.mark.parametrize("case", [*(("tar", c) for c in [*HOSTILE, *TAR_ONLY]), *(("zip", c) for c in HOSTILE)], ids=str)
def test_hostile_members_are_refused_before_anything_is_written(bundle: Bundle, tmp_path: Path, case: tuple[str, str]) -> None:
    kind, name = case
    members = {**HOSTILE, **TAR_ONLY}[name](members_of(bundle))
    archive = write_tar(tmp_path / "evil.tar.gz", members) if kind == "tar" else write_zip(tmp_path / "evil.zip", members)
    with pytest.raises(BundleError, match=MESSAGES[name]):
        unpack(archive, tmp_path / "dest")
    assert nothing_written(tmp_path, tmp_path / "dest")


def test_oversized_and_too_many_members_are_refused(bundle: Bundle, tmp_path: Path) -> None:
    archive = pack(bundle.path, tmp_path / "tiny.tar.gz")
    with pytest.raises(BundleError, match="more than the 1,000 allowed"):
        unpack(archive, tmp_path / "dest", max_bytes=1000)
    with pytest.raises(BundleError, match="members, more than the 3 allowed"):
        unpack(archive, tmp_path / "dest", max_members=3)
    # A compression bomb: 64 MB of zeros in a 64 kB zip is refused from its header, before inflating anything.
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data, _ in members_of(bundle):
            zf.writestr(name, b"\x00" * (64 << 20) if name.endswith("model.bin") else data)
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(BundleError, match="'tiny/model.bin': 67,108,864 bytes, more than the 10,000,000 allowed"):
        unpack(bomb, tmp_path / "dest", max_bytes=10_000_000)
    assert nothing_written(tmp_path, tmp_path / "dest")


def test_a_member_larger_than_its_header_says_is_refused(bundle: Bundle, tmp_path: Path) -> None:
    liar = write_zip(tmp_path / "liar.zip", members_of(bundle))
    raw = bytearray(liar.read_bytes())
    entry = raw.find(b"PK\x01\x02")
    while raw[entry + 46: entry + 46 + len(b"tiny/model.bin")] != b"tiny/model.bin":
        entry = raw.find(b"PK\x01\x02", entry + 4)
    raw[entry + 20: entry + 28] = (100).to_bytes(4, "little") * 2  # compressed and uncompressed size in the directory
    liar.write_bytes(bytes(raw))
    with pytest.raises(BundleError, match="damaged"):
        unpack(liar, tmp_path / "dest")
    assert nothing_written(tmp_path, tmp_path / "dest")


def test_unlisted_missing_or_altered_files_are_refused(bundle: Bundle, tmp_path: Path) -> None:
    members = members_of(bundle)
    cases = {
        "holds files its manifest does not list": [*members, ("tiny/extra.py", b"import os", "file")],
        "lacks files": [m for m in members if m[0] != "tiny/model.bin"],
        "altered, its sha256 differs": [(n, b"\x00" * len(d) if n.endswith("model.bin") else d, k) for n, d, k in members],  # type: ignore[arg-type]
        "appears twice": [*members, members[1]],
        "no manifest.json": [m for m in members if not m[0].endswith("manifest.json")],
        "invalid manifest|not valid UTF-8 JSON": [(n, b"{" if n.endswith("manifest.json") else d, k) for n, d, k in members],
    }
    for message, case in cases.items():
        with pytest.raises(BundleError, match=message):
            unpack(write_tar(tmp_path / "case.tar.gz", case), tmp_path / "dest")
        assert nothing_written(tmp_path, tmp_path / "dest"), message


@pytest.mark.parametrize("damage", ["truncated", "not an archive", "empty"])
def test_damaged_archives_get_a_clear_error(bundle: Bundle, tmp_path: Path, damage: str) -> None:
    archive = pack(bundle.path, tmp_path / "tiny.tar.gz")
    raw = archive.read_bytes()
    archive.write_bytes({"truncated": raw[: len(raw) // 2], "not an archive": b"<html>404</html>" * 100, "empty": b""}[damage])
    with pytest.raises(BundleError, match="the archive is damaged or truncated|not a .tar.gz or .zip archive"):
        unpack(archive, tmp_path / "dest")
    assert nothing_written(tmp_path, tmp_path / "dest")


def test_cli_pack_and_import(bundle: Bundle, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    archive = tmp_path / "tiny.zip"
    assert main(["pack", str(bundle.path), str(archive)]) == 0
    monkeypatch.chdir(tmp_path)
    assert main(["import", str(archive)]) == 0  # default destination: the archive's top folder, here
    assert "all hashes verified" in capsys.readouterr().out and Bundle.open(tmp_path / "tiny").sha256 == bundle.sha256
    assert main(["import", str(archive)]) == 2
    assert "already exists" in capsys.readouterr().err
    evil = write_tar(tmp_path / "evil.tar.gz", [*members_of(bundle), ("../pwned", b"x", "file")])
    assert main(["import", str(evil), "-o", str(tmp_path / "evil")]) == 2
    assert "'../pwned': not a plain relative path" in capsys.readouterr().err and nothing_written(tmp_path, tmp_path / "evil")
    assert main(["import", str(tmp_path / "missing.zip")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["pack", str(bundle.path), str(tmp_path / "tiny.rar")]) == 2
    assert "name it .tar.gz, .tgz or .zip" in capsys.readouterr().err
    assert json.loads((tmp_path / "tiny" / "manifest.json").read_text())["kind"] == "student"


def test_a_tar_of_many_members_is_refused_after_reading_one_more_than_the_limit(bundle: Bundle, tmp_path: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # The 1.9 MB tar.gz of 300k members cost 15 s and 242 MB before the count was checked; here 10,000 empty
    # members against a limit of 50: the headers read are counted.
    many = tmp_path / "many.tar.gz"
    with tarfile.open(many, "w:gz") as tar:
        for name, data, _ in members_of(bundle):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for number in range(10_000):
            tar.addfile(tarfile.TarInfo(f"tiny/pad/{number}"), io.BytesIO(b""))
    reads = []
    original = tarfile.TarFile.next
    monkeypatch.setattr(tarfile.TarFile, "next", lambda self: reads.append(1) or original(self))
    with pytest.raises(BundleError, match="51 or more members, more than the 50 allowed; refusing it"):
        unpack(many, tmp_path / "dest", max_members=50)
    assert len(reads) <= 55, f"{len(reads)} member headers read"  # 51, and the first again by the type probe and open
    assert nothing_written(tmp_path, tmp_path / "dest")


@pytest.mark.parametrize("declared", ["true", "understated"])
def test_a_zip_of_many_members_is_refused_before_zipfile_parses_its_directory(bundle: Bundle, tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch, declared: str) -> None:
    many = write_zip(tmp_path / "many.zip", [*members_of(bundle), *((f"tiny/pad/{n}", b"", "file") for n in range(5_000))])
    if declared == "understated":  # the end record claims 6 entries: the directory itself is counted, header by header
        raw = bytearray(many.read_bytes())
        end = raw.rfind(b"PK\x05\x06")
        raw[end + 8: end + 12] = (6).to_bytes(2, "little") * 2
        many.write_bytes(bytes(raw))
    parsed = []
    original = zipfile.ZipInfo.__init__

    def counting(self: zipfile.ZipInfo, *args: object, **kwargs: object) -> None:
        parsed.append(1)
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(zipfile.ZipInfo, "__init__", counting)
    message = "5,005 members" if declared == "true" else "51 or more members"
    with pytest.raises(BundleError, match=f"{message}, more than the 50 allowed; refusing it"):
        unpack(many, tmp_path / "dest", max_members=50)
    assert parsed == [], "zipfile read no entry of the central directory"
    assert nothing_written(tmp_path, tmp_path / "dest")
