"""Tiny random classifiers of every Hugging Face encoder family edgekd takes (`edgekd.hf_families`), each saved with a
tokenizer of its family's real kind, built in code: nothing is downloaded.

A family's tokenizer is made with the `tokenizers` library from a small fixed English corpus (the fixture task's
sentences, every letter, digit and punctuation mark of the fixture vocabulary; see `_trained` for how each kind's
vocabulary is made deterministic) and assembled the way transformers' converters (`transformers.convert_slow_tokenizer`)
assemble the real one: the same model kind (WordPiece, byte-level BPE, SentencePiece Unigram), normalizer,
pre-tokenizer, pair template and special tokens at the same places, then wrapped in the family's fast tokenizer class,
so that `AutoTokenizer.from_pretrained(directory)` behaves as the family's does (special tokens, pair template, pad id,
model_input_names). SentencePiece's precompiled NFKC charsmap cannot be built without sentencepiece: NFKC stands in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from edgekd import testing
from edgekd.hf_config import PADDING_OFFSET_FAMILIES
from edgekd.hf_families import HF_FAMILIES

BERT_ROLES = {"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "unk_token": "[UNK]", "mask_token": "[MASK]"}
ROBERTA_ROLES = {"bos_token": "<s>", "eos_token": "</s>", "cls_token": "<s>", "sep_token": "</s>", "pad_token": "<pad>",
                 "unk_token": "<unk>", "mask_token": "<mask>"}
BERT_PAIR = "[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1"


@dataclass(frozen=True)
class TinyTokenizer:
    """How one family's tiny tokenizer is built."""

    kind: Literal["wordpiece", "bpe", "unigram"]
    # The transformers fast class AutoTokenizer gives for the family, and its special-token roles.
    fast_class: str
    roles: dict[str, str]
    # Special tokens at the start of the vocabulary (ids 0, 1, ...), and those appended after the corpus's pieces
    # (XLM-R's <mask> and DeBERTa-v3's [MASK] are the last ids of theirs; ModernBERT's specials are all at the end).
    first: tuple[str, ...]
    last: tuple[str, ...] = ()
    # The pair template (`tokenizers` TemplateProcessing); None: RoBERTa's own RobertaProcessing.
    pair: str | None = BERT_PAIR
    # The normalizer of the family's converter (see `_normalizer`).
    normalizer: Literal["bert", "none", "nfc", "spm", "deberta"] = "bert"
    # The most pieces a BPE or Unigram vocabulary gets (WordPiece takes the fixture vocabulary, `testing.tiny_vocab`).
    vocab_size: int = 200
    # Extra arguments of the fast class.
    options: dict[str, Any] = field(default_factory=dict)


def _bert_like(fast_class: str) -> TinyTokenizer:
    """BERT's uncased WordPiece tokenizer ([PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, [MASK] 4), in another family's class."""
    return TinyTokenizer("wordpiece", fast_class, BERT_ROLES, first=tuple(testing.SPECIAL), options={"do_lower_case": True})


