"""Bundles in the Hugging Face layout: the tokenizer files at the root beside the model, as save_pretrained writes them
and saying the trained max length, so that transformers' `pipeline(model=bundle)`, `AutoTokenizer.from_pretrained`
and optimum's `ORTModelForSequenceClassification` read a bundle as they read a hub checkpoint and give edgekd's
labels and probabilities; the BiLSTM's vocabulary as a `tokenizers` WordLevel tokenizer.json that gives the runtime's
word ids; and bundles written before (a `tokenizer/` folder) still open, run and derive new bundles in the new layout.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import test_fuzz as fuzzing  # the fuzzed text strategies (tests/unit is on sys.path)
from hypothesis import event, example, given
from hypothesis import strategies as st

from edgekd import testing
from edgekd.bundle import Bundle, set_tokenizer_max_length
from edgekd.config import ExportConfig, validate_recipe
from edgekd.errors import BundleError
from edgekd.runtime.classifier import Classifier
from edgekd.runtime.encoder import SubwordEncoder, bundle_encoder
from edgekd.runtime.word_tokenizer import MASK, UNK_ID, WordTokenizer

MAX_LENGTH = 16
TEXTS = [
    "good film",
    "the plot was bad",
    "a great story with superb acting",
    # Far past the max length: transformers must cut it where edgekd does.
    "the movie was awful and the plot was boring but the acting was very good and the story of this film is fine " * 4,
]


@pytest.fixture(scope="module")
def bundles(tiny_classifier: Path, single_task: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Bundle]:
    """The tiny classifier imported as a teacher (max length 16), a TinyBERT and a BiLSTM student distilled from it for
    one step, and both students exported to ONNX: how well they learned does not matter here, only that transformers
    and edgekd read the same bundle alike."""
    from edgekd.distill.distill import distill
    from edgekd.distill.teacher import teacher
    from edgekd.export.stage import export

    root = tmp_path_factory.mktemp("hf-layout")
    raw = testing.tiny_recipe(single_task, tiny_classifier, root / "run", teacher={"mode": "import", "max_length": MAX_LENGTH})
    raw["students"] = testing.tiny_students({"max_steps": 1})
    raw["students"]["bilstm"]["student"]["max_length"] = MAX_LENGTH
    recipe = validate_recipe(raw)
    made = {"teacher": teacher(recipe), "tinybert": distill(recipe, "tinybert"), "bilstm": distill(recipe, "bilstm")}
    for name in ("tinybert", "bilstm"):
        made[f"{name}-onnx"] = export(made[name].path, ExportConfig(format="onnx"), root / f"{name}-onnx")
    return made


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _edgekd_probabilities(bundle: Bundle, texts: list[str]) -> list[dict[str, float]]:
    """Every label's probability as edgekd computes it: the runtime for an exported bundle, the torch model through
    the bundle's own encoder for a torch one."""
    if bundle.manifest.format != "torch":
        return [p.probabilities for p in Classifier.load(bundle).predict(texts)]
    from edgekd.families import family_spec
    from edgekd.modeling import load_torch_model

    encoder = bundle_encoder(bundle)
    logits = family_spec(bundle.manifest.architecture).runner(load_torch_model(bundle).eval(), encoder.pad_id)(encoder.encode(texts))
    return [dict(zip(bundle.manifest.task.labels, map(float, row))) for row in _softmax(logits)]


def _pipeline_probabilities(pipe: Any, texts: list[str]) -> list[dict[str, float]]:
    # truncation=True: transformers' tokenizer call turns the file's truncation off unless asked; asked, it cuts at
    # the tokenizer's model_max_length, which the bundle sets to the trained max length (a checkpoint's default is 512).
    return [{row["label"]: row["score"] for row in rows} for rows in pipe(texts, top_k=None, truncation=True)]


def _assert_same(ours: list[dict[str, float]], theirs: list[dict[str, float]], atol: float) -> None:
    for mine, other in zip(ours, theirs, strict=True):
        assert sorted(mine) == sorted(other)  # the manifest's label names, not LABEL_0 / LABEL_1
        assert max(mine, key=mine.__getitem__) == max(other, key=other.__getitem__)
        np.testing.assert_allclose([other[label] for label in mine], list(mine.values()), atol=atol)


