"""The bundle: the directory every stage reads and writes, and the manifest that describes it.

A bundle is immutable once written (`edgekd.writer.BundleWriter` makes it appear whole or not at all). `Bundle.open`
checks the schema version, that every path the manifest names lies inside the bundle, and the size and sha256 of
every listed file, and names the file that is missing or altered.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import re
import shutil
import subprocess
import zipfile
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from edgekd import __version__
from edgekd.errors import BundleError, UnsupportedError
from edgekd.files import read_at_most
from edgekd.hashing import sha256_file
from edgekd.records import Architecture, Metrics

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
CARD = "README.md"
GOLDEN = "golden.npz"
# transformers' model config; also beside exported models, where optimum's ORTModel reads it.
HF_CONFIG = "config.json"
# How many dev examples (spread over the length range) a bundle keeps as golden inputs.
GOLDEN_EXAMPLES = 8
# The longest tokenizer max_length a manifest may give: no family edgekd exports takes longer inputs (ModernBERT's 8,192
# is the longest), and `tokenizers` takes the length as a machine-size integer (a larger one is an OverflowError).
MAX_SEQUENCE_LENGTH = 1 << 16


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

    @field_validator("labels")
    @classmethod
    def _labels_name_the_classes(cls, labels: list[str], info: ValidationInfo) -> list[str]:
        # A classifier's logits have one column per label: with none, `predict` has nothing to name; with duplicates,
        # two classes would share one entry of the probabilities.
        if info.data.get("problem") == "classification" and not labels:
            raise ValueError("is empty; a classification task lists its label names, in id order (e.g. [\"negative\", \"positive\"])")
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ValueError(f"has duplicates {duplicates[:5]}; each class needs its own name")
        return labels

    @property
    def columns(self) -> int:
        """Texts per example: 1 for single sentences, 2 for pairs."""
        return 2 if self.kind == "pair" else 1


# The `model.type` of a `tokenizer.json` (the `tokenizers` library's model class) -> the manifest's tokenizer type.
SUBWORD_KINDS = {"WordPiece": "wordpiece", "BPE": "bpe", "Unigram": "unigram"}
# A transformers tokenizer's file that the runtime reads, and the most it reads of it (XLM-R's is 17 MB).
TOKENIZER_JSON = "tokenizer.json"
MAX_TOKENIZER_JSON_BYTES = 256 << 20
# transformers' record of a tokenizer's settings and special tokens, beside tokenizer.json (model_max_length: the
# longest input the model takes; transformers' `truncation=True` cuts there).
TOKENIZER_CONFIG = "tokenizer_config.json"
# The manifest's `tokenizer.path` of a bundle whose tokenizer files lie at its root (the Hugging Face layout).
ROOT_LAYOUT = "."
# The names tokenizer loaders read from a model folder: transformers' AutoTokenizer (tokenizer.json, its config, the
# special tokens and added tokens, chat templates, the slow tokenizers' vocabularies: vocab.txt, vocab.json +
# merges.txt, SentencePiece *.model files) and the BiLSTM's word vocabulary. These are a bundle's tokenizer files at
# its root: a writer records them (`tokenizer_files_in`), derived bundles copy them and nothing else.
_TOKENIZER_FILE_NAME = re.compile(
    r"(tokenizer|tokenizer_config|special_tokens_map|added_tokens|chat_template|vocab|merges|word_vocab)\.[a-z]+"
    r"|[^/]+\.model"
)


class TokenizerInfo(_Frozen):
    # wordpiece (BERT, DistilBERT, ELECTRA, MPNet), bpe (byte-level: RoBERTa, ModernBERT), unigram (SentencePiece:
    # XLM-R, DeBERTa-v3): a transformers `tokenizer.json`; word: the BiLSTM's word vocabulary.
    type: Literal["wordpiece", "bpe", "unigram", "word"]
    max_length: int = Field(gt=0, le=MAX_SEQUENCE_LENGTH)
    lowercase: bool
    # The id inputs are padded with (transformers' `tokenizer.pad_token_id`: RoBERTa's is 1). None in manifests
    # written before it was recorded: the runtime then reads the pad token from the tokenizer folder.
    pad_id: int | None = Field(default=None, ge=0)
    # Where the tokenizer's files lie. "." (what edgekd writes): the bundle's root, the Hugging Face layout, so that
    # `AutoTokenizer.from_pretrained(bundle)` and `pipeline(model=bundle)` find them; `files` names them. A folder
    # (bundles written before, whose manifests say "tokenizer" or nothing): every listed file under it. `Bundle.open`
    # refuses unlisted files where tokenizer loaders look (`_unlisted_tokenizer_files`).
    path: str = "tokenizer"
    # The tokenizer's files at the root (names without a folder), when `path` is "."; every one a file the manifest
    # lists (`parse_manifest`). Empty for a tokenizer folder.
    files: list[str] = Field(default_factory=list)

    @field_validator("path")
    @classmethod
    def _inside_the_bundle(cls, path: str) -> str:
        problem = None if path == ROOT_LAYOUT else _member_name_problem(path)
        if problem:
            raise ValueError(f"{path[:200]!r} is not a plain relative path inside the bundle ({problem}); the tokenizer "
                             "lies at the bundle's root (\".\") or in a folder of the bundle, e.g. \"tokenizer\"")
        return path

    @field_validator("files")
    @classmethod
    def _root_file_names(cls, files: list[str], info: ValidationInfo) -> list[str]:
        if files and info.data.get("path", ROOT_LAYOUT) != ROOT_LAYOUT:
            raise ValueError(f"names files ({files[0][:100]!r}, ...) for a tokenizer folder; tokenizer.files lists the "
                             "tokenizer's files at the bundle's root, with tokenizer.path \".\"")
        for name in files:
            problem = _member_name_problem(name) or ("a folder" if "/" in name else None)
            if problem:
                raise ValueError(f"{name[:200]!r} is not a file name at the bundle's root ({problem})")
        if len(set(files)) != len(files):
            raise ValueError("names a file twice")
        return files

    @property
    def at_root(self) -> bool:
        """Whether the tokenizer's files lie at the bundle's root (the Hugging Face layout) rather than in a folder."""
        return self.path == ROOT_LAYOUT

    @staticmethod
    def kind_of(tokenizer_dir: Path) -> str:
        """The manifest's tokenizer type of a transformers tokenizer folder, from its tokenizer.json's `model.type`:
        "wordpiece", "bpe" or "unigram" (what the stage that writes a manifest records)."""
        path = Path(tokenizer_dir) / TOKENIZER_JSON
        if not path.is_file():
            raise BundleError(f"{tokenizer_dir}: no {TOKENIZER_JSON}; edgekd runs a model's tokenizer through its fast "
                              "(Rust) tokenizer file, which transformers' save_pretrained writes for fast tokenizers")
        try:
            model = json.loads(read_at_most(path, MAX_TOKENIZER_JSON_BYTES, BundleError, "tokenizer file")).get("model")
        except (ValueError, AttributeError, RecursionError) as exc:
            raise BundleError(f"{path}: not a tokenizer file (a JSON object) ({str(exc)[:200]})") from None
        kind = SUBWORD_KINDS.get(model.get("type")) if isinstance(model, dict) else None
        if kind is None:
            found = model.get("type") if isinstance(model, dict) else model
            raise UnsupportedError(f"{path}: a tokenizer of model type {str(found)[:80]!r}; edgekd runs "
                                   f"{', '.join(SUBWORD_KINDS)} tokenizers (BERT-, RoBERTa- and SentencePiece-style)")
        return kind


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
    format: Literal["torch", "onnx", "tflite", "executorch"]
    task: TaskInfo
    architecture: Architecture
    files: dict[str, FileEntry]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    tokenizer: TokenizerInfo
    parent: Parent | None = None
    produced_by: ProducedBy
    metrics: Metrics = Metrics()
    golden: str | None = None

    @field_validator("golden")
    @classmethod
    def _golden_inside_the_bundle(cls, golden: str | None) -> str | None:
        problem = None if golden is None else _member_name_problem(golden)
        if problem:
            raise ValueError(f"{golden[:200]!r} is not a plain relative path inside the bundle ({problem})")
        return golden


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
        """The folder tokenizer loaders read: the bundle itself (the Hugging Face layout edgekd writes), or the
        tokenizer folder of a bundle written before (a plain relative path inside the bundle, checked by `parse_manifest`)."""
        return self.path / self.manifest.tokenizer.path

    @property
    def tokenizer_files(self) -> list[str]:
        """The names (relative to the bundle) of the tokenizer's files that the manifest lists."""
        tokenizer = self.manifest.tokenizer
        if tokenizer.at_root:
            return list(tokenizer.files)
        return sorted(name for name in self.manifest.files if name.startswith(f"{tokenizer.path}/"))

    def tokenizer_file(self, name: str) -> Path:
        """The path of a file of the tokenizer that the manifest lists; any other name is a BundleError."""
        tokenizer = self.manifest.tokenizer
        if not tokenizer.at_root:
            return self.file(f"{tokenizer.path}/{name}")
        if name not in tokenizer.files:
            listed = ", ".join(tokenizer.files) or "none"
            raise BundleError(f"{self.path}: the bundle's tokenizer has no file {name!r} (tokenizer files listed: {listed}); "
                              "re-create the bundle with the stage that wrote it")
        return self.file(name)

    def read_golden(self) -> tuple[dict[str, np.ndarray], list[tuple[str, ...]]]:
        """golden.npz's arrays (inputs, logits, ...) and its texts as tuples of 1 or 2 strings; a file that is not a
        golden file of this bundle's task (unreadable, pickled, texts or logits of the wrong shape) is a BundleError."""
        if not self.manifest.golden:
            raise BundleError(f"{self.path}: has no golden inputs; re-create it with the stage that wrote it")
        path = self.file(self.manifest.golden)
        try:
            loaded = np.load(path, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise ValueError("a single .npy array, not an .npz archive")
            with loaded:
                golden = {name: loaded[name] for name in loaded.files}
        # OSError and BadZipFile: not a zip archive or a damaged one; ValueError: a pickled array or a bad .npy header;
        # EOFError: a truncated array; MemoryError: a header that declares an array larger than memory.
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, MemoryError) as exc:
            reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
            raise BundleError(f"{path}: not a golden file numpy reads without pickle ({reason}); re-create the bundle "
                              "with the stage that wrote it") from None
        problem = _golden_problem(golden, self.manifest.task)
        if problem:
            raise BundleError(f"{path}: {problem}; re-create the bundle with the stage that wrote it")
        return golden, [tuple(str(t) for t in row) for row in golden["texts"]]

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, verify: bool = True) -> Bundle:
        """Open a bundle, checking its schema version, that every path its manifest names lies inside it, and (with
        `verify`) every listed file's size and sha256, and that the tokenizer folder holds no unlisted file."""
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
            problems += _unlisted_tokenizer_files(root, manifest)
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
    # Every path the manifest names is inside the bundle (the models' validators) and a file it lists, so hashes: the
    # golden file here; the model file and the tokenizer's files where they are read (`Bundle.file`,
    # `Bundle.tokenizer_file`), and `Bundle.open` refuses unlisted files in the tokenizer folder.
    unlisted = [name for name in manifest.tokenizer.files if name not in manifest.files]
    if unlisted:
        raise BundleError(f"{where}: tokenizer.files names {unlisted[0][:200]!r}, which is not one of the files the manifest "
                          "lists (and hashes); re-create the bundle with its stage.")
    if manifest.golden is not None and manifest.golden not in manifest.files:
        raise BundleError(f"{where}: golden {manifest.golden[:200]!r} is not one of the files the manifest lists (and "
                          "hashes); a bundle's golden file is one of its own listed files. Re-create the bundle with its stage.")
    return manifest