FAMILY_TOKENIZERS: dict[str, TinyTokenizer] = {
    "bert": _bert_like("BertTokenizerFast"),
    "electra": _bert_like("ElectraTokenizerFast"),
    "distilbert": _bert_like("DistilBertTokenizerFast"),
    # MPNet's vocabulary is BERT's behind RoBERTa's four specials: it holds BERT's [PAD] too, which is not its pad.
    "mpnet": TinyTokenizer(
        "wordpiece", "MPNetTokenizerFast", {**ROBERTA_ROLES, "unk_token": "[UNK]"},
        first=("<s>", "<pad>", "</s>", "<unk>", "[PAD]", "[UNK]", "<mask>"), pair="<s>:0 $A:0 </s>:0 </s>:0 $B:1 </s>:1",
        options={"do_lower_case": True},
    ),
    "roberta": TinyTokenizer(
        "bpe", "RobertaTokenizerFast", ROBERTA_ROLES, first=("<s>", "<pad>", "</s>", "<unk>", "<mask>"), pair=None,
        normalizer="none", vocab_size=320, options={"add_prefix_space": False, "trim_offsets": True},
    ),
    "xlm-roberta": TinyTokenizer(
        "unigram", "XLMRobertaTokenizerFast", ROBERTA_ROLES, first=("<s>", "<pad>", "</s>", "<unk>"), last=("<mask>",),
        pair="<s>:0 $A:0 </s>:0 </s>:0 $B:0 </s>:0", normalizer="spm",
    ),
    # DeBERTa-v3's template and ids: [PAD] 0, [CLS] 1, [SEP] 2, [UNK] 3, [MASK] last; token type ids 0 and 1.
    "deberta-v2": TinyTokenizer(
        "unigram", "DebertaV2TokenizerFast", BERT_ROLES, first=("[PAD]", "[CLS]", "[SEP]", "[UNK]"), last=("[MASK]",),
        normalizer="deberta", options={"do_lower_case": False, "split_by_punct": False},
    ),
    # ModernBERT's (OLMo's) vocabulary opens with two added tokens (one named like a pad, which is not its pad) and
    # ends with BERT's specials; its tokenizer is the generic fast class and takes no token type ids.
    "modernbert": TinyTokenizer(
        "bpe", "PreTrainedTokenizerFast", BERT_ROLES, first=("|||IP_ADDRESS|||", "<|padding|>"),
        last=("[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"), normalizer="nfc", vocab_size=320,
        options={"model_input_names": ["input_ids", "attention_mask"]},
    ),
}

