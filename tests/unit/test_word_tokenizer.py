"""The BiLSTM word tokenizer: splitting, vocabulary building, special ids, save/load round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekd.runtime.word_tokenizer import SPECIALS, WordTokenizer


def test_split_lowercases_and_separates_punctuation() -> None:
    tokenizer = WordTokenizer(list(SPECIALS))
    assert tokenizer.split("It's GREAT, isn't it?!") == ["it", "'", "s", "great", ",", "isn", "'", "t", "it", "?", "!"]
    assert tokenizer.split("Café naïve  über") == ["café", "naïve", "über"]
    assert WordTokenizer(list(SPECIALS), lowercase=False).split("Hi There") == ["Hi", "There"]


def test_vocabulary_by_frequency_with_min_freq_and_cap() -> None:
    texts = ["b a a", "c a b", "d"]
    tokenizer = WordTokenizer.build(texts, min_freq=2)
    assert tokenizer.vocab == [*SPECIALS, "a", "b"]
    assert WordTokenizer.build(texts, max_vocab=3).vocab == [*SPECIALS, "a", "b", "c"]
    assert tokenizer.encode("a b z") == [3, 4, 1]  # unseen words are [UNK] (id 1)
    assert tokenizer.encode("") == [1] and tokenizer.encode("   ") == [1]


def test_truncation_and_round_trip(tmp_path: Path) -> None:
    tokenizer = WordTokenizer.build(["one two three four"], max_length=2)
    assert tokenizer.vocab[3:] == ["four", "one", "three", "two"]  # equal counts: alphabetical
    assert tokenizer.encode("one two three") == [4, 6]
    tokenizer.save(tmp_path)
    loaded = WordTokenizer.load(tmp_path)
    assert loaded.vocab == tokenizer.vocab and loaded.max_length == 2 and loaded.encode("four one") == tokenizer.encode("four one")


def test_vocabulary_must_start_with_the_specials() -> None:
    with pytest.raises(ValueError, match="starts with"):
        WordTokenizer(["a", "b", "c"])


def test_extra_words_follow_the_training_vocabulary() -> None:
    tokenizer = WordTokenizer.build(["b a a"], extra_words=["the", "a", "zebra", "the"])
    assert tokenizer.vocab == [*SPECIALS, "a", "b", "the", "zebra"]
    assert tokenizer.encode("zebra b") == [6, 4]


def test_a_masked_word_is_the_mask_id() -> None:
    tokenizer = WordTokenizer.build(["The film was great"])
    assert tokenizer.split("The [MASK] was GREAT [MASK]") == ["the", "[MASK]", "was", "great", "[MASK]"]
    assert tokenizer.encode("[MASK] film") == [2, tokenizer.index["film"]]
    assert tokenizer.split("[mask] [Mask]") == ["[", "mask", "]", "[", "mask", "]"]  # only the exact token