def _member_name_problem(name: str) -> str | None:
    """Why a name could reach outside the bundle or is no portable file name, or None for a plain relative path."""
    if not name:
        return "empty"
    if "\\" in name:
        return "a backslash"
    if PurePosixPath(name).is_absolute():
        return "absolute"
    if any(part in ("..", ".", "") for part in name.split("/")):
        return "a '..', '.' or empty part"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "a control character"
    return None


def _check_member_name(name: str, where: Path | str) -> None:
    """Reject file names that could reach outside the bundle (absolute, `..`, backslashes, empty parts, control
    characters such as NUL, which no file system path holds)."""
    problem = _member_name_problem(name)
    if problem:
        raise BundleError(f"{where}: file name {name[:200]!r} is not a plain relative path inside the bundle ({problem}); refusing it.")


def _check_file(root: Path, name: str, entry: FileEntry) -> str | None:
    path = root / name
    try:
        if path.is_symlink():
            return f"{name}: is a symbolic link; bundles hold regular files only"
        if not path.is_file():
            return f"{name}: missing (the manifest lists it, {entry.bytes} bytes)"
        if not path.resolve().is_relative_to(root.resolve()):
            # A folder on the way is a link: the file's bytes would be read from outside the bundle.
            return f"{name}: lies outside the bundle (a folder on its path is a symbolic link); bundles hold regular files only"
        size = path.stat().st_size
        if size != entry.bytes:
            state = "truncated" if size < entry.bytes else "grown"
            return f"{name}: {state}, {size} bytes on disk but {entry.bytes} in the manifest"
        if sha256_file(path) != entry.sha256:
            return f"{name}: altered, its sha256 differs from the manifest's"
    except OSError as exc:  # unreadable (permissions), a name too long for this file system, ...
        return f"{name}: cannot be read ({exc.strerror or type(exc).__name__})"
    return None