_SIZES = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
_NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
# Each family's config arguments at the tiny size. Families that number positions after the pad id (RoBERTa, XLM-R,
# MPNet: `PADDING_OFFSET_FAMILIES`) get `pad_token_id + 1` more position embeddings, so that all take 128 tokens.
FAMILY_CONFIGS: dict[str, dict[str, Any]] = {
    "bert": {**_SIZES, **_NO_DROPOUT},
    # ELECTRA-small's embeddings are narrower than its hidden size (a projection between them).
    "electra": {**_SIZES, **_NO_DROPOUT, "embedding_size": 16},
    "roberta": {**_SIZES, **_NO_DROPOUT, "type_vocab_size": 1},
    "xlm-roberta": {**_SIZES, **_NO_DROPOUT, "type_vocab_size": 1},
    "distilbert": {"dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64, "dropout": 0.0, "attention_dropout": 0.0},
    "mpnet": {**_SIZES, **_NO_DROPOUT},
    # DeBERTa-v3: relative positions only (no absolute table), and no token-type table (type_vocab_size 0: the model
    # takes token_type_ids and ignores them).
    "deberta-v2": {**_SIZES, **_NO_DROPOUT, "type_vocab_size": 0, "relative_attention": True, "position_biased_input": False,
                   "pos_att_type": ["p2c", "c2p"], "max_relative_positions": -1, "position_buckets": 32,
                   "norm_rel_ebd": "layer_norm", "share_att_key": True},
    # Layer 0 global, layer 1 local (a window of 64); no torch.compile of the reference path.
    "modernbert": {**_SIZES, "global_attn_every_n_layers": 2, "local_attention": 64, "reference_compile": False},
}
MAX_POSITIONS = 128


def family_corpus() -> list[str]:
    """The fixed English text the tiny vocabularies come from: fixture sentences and every fixture character."""
    sentences = [row["sentence"] for row in testing.fixture_rows(128, seed=0)]
    # Every other sentence written as a sentence (capital, full stop): the cased vocabularies learn capitals too.
    sentences = [s.capitalize() + "." if n % 2 else s for n, s in enumerate(sentences)]
    characters = [piece for piece in testing.tiny_vocab() if len(piece) == 1]
    characters += [c.upper() for c in characters if c.isalpha()]
    return sentences + [" ".join(testing.POSITIVE + testing.NEGATIVE + testing.FILLER), " ".join(characters)]


def family_tokenizer(model_type: str) -> Any:
    """The family's fast tokenizer (a transformers PreTrainedTokenizerFast), its vocabulary from `family_corpus()`."""
    import transformers

    recipe = _recipe(model_type)
    backend = _trained(recipe)
    backend.add_special_tokens(list(recipe.last))
    cls, sep = recipe.roles["cls_token"], recipe.roles["sep_token"]
    ids = {token: backend.token_to_id(token) for token in (cls, sep)}
    backend.post_processor = _post_processor(recipe, cls, sep, ids)
    fast_class = getattr(transformers, recipe.fast_class)
    return fast_class(tokenizer_object=backend, **recipe.roles, **recipe.options)


def save_family_tokenizer(model_type: str, directory: Path) -> Any:
    """Write the family's tokenizer to `directory` (save_pretrained: tokenizer.json and its config); return it."""
    tokenizer = family_tokenizer(model_type)
    tokenizer.save_pretrained(directory)
    return tokenizer


def tiny_family(
    model_type: str, directory: Path, *, num_labels: int = 2,
    problem: Literal["single_label_classification", "multi_label_classification", "regression"] = "single_label_classification",
    seed: int = 0,
) -> Path:
    """Write a tiny random `AutoModelForSequenceClassification` of the family (hidden 32, 2 layers, 2 heads, FFN 64,
    128 tokens, eager attention, seeded) with its tokenizer to `directory` (safetensors); return the directory.
    `problem` is transformers' problem_type (a regression takes num_labels=1)."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    tokenizer = save_family_tokenizer(model_type, directory)
    pad = tokenizer.pad_token_id
    positions = MAX_POSITIONS + (pad + 1 if model_type in PADDING_OFFSET_FAMILIES else 0)
    config = AutoConfig.for_model(model_type, **FAMILY_CONFIGS[model_type], vocab_size=len(tokenizer), pad_token_id=pad,
                                  max_position_embeddings=positions, num_labels=num_labels, problem_type=problem)
    # The other special ids a config names (RoBERTa's and MPNet's bos/eos; ModernBERT's cls/sep, and bos/eos, which
    # its tokenizer lacks, are cls/sep) are the tokenizer's, not the defaults of a full-size vocabulary.
    special = {"cls": tokenizer.cls_token_id, "sep": tokenizer.sep_token_id}
    special["bos"] = special["cls"] if tokenizer.bos_token_id is None else tokenizer.bos_token_id
    special["eos"] = special["sep"] if tokenizer.eos_token_id is None else tokenizer.eos_token_id
    for role, token_id in special.items():
        if getattr(config, f"{role}_token_id", None) is not None:
            setattr(config, f"{role}_token_id", token_id)
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(config, attn_implementation="eager")
    model.save_pretrained(directory, safe_serialization=True)
    return directory


def _recipe(model_type: str) -> TinyTokenizer:
    if model_type not in FAMILY_TOKENIZERS:
        raise KeyError(f"no tiny tokenizer for family {model_type!r}; families: {', '.join(FAMILY_TOKENIZERS)}")
    return FAMILY_TOKENIZERS[model_type]


def _trained(recipe: TinyTokenizer) -> Any:
    """A `tokenizers.Tokenizer` of the recipe's kind, normalizer and pre-tokenizer, its vocabulary from the corpus.

    Only the byte-level BPE trainer is deterministic: the library's WordPiece and Unigram trainers break ties between
    equally frequent candidates in hash order, a different vocabulary in every process. WordPiece takes the fixture
    vocabulary (`testing.tiny_vocab`: words, characters, ## continuations); Unigram scores the corpus's frequent
    substrings by their log frequency (SentencePiece's seed pieces, without its pruning rounds)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    unk = recipe.roles["unk_token"]
    if recipe.kind == "wordpiece":
        pieces = list(dict.fromkeys([*recipe.first, *testing.tiny_vocab()[len(testing.SPECIAL):]]))
        tokenizer = Tokenizer(models.WordPiece({piece: i for i, piece in enumerate(pieces)}, unk_token=unk))
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece(prefix="##")
    elif recipe.kind == "bpe":
        # Byte-level: every byte is a piece, so no text is unknown (ModernBERT's BPE has no unk token).
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
        tokenizer.decoder = decoders.ByteLevel()
    else:
        tokenizer = Tokenizer(models.Unigram())
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
        tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    normalizer = _normalizer(recipe.normalizer)
    if normalizer is not None:
        tokenizer.normalizer = normalizer
    if recipe.kind == "bpe":
        trainer = trainers.BpeTrainer(vocab_size=recipe.vocab_size, special_tokens=list(recipe.first), show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tokenizer.train_from_iterator(family_corpus(), trainer)
    else:
        if recipe.kind == "unigram":
            scored = [(piece, 0.0) for piece in recipe.first] + _unigram_pieces(tokenizer, recipe.vocab_size - len(recipe.first))
            tokenizer.model = models.Unigram(scored, unk_id=recipe.first.index(unk), byte_fallback=False)
        tokenizer.add_special_tokens(list(recipe.first))
    return tokenizer


def _unigram_pieces(tokenizer: Any, count: int) -> list[tuple[str, float]]:
    """The corpus's `count` most frequent substrings (up to 6 characters) of its pre-tokenized words, every single
    character among them, scored by their log frequency, most frequent first (ties by the piece)."""
    import math
    from collections import Counter

    words: Counter[str] = Counter()
    for text in family_corpus():
        words.update(word for word, _ in tokenizer.pre_tokenizer.pre_tokenize_str(tokenizer.normalizer.normalize_str(text)))
    substrings: Counter[str] = Counter()
    for word, times in words.items():
        for start in range(len(word)):
            for end in range(start + 1, min(len(word), start + 6) + 1):
                substrings[word[start:end]] += times
    characters = sorted(piece for piece in substrings if len(piece) == 1)
    longer = sorted((piece for piece in substrings if len(piece) > 1), key=lambda piece: (-substrings[piece], piece))
    chosen = characters + longer[: max(count - len(characters), 0)]
    total = sum(substrings[piece] for piece in chosen)
    return sorted(((piece, math.log(substrings[piece] / total)) for piece in chosen), key=lambda item: (-item[1], item[0]))


def _normalizer(name: str) -> Any:
    """The normalizer transformers' converter gives the family: BERT's (lowercasing, Chinese characters split),
    none (RoBERTa), NFC (ModernBERT), SentencePiece's (XLM-R) or DeBERTa-v3's."""
    from tokenizers import Regex, normalizers

    runs_of_spaces = Regex(" {2,}")
    if name == "bert":
        return normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)
    if name == "nfc":
        return normalizers.NFC()
    if name == "spm":
        return normalizers.Sequence([normalizers.NFKC(), normalizers.Strip(left=False, right=True),
                                     normalizers.Replace(runs_of_spaces, "▁")])
    if name == "deberta":
        return normalizers.Sequence([normalizers.Strip(), normalizers.NFKC(), normalizers.Replace(runs_of_spaces, " ")])
    return None


def _post_processor(recipe: TinyTokenizer, cls: str, sep: str, ids: dict[str, int]) -> Any:
    """The family's special-token template: `cls A sep` for one text, the recipe's pair template for two."""
    from tokenizers import processors

    if recipe.pair is None:
        return processors.RobertaProcessing((sep, ids[sep]), (cls, ids[cls]), add_prefix_space=False, trim_offsets=True)
    return processors.TemplateProcessing(single=f"{cls}:0 $A:0 {sep}:0", pair=recipe.pair, special_tokens=list(ids.items()))


def missing_families() -> list[str]:
    """Families of `edgekd.hf_families` without a tiny tokenizer or model config here (a coverage test reads it)."""
    return sorted(set(HF_FAMILIES) - (set(FAMILY_TOKENIZERS) & set(FAMILY_CONFIGS)))
