"""Every encoder family's tokenizer in the runtime against transformers' (the reference): the same ids, masks and
type ids on the fuzzed text of test_fuzz.py, single texts and pairs, truncated or not, for the tiny tokenizer of each
family in `edgekd.hf_families` (WordPiece, byte-level BPE, SentencePiece Unigram; built by edgekd/testing_families.py).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import test_fuzz as fuzzing  # the text strategies and the comparison with transformers (tests/unit is on sys.path)
from hypothesis import example, given
from hypothesis import strategies as st
from test_encoder import STRANGE

from edgekd import testing
from edgekd.bundle import Bundle, TokenizerInfo
from edgekd.errors import BundleError
from edgekd.hf_families import HF_FAMILIES, model_inputs
from edgekd.runtime.encoder import SubwordEncoder, bundle_encoder, collate, load_encoder
from edgekd.testing_families import FAMILY_TOKENIZERS, family_tokenizer, missing_families, save_family_tokenizer, tiny_family
from edgekd.writer import BundleWriter

FAMILIES = sorted(HF_FAMILIES)


@pytest.fixture(scope="module", params=FAMILIES)
def family(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Any]:
    """(model type, tokenizer folder, transformers' tokenizer loaded from it with AutoTokenizer)."""
    from transformers import AutoTokenizer

    directory = tmp_path_factory.mktemp(f"tokenizer-{request.param}")
    save_family_tokenizer(request.param, directory)
    return request.param, directory, AutoTokenizer.from_pretrained(directory)


@functools.lru_cache(maxsize=128)
def _encoder(model_type: str, directory: Path, max_length: int, columns: int) -> SubwordEncoder:
    # As a bundle's runtime loads it: the kind from the file, the inputs the family's models take (a manifest's
    # `inputs`), the pad id from the folder.
    kind = TokenizerInfo.kind_of(directory)
    encoder = load_encoder(directory, kind, max_length, columns, inputs=HF_FAMILIES[model_type].inputs())
    assert isinstance(encoder, SubwordEncoder)
    return encoder


def test_every_family_has_a_tiny_tokenizer_and_model() -> None:
    assert not missing_families(), f"families of edgekd.hf_families without a tiny tokenizer or model: {missing_families()}"
    assert set(FAMILY_TOKENIZERS) <= set(HF_FAMILIES), "a tiny tokenizer of a family edgekd does not list"


def test_the_tiny_tokenizers_are_deterministic() -> None:
    """Built twice, each family's tokenizer file is the same: the `tokenizers` WordPiece and Unigram trainers break ties
    in hash order (another vocabulary in every process, and in every build within one), so they are not used."""
    for model_type in FAMILIES:
        assert family_tokenizer(model_type).backend_tokenizer.to_str() == family_tokenizer(model_type).backend_tokenizer.to_str()


def test_the_family_facts_match_the_tokenizer(family: tuple[str, Path, Any]) -> None:
    """The tokenizer's kind, pad id, special-token count and model inputs as the runtime reads them."""
    model_type, directory, reference = family
    encoder = _encoder(model_type, directory, 32, 2)
    assert TokenizerInfo.kind_of(directory) == FAMILY_TOKENIZERS[model_type].kind == encoder.kind
    assert encoder.pad_id == reference.pad_token_id
    assert 32 - encoder.room == reference.num_special_tokens_to_add(pair=True)
    # edgekd.hf_families' token_type_ids fact against the family's tokenizer: the inputs transformers gives its model.
    assert set(encoder.names) == set(reference.model_input_names), model_type
    other = next(kind for kind in ("wordpiece", "bpe", "unigram") if kind != encoder.kind)
    with pytest.raises(BundleError, match=f"the manifest's tokenizer type is '{other}', but the file holds"):
        load_encoder(directory, other, 32, 1)


@fuzzing.fuzz(20)
@given(texts=st.lists(fuzzing.TEXTS, min_size=1, max_size=3), max_length=st.sampled_from([2, 3, 8, 32, 128]))
@example(texts=STRANGE[:5], max_length=8)
@example(texts=STRANGE[5:], max_length=8)
@example(texts=STRANGE, max_length=128)
@example(texts=["<s> </s> <pad> <mask> [CLS] [SEP] [PAD] [MASK] <unk> [UNK]", "  double  spaces  ", ""], max_length=4)
def test_single_texts_match_transformers(family: tuple[str, Path, Any], texts: list[str], max_length: int) -> None:
    model_type, directory, reference = family
    fuzzing._check_against_transformers(_encoder(model_type, directory, max_length, 1), reference, texts, max_length)


# A pair needs 3 special tokens ([CLS] a [SEP] b [SEP]) or 4 (RoBERTa's, XLM-R's and MPNet's <s> a </s></s> b </s>).
@fuzzing.fuzz(20)
@given(pairs=st.lists(fuzzing.PAIRS, min_size=1, max_size=3), max_length=st.sampled_from([4, 5, 8, 32, 128]))
@example(pairs=[(a, b) for a in STRANGE[:4] for b in STRANGE[-4:]], max_length=24)
@example(pairs=[("", ""), ("a", ""), ("", "good")], max_length=4)
@example(pairs=[("good " * 1000, "bad"), ("x", "film " * 3000)], max_length=32)
@example(pairs=[(fuzzing.LONG, fuzzing.LONG[::-1]), (fuzzing.LONG[:9_000], fuzzing.LONG)], max_length=5)
# Each text longer than the room, equal or not, with an odd room: which text gets the odd piece.
@example(pairs=[(fuzzing.SEVEN, fuzzing.SEVEN), (fuzzing.SEVEN + " h", fuzzing.SEVEN), ("a b c", fuzzing.SEVEN + " h")], max_length=8)
@example(pairs=[(fuzzing.SEVEN, fuzzing.SEVEN), (fuzzing.SEVEN + " h", fuzzing.SEVEN), ("a b c d e", fuzzing.SEVEN + " h")], max_length=9)
def test_pairs_match_transformers(family: tuple[str, Path, Any], pairs: list[tuple[str, str]], max_length: int) -> None:
    model_type, directory, reference = family
    fuzzing._check_against_transformers(_encoder(model_type, directory, max_length, 2), reference, pairs, max_length)


def test_a_bundle_encoder_takes_the_manifests_pad_id_and_inputs(family: tuple[str, Path, Any], tmp_path: Path) -> None:
    """`bundle_encoder` (what the stages deriving a bundle use; the Classifier reads the same fields) takes the type,
    the pad id and the model's inputs from the manifest; a manifest without a pad id (written before it was recorded)
    pads with the folder's."""
    model_type, _, reference = family
    inputs = HF_FAMILIES[model_type].inputs()
    for pad_id in (reference.pad_token_id, None):
        with BundleWriter(tmp_path / f"bundle-{pad_id}") as writer:
            save_family_tokenizer(model_type, writer.path)
            bundle = writer.commit(**testing.fake_manifest_fields(
                inputs=[{"name": n, "dtype": "int64", "shape": ["batch", "sequence"]} for n in inputs],
                tokenizer={"type": FAMILY_TOKENIZERS[model_type].kind, "max_length": 16, "lowercase": False, "pad_id": pad_id},
            ))
        encoder = bundle_encoder(Bundle.open(bundle.path))
        assert encoder.names == tuple(n for n in ("input_ids", "attention_mask", "token_type_ids") if n in inputs)
        batch = collate(encoder.encode(["good", "the film was bad"]), encoder.pad_id)
        expected = reference(["good", "the film was bad"], padding=True, return_tensors="np")
        np.testing.assert_array_equal(batch["input_ids"], expected["input_ids"])


def test_each_tiny_model_takes_its_tokenizers_inputs(tmp_path: Path) -> None:
    """The tiny classifier of each family: vocabulary and special ids those of its tokenizer, and the runtime's
    batch (padded with the family's pad id, with only the inputs the model takes) runs through it."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    for model_type in FAMILIES:
        directory = tiny_family(model_type, tmp_path / model_type, num_labels=3)
        model = AutoModelForSequenceClassification.from_pretrained(directory).eval()
        tokenizer = AutoTokenizer.from_pretrained(directory)
        assert model.config.model_type == model_type and model.config.vocab_size == len(tokenizer), model_type
        assert model.config.pad_token_id == tokenizer.pad_token_id, model_type
        encoder = load_encoder(directory, TokenizerInfo.kind_of(directory), 32, 2, inputs=model_inputs(model.config))
        batch = collate(encoder.encode([("the film was good", "a plot"), ("bad", "awful " * 40)]), encoder.pad_id)
        with torch.no_grad():
            logits = model(**{name: torch.from_numpy(values) for name, values in batch.items()}).logits
        assert logits.shape == (2, 3) and torch.isfinite(logits).all(), model_type