def _unlisted_tokenizer_files(root: Path, manifest: Manifest) -> list[str]:
    """Files where tokenizer loaders look that the manifest does not name as the tokenizer's. Loaders (transformers'
    AutoTokenizer) read every tokenizer file of their folder, so one unlisted file (an added_tokens.json, a
    tokenizer_config.json) would change tokenization unchecked while every listed hash still verifies: at the root,
    a file under a tokenizer file's name that `tokenizer.files` does not name; in a tokenizer folder, any unlisted file."""
    if manifest.tokenizer.at_root:
        return _stray_root_tokenizer_files(root, manifest)
    folder = root / manifest.tokenizer.path
    if folder.is_symlink() or not folder.is_dir():
        return []  # its listed files are then reported by `_check_file` (outside the bundle, or missing)
    listed = set(manifest.files)
    try:
        entries = list(itertools.islice(folder.rglob("*"), 100_000))
    except OSError as exc:
        return [f"{manifest.tokenizer.path}: cannot be listed ({exc.strerror or type(exc).__name__})"]
    extra = sorted(name for p in entries if (p.is_symlink() or not p.is_dir()) and (name := p.relative_to(root).as_posix()) not in listed)
    return [
        f"{name}: in the tokenizer folder but not listed in the manifest (tokenizer loaders read every file there); "
        "remove it, or re-create the bundle with its stage"
        for name in extra[:10]
    ]


