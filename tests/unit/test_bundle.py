"""The bundle contract: round trip, atomic writes, and every kind of damage named on open."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edgekd.bundle import MANIFEST, SCHEMA_VERSION, Bundle, parse_manifest
from edgekd.errors import BundleError
from edgekd.testing import fake_bundle as make_bundle
from edgekd.testing import fake_manifest_fields as manifest_fields
from edgekd.writer import BundleWriter


def test_round_trip(tmp_path: Path) -> None:
    written = make_bundle(tmp_path / "b")
    opened = Bundle.open(tmp_path / "b")
    assert opened.manifest == written.manifest
    assert opened.sha256 == written.sha256
    assert set(opened.manifest.files) == {"model.bin", "vocab.txt", "golden.npz", "README.md"}
    assert opened.manifest.tokenizer.path == "." and opened.manifest.tokenizer.files == ["vocab.txt"]
    assert opened.manifest.schema_version == SCHEMA_VERSION
    assert opened.file("model.bin").read_bytes()[:3] == b"\x00\x01\x02"
    card = (tmp_path / "b" / "README.md").read_text()
    assert "pipeline_tag: text-classification" in card and "accuracy" in card
    assert not list(tmp_path.glob(".b.partial-*")), "the temporary directory was renamed away"


def test_file_not_listed_is_an_error(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b")
    with pytest.raises(BundleError, match="no file 'model.onnx'.*model.bin"):
        bundle.file("model.onnx")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: (p / "model.bin").unlink(), r"model.bin: missing"),
        (lambda p: (p / "model.bin").write_bytes((p / "model.bin").read_bytes()[:100]), r"model.bin: truncated, 100 bytes on disk but 10240"),
        (lambda p: (p / "model.bin").write_bytes((p / "model.bin").read_bytes() + b"x"), r"model.bin: grown"),
        (lambda p: (p / "vocab.txt").write_text("[PAD]\n[UNX]\n"), r"vocab.txt: altered"),
    ],
    ids=["missing", "truncated", "grown", "altered-same-size"],
)
def test_damage_is_named(tmp_path: Path, damage: Any, message: str) -> None:
    make_bundle(tmp_path / "b")
    damage(tmp_path / "b")
    with pytest.raises(BundleError, match=message) as info:
        Bundle.open(tmp_path / "b")
    assert "re-create it" in str(info.value)


def test_every_damaged_file_is_reported_at_once(tmp_path: Path) -> None:
    make_bundle(tmp_path / "b")
    (tmp_path / "b" / "model.bin").unlink()
    (tmp_path / "b" / "golden.npz").write_bytes(b"junk")
    with pytest.raises(BundleError) as info:
        Bundle.open(tmp_path / "b")
    assert "model.bin: missing" in str(info.value) and "golden.npz: truncated" in str(info.value)


def test_symlink_in_place_of_a_file_is_refused(tmp_path: Path) -> None:
    make_bundle(tmp_path / "b")
    outside = tmp_path / "outside.bin"
    (tmp_path / "b" / "model.bin").rename(outside)
    (tmp_path / "b" / "model.bin").symlink_to(outside)
    with pytest.raises(BundleError, match="model.bin: is a symbolic link"):
        Bundle.open(tmp_path / "b")


def edit_manifest(path: Path, change: Any) -> None:
    data = json.loads((path / MANIFEST).read_text())
    change(data)
    (path / MANIFEST).write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(schema_version=99), r"schema_version 99 is not one this edgekd"),
        (lambda d: d.pop("schema_version"), r"schema_version None"),
        (lambda d: d.update(format="coreml"), r"format: Input should be 'torch', 'onnx', 'tflite' or 'executorch'"),
        (lambda d: d["files"].update({"../escape.bin": d["files"]["model.bin"]}), r"'../escape.bin' is not a plain relative path"),
        (lambda d: d["files"].update({"/etc/passwd": d["files"]["model.bin"]}), r"'/etc/passwd' is not a plain relative path"),
        (lambda d: d.update(unknown_field=1), r"unknown_field: Extra inputs are not permitted"),
    ],
    ids=["future-schema", "no-schema", "bad-format", "dotdot", "absolute", "unknown-field"],
)
def test_bad_manifest(tmp_path: Path, change: Any, message: str) -> None:
    make_bundle(tmp_path / "b")
    edit_manifest(tmp_path / "b", change)
    with pytest.raises(BundleError, match=message):
        Bundle.open(tmp_path / "b")


@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe", b"[1, 2]", b""])
def test_unparseable_manifest(raw: bytes) -> None:
    with pytest.raises(BundleError, match="manifest"):
        parse_manifest(raw)


def test_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no such directory"):
        Bundle.open(tmp_path / "nowhere")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(BundleError, match="is a file, not a bundle directory"):
        Bundle.open(tmp_path / "file.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match=r"not an edgekd bundle \(manifest.json is missing\)"):
        Bundle.open(tmp_path / "empty")


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with BundleWriter(tmp_path / "b") as writer:
            (writer.path / "model.bin").write_bytes(b"half")
            raise RuntimeError("stage crashed")
    assert list(tmp_path.iterdir()) == []


def test_invalid_fields_fail_before_anything_appears(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="kind"):
        with BundleWriter(tmp_path / "b") as writer:
            (writer.path / "model.bin").write_bytes(b"x")
            writer.commit(**manifest_fields(kind="professor"))
    assert list(tmp_path.iterdir()) == []


def test_existing_target_needs_overwrite(tmp_path: Path) -> None:
    first = make_bundle(tmp_path / "b")
    with pytest.raises(BundleError, match="already exists.*--force"):
        make_bundle(tmp_path / "b")
    with BundleWriter(tmp_path / "b", overwrite=True) as writer:
        (writer.path / "model.bin").write_bytes(b"new")
        second = writer.commit(**manifest_fields())
    assert second.sha256 != first.sha256
    assert Bundle.open(tmp_path / "b").manifest.files["model.bin"].bytes == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


@pytest.mark.parametrize("left", [".b.partial-deadbeef", ".b.old-deadbeef"])
def test_stale_directories_of_a_killed_writer_are_cleaned(tmp_path: Path, left: str) -> None:
    stale = tmp_path / left
    stale.mkdir()
    (stale / "model.bin").write_bytes(b"from a killed run")
    make_bundle(tmp_path / "b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_writer_refuses_symlinks(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("s")
    with pytest.raises(BundleError, match="symbolic link"):
        with BundleWriter(tmp_path / "b") as writer:
            (writer.path / "link").symlink_to(tmp_path / "secret")
            writer.commit(**manifest_fields())
    assert not (tmp_path / "b").exists()