def test_the_tokenizer_files_lie_at_the_root_and_say_the_trained_max_length(bundles: dict[str, Bundle]) -> None:
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    for name, bundle in bundles.items():
        tokenizer = bundle.manifest.tokenizer
        assert tokenizer.path == "." and bundle.tokenizer_dir == bundle.path, name
        assert not (bundle.path / "tokenizer").exists(), name
        assert tokenizer.files and all((bundle.path / f).is_file() and f in bundle.manifest.files for f in tokenizer.files), name
        assert tokenizer.max_length == MAX_LENGTH
        # What `tokenizers` users get: truncation at the max length (edgekd's encoders set their own, see below).
        assert Tokenizer.from_file(str(bundle.path / "tokenizer.json")).truncation["max_length"] == MAX_LENGTH, name
        if tokenizer.type == "word":
            assert sorted(tokenizer.files) == ["tokenizer.json", "word_vocab.json"], name
            continue
        # (and vocab.txt, special_tokens_map.json where transformers 4 wrote them: transformers 5 does not)
        assert {"tokenizer.json", "tokenizer_config.json"} <= set(tokenizer.files), name
        reference = AutoTokenizer.from_pretrained(bundle.path)
        assert reference.model_max_length == MAX_LENGTH, name
        # transformers' `truncation=True` now cuts where edgekd does: the same ids, the long text included.
        expected = [row["input_ids"].tolist() for row in bundle_encoder(bundle).encode(TEXTS)]
        assert reference(TEXTS, truncation=True)["input_ids"] == expected, name
        assert len(expected[-1]) == MAX_LENGTH
    # A derived bundle carries its parent's tokenizer files and nothing else of the parent.
    assert bundles["tinybert-onnx"].manifest.tokenizer.files == bundles["tinybert"].manifest.tokenizer.files
    assert set(bundles["tinybert"].manifest.tokenizer.files) == set(bundles["teacher"].manifest.tokenizer.files)


def test_a_torch_student_runs_in_transformers_pipeline(bundles: dict[str, Bundle]) -> None:
    from transformers import pipeline

    for name in ("teacher", "tinybert"):
        pipe = pipeline("text-classification", model=str(bundles[name].path), device="cpu")
        _assert_same(_edgekd_probabilities(bundles[name], TEXTS), _pipeline_probabilities(pipe, TEXTS), atol=1e-5)


def test_an_onnx_bundle_runs_in_optimum(bundles: dict[str, Bundle]) -> None:
    ORTModelForSequenceClassification = pytest.importorskip(
        "optimum.onnxruntime", reason="optimum is not installed: pip install 'edgekd[optimum]'").ORTModelForSequenceClassification
    from transformers import AutoTokenizer, pipeline

    bundle = bundles["tinybert-onnx"]
    model = ORTModelForSequenceClassification.from_pretrained(bundle.path, provider="CPUExecutionProvider")
    pipe = pipeline("text-classification", model=model, tokenizer=AutoTokenizer.from_pretrained(bundle.path), device="cpu")
    _assert_same(_edgekd_probabilities(bundle, TEXTS), _pipeline_probabilities(pipe, TEXTS), atol=1e-5)
    # The export runs as its torch parent did in transformers (within the export's own float tolerance).
    _assert_same(_edgekd_probabilities(bundles["tinybert"], TEXTS), _pipeline_probabilities(pipe, TEXTS), atol=1e-4)