def _stray_root_tokenizer_files(root: Path, manifest: Manifest) -> list[str]:
    named = set(manifest.tokenizer.files)
    try:
        with os.scandir(root) as scan:
            names = sorted(e.name for e in itertools.islice(scan, 100_000) if e.is_symlink() or not e.is_dir())
    except OSError as exc:
        return [f".: cannot be listed ({exc.strerror or type(exc).__name__})"]
    stray = [name for name in names if is_tokenizer_file_name(name) and name not in named]
    return [
        f"{name}: a tokenizer file at the bundle's root (tokenizer loaders read it) that the manifest's tokenizer.files "
        "does not name; remove it, or re-create the bundle with its stage"
        for name in stray[:10]
    ]


def is_tokenizer_file_name(name: str) -> bool:
    """Whether tokenizer loaders read a file of this name in a model folder (`_TOKENIZER_FILE_NAME`)."""
    return _TOKENIZER_FILE_NAME.fullmatch(name) is not None


def tokenizer_files_in(directory: Path) -> list[str]:
    """The tokenizer files at the top of a folder (a bundle being written): what its manifest's tokenizer.files lists."""
    return sorted(p.name for p in directory.iterdir() if p.is_file() and is_tokenizer_file_name(p.name))


def _golden_problem(golden: dict[str, np.ndarray], task: TaskInfo) -> str | None:
    """What makes golden arrays unusable for this task (missing arrays, shapes that do not fit), or None."""
    missing = [name for name in ("texts", "logits") if name not in golden]
    if missing:
        return f"has no {' or '.join(missing)} array (it holds {sorted(golden)[:10]})"
    texts, logits = golden["texts"], golden["logits"]
    if texts.dtype.kind != "U" or texts.ndim != 2 or texts.shape[1] != task.columns or not len(texts):
        return f"its texts are {texts.dtype} of shape {texts.shape}, not {task.columns} string column(s) per example"
    if logits.dtype.kind != "f" or logits.shape[:1] != (len(texts),):
        return f"its logits are {logits.dtype} of shape {logits.shape}, not one float row per text ({len(texts)} texts)"
    width = 1 if task.problem == "regression" else len(task.labels)
    if logits.size != len(texts) * width:
        return f"its logits have shape {logits.shape}, but the manifest's task has {width} output(s) per text ({task.labels})"
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
    """Carry the parent's tokenizer files, and its config.json when it has one, into a new bundle directory."""
    copy_tokenizer_files(parent, directory)
    if HF_CONFIG in parent.manifest.files:
        shutil.copy2(parent.file(HF_CONFIG), directory / HF_CONFIG)


