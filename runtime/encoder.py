"""Text to model inputs without torch or transformers: any transformers `tokenizer.json` (WordPiece, byte-level BPE,
SentencePiece Unigram) through the `tokenizers` library, or the BiLSTM's word tokenizer. The ids are exactly those
training used (tests compare them with transformers' tokenizer for every family of `edgekd.hf_families`).

An encoder turns texts (one or two strings each) into unpadded examples; `collate` pads a batch of them, to the
batch's longest member (ONNX, dynamic axes) or to a fixed width (TFLite sequence buckets).

What differs between families is in the tokenizer file or the manifest, never in a branch here: the special tokens and
the pair template (`[CLS] A [SEP] B [SEP]`, RoBERTa's `<s> A </s></s> B </s>`) are the file's post-processor; the pad
id is the manifest's `tokenizer.pad_id`; and whether `token_type_ids` is produced follows the model's input names (the
manifest's `inputs`: RoBERTa, DistilBERT, MPNet and ModernBERT take none).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from edgekd.bundle import SUBWORD_KINDS, TOKENIZER_CONFIG, TOKENIZER_JSON, Bundle
from edgekd.errors import BundleError, DataError
from edgekd.files import read_at_most
from edgekd.truncation import longest_first

from .word_tokenizer import PAD_ID, VOCAB_FILE, WordTokenizer

if TYPE_CHECKING:
    from tokenizers import Tokenizer

# One example: sequence inputs as 1-D int64 arrays, per-example scalars (BiLSTM lengths) as ints.
Example = dict[str, "np.ndarray | int"]
Texts = Sequence[str | Sequence[str]]
# The one file of its tokenizer that each encoder reads (a bundle's runtime reads it only when listed).
TOKENIZER_FILES = {**{kind: TOKENIZER_JSON for kind in SUBWORD_KINDS.values()}, "word": VOCAB_FILE}
# TOKENIZER_CONFIG, transformers' record of the tokenizer's special tokens, written beside tokenizer.json by
# save_pretrained: where the pad token is named when a manifest has no pad id (tokenizer.json does not say which pads).
MAX_TOKENIZER_CONFIG_BYTES = 16 << 20
# The inputs a subword encoder can give, in the order of its examples' keys.
SUBWORD_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class Encoder(Protocol):
    names: tuple[str, ...]
    pad_id: int
    max_length: int

    def encode(self, texts: Texts) -> list[Example]: ...

    def largest_id(self) -> int: ...


def as_examples(texts: Texts, columns: int) -> list[tuple[str, ...]]:
    """Normalise texts to tuples of `columns` strings; a wrong shape or a non-string is a DataError."""
    examples = []
    for number, text in enumerate(texts):
        example = (text,) if isinstance(text, str) else tuple(text) if isinstance(text, (list, tuple)) else (text,)
        if len(example) != columns or not all(isinstance(part, str) for part in example):
            shape = "one string" if columns == 1 else f"{columns} strings (a sentence pair)"
            raise DataError(f"text {number}: {text!r} is not {shape}, which this model takes")
        examples.append(example)
    return examples


class SubwordEncoder:
    """Transformer inputs (input_ids, attention_mask and, when the model takes them, token_type_ids) from a saved
    `tokenizer.json` of any kind in `SUBWORD_KINDS`.

    `kind`: the manifest's tokenizer type, checked against the file (None: not checked). `inputs`: the model's input
    names; token_type_ids is given only when they hold it (None: given, as a BERT takes them). `pad_id`: the
    manifest's pad id (None: the pad token named in the folder's tokenizer_config.json, else [PAD], else 0).
    """

    def __init__(
        self, tokenizer_dir: Path, max_length: int, columns: int, *, kind: str | None = None,
        inputs: Collection[str] | None = None, pad_id: int | None = None,
    ) -> None:
        from tokenizers import Tokenizer

        path = tokenizer_dir / TOKENIZER_JSON
        if not path.is_file():
            raise BundleError(f"{tokenizer_dir}: no tokenizer.json; the runtime needs a fast (Rust) tokenizer file there")
        try:
            self.tokenizer = Tokenizer.from_file(str(path))
            specials = self.tokenizer.num_special_tokens_to_add(is_pair=columns == 2)
        except Exception as exc:  # noqa: BLE001 - `tokenizers` raises plain Exception for a file it cannot read
            reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
            raise BundleError(f"{path}: not a tokenizer file the `tokenizers` library reads ({reason}); re-create the bundle "
                              "with the stage that wrote it (it saves the tokenizer with transformers' save_pretrained)") from None
        self.kind = SUBWORD_KINDS.get(type(self.tokenizer.model).__name__)
        if kind is not None and kind != self.kind:
            found = self.kind or type(self.tokenizer.model).__name__
            raise BundleError(f"{path}: the manifest's tokenizer type is {kind!r}, but the file holds a {found!r} tokenizer; "
                              "re-create the bundle with the stage that wrote it (it records the file's type)")
        if max_length < specials:
            # `tokenizers` (and transformers through it) does not truncate at all below this: texts of any length.
            shape = "a sentence pair" if columns == 2 else "a text"
            raise BundleError(f"{tokenizer_dir}: max_length {max_length} cannot hold the {specials} special tokens of {shape}; "
                              f"re-create the bundle with max_length of at least {specials}")
        self.tokenizer.no_padding()
        if columns == 1:
            # transformers' `truncation=True`: keep the special tokens and the first max_length - specials pieces.
            self.tokenizer.enable_truncation(max_length, strategy="longest_first")
        else:
            # Pairs are truncated by `longest_first`: the library's own pair truncation joins every overflowing
            # window of one text with every window of the other, memory quadratic in the texts' lengths (two
            # 10,000-character texts at max_length 32: 25k encodings, 0.7 GB for one pair).
            self.tokenizer.no_truncation()
        self.max_length, self.columns = max_length, columns
        self.room = max_length - specials  # pieces of text a pair keeps (RoBERTa's template takes 4 specials, BERT's 3)
        self.names = tuple(n for n in SUBWORD_INPUTS if n != "token_type_ids" or inputs is None or n in inputs)
        self.pad_id = pad_id if pad_id is not None else _folder_pad_id(self.tokenizer, tokenizer_dir)

    def largest_id(self) -> int:
        """The largest token id the tokenizer can emit (vocabulary and added tokens; ids need not be contiguous)."""
        return max(self.tokenizer.get_vocab(with_added_tokens=True).values(), default=0)

    def encode(self, texts: Texts) -> list[Example]:
        examples = as_examples(texts, self.columns)
        batch = self.tokenizer.encode_batch([e[0] if self.columns == 1 else e for e in examples])
        rows = []
        for out in batch:
            inputs = {"input_ids": out.ids, "attention_mask": out.attention_mask, "token_type_ids": out.type_ids}
            if len(out.ids) > self.max_length:  # a pair longer than max_length (a single text is already truncated)
                keep = longest_first(out.sequence_ids, self.room)
                inputs = {name: [values[i] for i in keep] for name, values in inputs.items()}
            rows.append({name: np.asarray(inputs[name], dtype=np.int64) for name in self.names})
        return rows


# The name existing callers and tests use; the encoder reads BPE and Unigram files as well.
WordPieceEncoder = SubwordEncoder


def _folder_pad_id(tokenizer: Tokenizer, tokenizer_dir: Path) -> int:
    """The pad id of a tokenizer folder whose manifest records none: the pad token transformers named in
    tokenizer_config.json (MPNet's vocabulary holds both `<pad>`, its pad, and BERT's `[PAD]`), else `[PAD]`, else 0
    (what the runtime padded with before pad ids were recorded: every such bundle is a BERT)."""
    path = tokenizer_dir / TOKENIZER_CONFIG
    named = None
    if path.is_file():
        try:
            named = json.loads(read_at_most(path, MAX_TOKENIZER_CONFIG_BYTES, BundleError, "tokenizer config")).get("pad_token")
        except (ValueError, AttributeError, RecursionError) as exc:
            raise BundleError(f"{path}: not a tokenizer config (a JSON object) ({str(exc)[:200]}); re-create the bundle "
                              "with the stage that wrote it") from None
    if isinstance(named, dict):  # older transformers wrote an AddedToken's fields
        named = named.get("content")
    for token in (named, "[PAD]"):
        found = tokenizer.token_to_id(token) if isinstance(token, str) else None
        if found is not None:
            return int(found)
    return 0


class WordEncoder:
    """BiLSTM inputs (input_ids and lengths, and input_ids_b and lengths_b for pairs) from `word_vocab.json`."""

    pad_id = PAD_ID

    def __init__(self, tokenizer_dir: Path, max_length: int, columns: int) -> None:
        if not (tokenizer_dir / VOCAB_FILE).is_file():
            raise BundleError(f"{tokenizer_dir}: no {VOCAB_FILE}; the BiLSTM's word vocabulary is missing")
        self.tokenizer = WordTokenizer.load(tokenizer_dir)
        self.tokenizer.max_length = max_length
        self.max_length, self.columns = max_length, columns
        self.names = ("input_ids", "lengths") + (("input_ids_b", "lengths_b") if columns == 2 else ())

    def largest_id(self) -> int:
        return len(self.tokenizer) - 1

    def encode(self, texts: Texts) -> list[Example]:
        out = []
        for example in as_examples(texts, self.columns):
            row: Example = {}
            for suffix, text in zip(("", "_b"), example):
                ids = np.asarray(self.tokenizer.encode(text), dtype=np.int64)
                row[f"input_ids{suffix}"], row[f"lengths{suffix}"] = ids, len(ids)
            out.append(row)
        return out


def load_encoder(
    tokenizer_dir: Path, kind: str, max_length: int, columns: int, *, inputs: Collection[str] | None = None,
    pad_id: int | None = None,
) -> Encoder:
    """The encoder for a bundle's tokenizer facts (`manifest.tokenizer`); `inputs` and `pad_id` as `SubwordEncoder`
    takes them (the word encoder's inputs follow from `columns`)."""
    if kind in SUBWORD_KINDS.values():
        return SubwordEncoder(tokenizer_dir, max_length, columns, kind=kind, inputs=inputs, pad_id=pad_id)
    if kind == "word":
        return WordEncoder(tokenizer_dir, max_length, columns)
    raise BundleError(f"tokenizer type {kind!r} is unknown; valid: {', '.join(TOKENIZER_FILES)}")


def bundle_encoder(bundle: Bundle, max_length: int | None = None) -> Encoder:
    """The encoder of a bundle's tokenizer (at its max length, or a shorter `max_length`: a TFLite bucket), giving the
    inputs its model takes (the manifest's `inputs`) and padding with its pad id."""
    manifest = bundle.manifest
    tokenizer = manifest.tokenizer
    return load_encoder(bundle.tokenizer_dir, tokenizer.type, max_length or tokenizer.max_length, manifest.task.columns,
                        inputs=[spec.name for spec in manifest.inputs], pad_id=tokenizer.pad_id)


def probe_example(encoder: Encoder, token_id: int) -> Example:
    """One example of a single token `token_id` in every sequence input (masks 1, type ids 0, lengths 1): run once at
    load, it shows whether the model's embedding table holds the tokenizer's largest id."""
    example: Example = {}
    for name in encoder.names:
        if name.startswith("input_ids"):
            example[name] = np.asarray([token_id], dtype=np.int64)
        elif name.startswith("lengths"):
            example[name] = 1
        else:  # attention_mask, token_type_ids
            example[name] = np.asarray([1 if name == "attention_mask" else 0], dtype=np.int64)
    return example


def collate(examples: Sequence[Example], pad_id: int, width: int | None = None) -> dict[str, np.ndarray]:
    """Stack examples into a batch: sequences padded (input ids with `pad_id`, masks and type ids with 0) to `width`
    or to the batch's longest member, scalars into (batch,) arrays."""
    batch: dict[str, np.ndarray] = {}
    for name in examples[0]:
        values = [example[name] for example in examples]
        if isinstance(values[0], np.ndarray):
            size = width or max(len(v) for v in values)
            fill = pad_id if name.startswith("input_ids") else 0
            padded = np.full((len(values), size), fill, dtype=np.int64)  # (batch, seq)
            for row, value in enumerate(values):
                assert isinstance(value, np.ndarray) and len(value) <= size, "truncated by the encoder"
                padded[row, : len(value)] = value
            batch[name] = padded
        else:
            batch[name] = np.asarray(values, dtype=np.int64)
    return batch


def sequence_length(example: Example) -> int:
    """The longest sequence input of an example (a TFLite bucket must hold it)."""
    return max(len(v) for v in example.values() if isinstance(v, np.ndarray))