def test_the_runtime_ids_do_not_depend_on_the_files_truncation(tiny_encoder: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The runtime's SubwordEncoder sets truncation and padding itself: a tokenizer.json that says max length 16 gives
    the ids of one that says nothing, at that length and at others (a TFLite bucket), singles and pairs."""
    plain = tmp_path_factory.mktemp("plain")
    fitted = tmp_path_factory.mktemp("fitted")
    # The tokenizer's files that exist (transformers 5 writes no special_tokens_map.json).
    names = [n for n in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json") if (tiny_encoder / n).exists()]
    for name in names:
        shutil.copy(tiny_encoder / name, plain / name)
        shutil.copy(tiny_encoder / name, fitted / name)
    set_tokenizer_max_length(fitted, MAX_LENGTH)
    assert json.loads((fitted / "tokenizer.json").read_text())["truncation"]["max_length"] == MAX_LENGTH
    assert json.loads((plain / "tokenizer.json").read_text())["truncation"] is None
    encoders = {(columns, length): (SubwordEncoder(plain, length, columns), SubwordEncoder(fitted, length, columns))
                for columns in (1, 2) for length in (8, MAX_LENGTH, 40)}

    @fuzzing.fuzz(60)
    @given(texts=st.lists(fuzzing.TEXTS, min_size=1, max_size=3), pairs=st.lists(fuzzing.PAIRS, min_size=1, max_size=2))
    @example(texts=[TEXTS[-1], ""], pairs=[(TEXTS[-1], TEXTS[-1])])
    def check(texts: list[str], pairs: list[tuple[str, str]]) -> None:
        for (columns, _), (before, after) in encoders.items():
            batch = texts if columns == 1 else pairs
            for old, new in zip(before.encode(batch), after.encode(batch), strict=True):
                assert old.keys() == new.keys()
                for key in old:
                    np.testing.assert_array_equal(old[key], new[key])

    check()


@fuzzing.fuzz(200)
@given(
    corpus=st.lists(fuzzing.TEXTS, max_size=6),
    texts=st.lists(fuzzing.TEXTS, min_size=1, max_size=4),
    max_length=st.integers(1, 128),
    lowercase=st.booleans(),
)
@example(corpus=["the [MASK] was good", "[mask] [Mask]", "ΟΔΟΣ Α'Σ ΆΣ"], texts=["", "   ", "[MASK]" * 200, "ΟΔΟΣ. οδοσ Α'Σ'"],
         max_length=3, lowercase=True)
@example(corpus=["Good, GOOD film!!"], texts=["good\u0301 film\u00b2 \u2167 a\u203fb _x_ \x1c\x1d", "e\u0301", "\U00010d50"],
         max_length=64, lowercase=True)
def test_the_word_vocabulary_as_a_tokenizers_file_gives_the_runtime_ids(
    corpus: list[str], texts: list[str], max_length: int, lowercase: bool, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`Tokenizer.from_file(tokenizer.json).encode(text).ids` of a saved word vocabulary against the runtime's word
    ids (word_vocab.json, what the device runs), on the fuzzed texts of test_fuzz.py. They are equal but where the
    module docstring of runtime/word_tokenizer.py says: a text without a word ([UNK] there, no id here), and letters
    that Rust's lowercasing (a newer Unicode) lowers and this Python's `str.lower()` does not; there the file gives
    the runtime's ids of the text as the file's normalizer lowercases it."""
    from tokenizers import Tokenizer

    vocabulary = WordTokenizer.build(corpus, lowercase=lowercase, max_length=max_length)
    directory = fuzzing._scratch(tmp_path_factory) / "word-tokenizers"
    vocabulary.save(directory)
    hf = Tokenizer.from_file(str(directory / "tokenizer.json"))
    runtime = WordTokenizer.load(directory)
    normalizer = hf.normalizer  # None without lowercasing
    for text in [*corpus, *texts, MASK]:
        ids, theirs = runtime.encode(text), hf.encode(text).ids
        if not runtime.split(text):
            event("a text without a word")
            assert ids == [UNK_ID] and theirs == []
            continue
        parts = text.split(MASK)
        if normalizer is not None and any(normalizer.normalize_str(part) != part.lower() for part in parts):
            event("Rust lowercases otherwise")
            text = MASK.join(normalizer.normalize_str(part) for part in parts)
            ids = runtime.encode(text)
        assert theirs == ids, text[:200]


def test_a_bundle_in_the_old_layout_opens_runs_and_derives_the_new_one(bundles: dict[str, Bundle], tmp_path: Path) -> None:
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    from edgekd.export.stage import export

    for name in ("tinybert", "bilstm"):
        # An exported bundle written before: it opens, self-checks (golden ids and logits) and predicts as before.
        old = tmp_path / f"{name}-onnx-old"
        shutil.copytree(bundles[f"{name}-onnx"].path, old)
        testing.legacy_tokenizer_layout(old)
        opened = Bundle.open(old)
        assert opened.manifest.tokenizer.path == "tokenizer" and opened.tokenizer_dir == old / "tokenizer"
        assert Classifier.load(opened).predict(TEXTS) == Classifier.load(bundles[f"{name}-onnx"]).predict(TEXTS)
        # A torch bundle written before, with a file of a model folder beside its tokenizer (listed and hashed):
        # its export is in the new layout, with the tokenizer's files only.
        parent = tmp_path / f"{name}-old"
        shutil.copytree(bundles[name].path, parent)
        testing.legacy_tokenizer_layout(parent)
        (parent / "tokenizer" / "modules.json").write_text("[]")
        manifest = json.loads((parent / "manifest.json").read_text())
        manifest["files"]["tokenizer/modules.json"] = {"sha256": hashlib.sha256(b"[]").hexdigest(), "bytes": 2}
        (parent / "manifest.json").write_text(json.dumps(manifest))
        derived = export(parent, ExportConfig(format="onnx"), tmp_path / f"{name}-derived")
        assert derived.manifest.tokenizer.path == "." and not (derived.path / "tokenizer").exists()
        assert sorted(derived.manifest.tokenizer.files) == sorted(bundles[f"{name}-onnx"].manifest.tokenizer.files)
        assert not (derived.path / "modules.json").exists()
        _assert_same(_edgekd_probabilities(derived, TEXTS), _edgekd_probabilities(bundles[f"{name}-onnx"], TEXTS), atol=1e-5)
        if name == "tinybert":
            assert AutoTokenizer.from_pretrained(derived.path).model_max_length == MAX_LENGTH
        else:  # the old vocabulary's `tokenizers` copy is written for it
            hf_ids = Tokenizer.from_file(str(derived.path / "tokenizer.json")).encode(TEXTS[-1]).ids
            assert hf_ids == WordTokenizer.load(derived.path).encode(TEXTS[-1]) and len(hf_ids) == MAX_LENGTH


def test_a_vocabulary_pruned_bundle_keeps_its_tokenizer_files_in_step(bundles: dict[str, Bundle], tmp_path: Path) -> None:
    """Vocabulary pruning rewrites the tokenizer: its files at the new bundle's root (the BiLSTM's tokenizers copy
    included) give the ids the runtime gives and say the max length."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    from edgekd.config import VocabPruneConfig
    from edgekd.quantize.prune import prune

    for name in ("tinybert", "bilstm"):
        # Three training texts: most words and pieces go (they read as [UNK]).
        pruned = prune(bundles[name].path, VocabPruneConfig(), tmp_path / name, overrides=["data.max_train_examples=3"])
        assert pruned.manifest.tokenizer.path == "." and sorted(pruned.manifest.tokenizer.files) == sorted(bundles[name].manifest.tokenizer.files)
        details = pruned.manifest.architecture.prune
        assert details["vocab"] < details["vocab_before"], name
        expected = [row["input_ids"].tolist() for row in bundle_encoder(pruned).encode(TEXTS)]
        hf = Tokenizer.from_file(str(pruned.path / "tokenizer.json"))
        assert [encoding.ids for encoding in hf.encode_batch(TEXTS)] == expected, name
        if name == "tinybert":
            reference = AutoTokenizer.from_pretrained(pruned.path)
            assert reference.model_max_length == MAX_LENGTH and reference(TEXTS, truncation=True)["input_ids"] == expected


def test_a_tokenizer_file_at_the_root_that_the_manifest_does_not_name_is_refused(bundles: dict[str, Bundle], tmp_path: Path) -> None:
    # AutoTokenizer reads added_tokens.json beside the model: one dropped there would change tokenization unchecked.
    copy = tmp_path / "copy"
    shutil.copytree(bundles["tinybert-onnx"].path, copy)
    (copy / "added_tokens.json").write_text('{"good": 7}')
    with pytest.raises(BundleError, match=r"added_tokens.json: a tokenizer file at the bundle's root .* that the manifest's tokenizer.files does not name"):
        Bundle.open(copy)
    (copy / "added_tokens.json").unlink()
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["tokenizer"]["files"].append("merges.txt")
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="tokenizer.files names 'merges.txt', which is not one of the files the manifest lists"):
        Bundle.open(copy)