def copy_tokenizer_files(parent: Bundle, directory: Path) -> list[str]:
    """Copy the parent's tokenizer files, and nothing else of it, to the root of a new bundle directory (the Hugging
    Face layout, whatever the parent's: a tokenizer folder's files move to the root); return their names there.

    Of a tokenizer folder (bundles written before the root layout) only files under a tokenizer file's name at its top
    are copied: the folder may hold a model folder's other files (a sentence-transformers config, pooling settings)."""
    prefix = "" if parent.manifest.tokenizer.at_root else f"{parent.manifest.tokenizer.path}/"
    copied = []
    for name in parent.tokenizer_files:
        inner = name[len(prefix):]
        if is_tokenizer_file_name(inner):  # at the top of the folder: a name with a "/" never matches
            shutil.copy2(parent.file(name), directory / inner)
            copied.append(inner)
    return copied


def set_tokenizer_max_length(directory: Path, max_length: int) -> None:
    """Record a bundle's max length in the transformers tokenizer files at `directory`'s top, so that transformers
    and `tokenizers` cut long texts where edgekd does: tokenizer_config.json's `model_max_length` (where
    `truncation=True` cuts) and tokenizer.json's truncation (what `Tokenizer.from_file(...).encode` applies). A file
    already saying so is left byte for byte; a missing one is not created. edgekd's own encoders set truncation and
    padding themselves, so their ids do not depend on these settings."""
    config_path, spec_path = directory / TOKENIZER_CONFIG, directory / TOKENIZER_JSON
    if config_path.is_file():
        config = _json_object(config_path, "tokenizer config")
        if config.get("model_max_length") != max_length:
            config["model_max_length"] = max_length
            config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if spec_path.is_file():
        spec = _json_object(spec_path, "tokenizer file")
        # What transformers' `truncation=True` sets on the library: right side, longest_first for pairs, no stride.
        truncation = {"direction": "Right", "max_length": max_length, "strategy": "LongestFirst", "stride": 0}
        if spec.get("truncation") != truncation:
            spec["truncation"] = truncation
            spec_path.write_text(json.dumps(spec, indent=2, ensure_ascii=False), encoding="utf-8")


def _json_object(path: Path, what: str) -> dict[str, Any]:
    """A JSON object file of a tokenizer; anything else is a BundleError naming it."""
    try:
        data = json.loads(read_at_most(path, MAX_TOKENIZER_JSON_BYTES, BundleError, what))
    except (ValueError, RecursionError) as exc:
        data = exc
    if not isinstance(data, dict):
        reason = str(data)[:200] if isinstance(data, Exception) else f"a JSON {type(data).__name__}"
        raise BundleError(f"{path}: not a {what} (a JSON object) ({reason}); re-create the bundle with the stage that wrote it")
    return data


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
