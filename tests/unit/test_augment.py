"""The two papers' augmenters: rates within statistical tolerance, what each operation may and may not touch, pairs,
determinism, the offline tagger and GloVe neighbours, and the MLM path on a tiny MLM built in code."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edgekd import testing
from edgekd.config import AugmentConfig
from edgekd.distill.augment.tang import MASK, PosUnigrams, TangAugmenter
from edgekd.distill.augment.tinybert import GloveNeighbours, MlmCandidates, TinyBertAugmenter, split_words

# A tagged sentence of 20 words whose own words never occur in the corpus: every POS replacement is a visible change.
SENTENCE = [(f"w{i}", "NN" if i % 2 else "JJ") for i in range(20)]
CORPUS = [[("cat", "NN"), ("dog", "NN"), ("big", "JJ")], [("cat", "NN"), ("red", "JJ"), ("big", "JJ"), ("big", "JJ")]]
SAMPLES = 3000


def tang(**settings: float) -> TangAugmenter:
    return TangAugmenter(PosUnigrams(CORPUS), AugmentConfig(method="tang", **settings))


def test_tang_mask_and_pos_rates_match_the_settings() -> None:
    augmenter = tang(p_mask=0.1, p_pos=0.2, p_ng=0.0)
    rng = np.random.default_rng(0)
    words = np.asarray([augmenter.words(SENTENCE, rng) for _ in range(SAMPLES)])
    masked = np.mean(words == MASK)
    replaced = np.mean((words != MASK) & (words != np.asarray([w for w, _ in SENTENCE])))
    n = SAMPLES * len(SENTENCE)
    for rate, p in ((masked, 0.1), (replaced, 0.2)):
        assert abs(rate - p) < 4 * np.sqrt(p * (1 - p) / n), (rate, p)


def test_tang_pos_replacement_keeps_the_tag_and_follows_the_unigrams() -> None:
    augmenter = tang(p_mask=0.0, p_pos=1.0, p_ng=0.0)
    rng = np.random.default_rng(1)
    adjectives = []
    for _ in range(2000):
        for (_, tag), new in zip(SENTENCE, augmenter.words(SENTENCE, rng)):
            assert new in ({"cat", "dog"} if tag == "NN" else {"big", "red"})
            if tag == "JJ":
                adjectives.append(new)
    # the corpus has big 3 times, red once: renormalised within JJ, 0.75 and 0.25
    assert abs(np.mean(np.asarray(adjectives) == "big") - 0.75) < 0.02


def test_tang_ngrams_are_contiguous_with_n_up_to_five() -> None:
    augmenter = tang(p_mask=0.0, p_pos=0.0, p_ng=1.0)
    rng = np.random.default_rng(2)
    original = [w for w, _ in SENTENCE]
    lengths = []
    for _ in range(SAMPLES):
        gram = augmenter.words(SENTENCE, rng)
        start = original.index(gram[0])
        assert original[start:start + len(gram)] == gram
        lengths.append(len(gram))
    counts = np.bincount(lengths, minlength=6)[1:]
    assert set(lengths) == {1, 2, 3, 4, 5} and counts.min() > 0.8 * SAMPLES / 5
    # p_ng = 0.25: a quarter of the samples are n-grams
    rng = np.random.default_rng(3)
    shortened = np.mean([len(tang(p_mask=0.0, p_pos=0.0, p_ng=0.25).words(SENTENCE, rng)) < 20 for _ in range(SAMPLES)])
    assert abs(shortened - 0.25) < 0.04


def test_tang_never_touches_special_tokens_and_is_deterministic() -> None:
    sentence = [("[CLS]", "XX"), *SENTENCE[:4], ("[SEP]", "XX")]
    augmenter = tang(p_mask=1.0, p_pos=0.0, p_ng=0.0)
    assert augmenter.words(sentence, np.random.default_rng(0)) == ["[CLS]", MASK, MASK, MASK, MASK, "[SEP]"]
    example = [SENTENCE]
    first = tang().augment(example, np.random.default_rng(7))
    assert first == tang().augment(example, np.random.default_rng(7)) and first != tang().augment(example, np.random.default_rng(8))
    assert 1 <= len(first) <= 20 and len(set(first)) == len(first)


def test_tang_pairs_cycle_first_second_both() -> None:
    first, second = SENTENCE[:5], SENTENCE[5:10]
    out = tang(p_mask=1.0, p_pos=0.0, p_ng=0.0, n_iter=3).augment([first, second], np.random.default_rng(0))
    a, b = " ".join(w for w, _ in first), " ".join(w for w, _ in second)
    masked = " ".join([MASK] * 5)
    assert out == [(masked, b), (a, masked), (masked, masked)]


def test_the_offline_tagger_tags_english() -> None:
    from edgekd.distill.augment.pos import tag

    assert tag(["The cats sat on the mat.", ""]) == [
        [("The", "DT"), ("cats", "NNS"), ("sat", "VBD"), ("on", "IN"), ("the", "DT"), ("mat", "NN"), (".", ".")], []]


@pytest.fixture(scope="module")
def glove() -> GloveNeighbours:
    return GloveNeighbours.packaged()


def test_glove_neighbours_are_sensible(glove: GloveNeighbours) -> None:
    near = glove.neighbours(["monday", "france", "terrible", "notawordatall"], 10)
    assert {"tuesday", "friday"} <= set(near["monday"]) and {"paris", "french"} <= set(near["france"])
    assert {"horrible", "awful"} <= set(near["terrible"]) and near["notawordatall"] == []
    assert all(len(near[w]) == 10 and w not in near[w] for w in ("monday", "france", "terrible"))


@pytest.fixture(scope="module")
def tiny_mlm(tmp_path_factory: pytest.TempPathFactory) -> MlmCandidates:
    import torch
    from transformers import BertForMaskedLM, BertTokenizerFast

    directory = tmp_path_factory.mktemp("tiny-mlm")
    torch.manual_seed(0)
    BertForMaskedLM(testing.tiny_bert_config()).save_pretrained(directory)
    testing.save_tiny_tokenizer(directory)
    tokenizer = BertTokenizerFast.from_pretrained(directory)
    return MlmCandidates(BertForMaskedLM.from_pretrained(directory), tokenizer, k=5, batch_size=3)


def test_mlm_candidates_are_the_models_top_k_and_batching_changes_nothing(tiny_mlm: MlmCandidates) -> None:
    import torch

    tok = tiny_mlm.tokenizer
    sentences = [split_words("the film was good"), split_words("a boring plot , qxzqv"), split_words("happy")]
    batched = tiny_mlm.candidates(sentences)
    # "qxzqv" splits into several pieces: no MLM candidates; "," and the fixture words are single pieces
    assert set(batched[1]) == {0, 1, 2, 3} and set(batched[0]) == {0, 1, 2, 3}
    assert [tiny_mlm.candidates([s])[0] for s in sentences] == batched
    # by hand: mask "good" in "the film was good", take the top 5 allowed pieces
    ids = tok("the film was good", return_tensors="pt")["input_ids"]
    ids[0, 4] = tok.mask_token_id
    with torch.no_grad():
        logits = tiny_mlm.model(input_ids=ids).logits[0, 4].clone()
    logits[tiny_mlm.blocked] = -torch.inf
    logits[tok.convert_tokens_to_ids("good")] = -torch.inf
    assert batched[0][3] == tok.convert_ids_to_tokens(logits.topk(5).indices.tolist())
    for candidates in (c for per in batched for c in per.values()):
        assert not any(c.startswith("##") or c in tok.all_special_tokens for c in candidates)


def test_tinybert_rates_and_sources(tiny_mlm: MlmCandidates, glove: GloveNeighbours) -> None:
    augmenter = TinyBertAugmenter(glove, tiny_mlm, AugmentConfig(method="tinybert", p_t=0.4, k=5, n_a=20))
    [[(words, candidates)]] = augmenter.prepare([("the film was monday qxzqv",)])
    assert words == ["the", "film", "was", "monday", "qxzqv"]
    # single pieces of the tiny vocabulary: the MLM's; "monday" is not one: GloVe's; "qxzqv" is in neither: stays
    mlm = tiny_mlm.candidates([words])[0]
    assert candidates[:3] == [mlm[0], mlm[1], mlm[2]]
    assert candidates[3] == glove.neighbours(["monday"], 5)["monday"] and candidates[4] == []
    rng = np.random.default_rng(0)
    samples = np.asarray([augmenter.sample(words, candidates, rng) for _ in range(SAMPLES)])
    changed = samples[:, :4] != np.asarray(words[:4])
    assert abs(changed.mean() - 0.4) < 4 * np.sqrt(0.24 / changed.size)
    assert (samples[:, 4] == "qxzqv").all()
    copies = augmenter.augment([(words, candidates)], np.random.default_rng(1))
    assert 1 <= len(copies) <= 20 and ("the film was monday qxzqv",) not in copies


def test_tinybert_without_an_mlm_uses_glove_for_every_word(glove: GloveNeighbours) -> None:
    augmenter = TinyBertAugmenter(glove, None, AugmentConfig(method="tinybert", k=4))
    [[first, second]] = augmenter.prepare([("good film", "bad plot")])
    assert first[1] == [glove.neighbours(["good"], 4)["good"], glove.neighbours(["film"], 4)["film"]]
    out = TinyBertAugmenter(glove, None, AugmentConfig(method="tinybert", p_t=1.0, k=4, n_a=3)).augment([first, second], np.random.default_rng(0))
    assert [(a != "good film", b != "bad plot") for a, b in out] == [(True, False), (False, True), (True, True)]


def test_split_words_lowercases_and_splits_punctuation() -> None:
    assert split_words("A gorgeous, witty FILM!") == ["a", "gorgeous", ",", "witty", "film", "!"]
    assert split_words("") == []


def test_glove_chunking_gives_the_same_neighbours(glove: GloveNeighbours) -> None:
    words = ["king", "queen", "paris", "apple"]
    assert glove.neighbours(words, 5, chunk=1) == glove.neighbours(words, 5, chunk=256)



def test_augmenting_a_split_is_cached_and_independent_of_the_process_count(tmp_path) -> None:  # noqa: ANN001
    from edgekd.distill.augment.data import augment

    from edgekd.data import Split

    texts = [(row["sentence"],) for row in testing.fixture_rows(24)]
    split = Split("train", texts, np.asarray([row["label"] for row in testing.fixture_rows(24)]))
    cfg = AugmentConfig(method="tang", n_iter=4, batch_size=5)
    one, facts = augment(split, cfg, 3, tmp_path / "a")
    assert not facts["cached"] and facts["augmented_examples"] == len(one) - 24 > 24
    assert one.texts[:24] == texts and (one.labels[24:] == -1).all() and (one.labels[:24] == split.labels).all()
    # Two worker processes, in a fresh interpreter: forking this test process (threads of JAX and torch) could deadlock.
    script = (
        "import json, sys, numpy as np\n"
        "from edgekd import testing\nfrom edgekd.data import Split\n"
        "from edgekd.config import AugmentConfig\nfrom edgekd.distill.augment.data import augment\n"
        "rows = testing.fixture_rows(24)\n"
        "split = Split('train', [(r['sentence'],) for r in rows], np.asarray([r['label'] for r in rows]))\n"
        "two, facts = augment(split, AugmentConfig(method='tang', n_iter=4, batch_size=7, num_proc=2), 3, sys.argv[1])\n"
        "print(json.dumps(two.texts))\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "b")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert [tuple(t) for t in json.loads(result.stdout.splitlines()[-1])] == one.texts
    again, facts = augment(split, cfg, 3, tmp_path / "a")
    assert facts["cached"] and again.texts == one.texts
    other, _ = augment(split, AugmentConfig(method="tang", n_iter=4), 4, tmp_path / "a")
    assert other.texts != one.texts


def test_a_second_job_in_the_same_process_gets_its_own_augmenter(tmp_path) -> None:  # noqa: ANN001
    from edgekd.distill.augment.data import augment

    from edgekd.data import Split

    split = Split("train", [("the film was good",), ("a bad plot",)], np.asarray([1, 0]))
    augment(split, AugmentConfig(method="tang", n_iter=2), 0, tmp_path)
    masked, _ = augment(split, AugmentConfig(method="tang", p_mask=1.0, p_pos=0.0, p_ng=0.0, n_iter=1), 0, tmp_path)
    assert masked.texts[2:] == [(" ".join([MASK] * 4),), (" ".join([MASK] * 3),)]
