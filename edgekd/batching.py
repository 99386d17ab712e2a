"""Training batches: a split's token ids through a Hugging Face tokenizer (`encode`), padded batches, length-grouped
batch orders, and examples spread over the length range (golden inputs, parity and calibration samples)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekd.data import Split
from edgekd.truncation import longest_first


@dataclass(frozen=True)
class Encoded:
    """Token ids of every example of a split, unpadded; `pad_batch` pads a batch to its own longest member."""

    input_ids: list[np.ndarray]
    # None for a model that takes no segment ids (RoBERTa, DistilBERT, MPNet, ModernBERT): its batches hold none.
    token_type_ids: list[np.ndarray] | None
    labels: np.ndarray
    # What input_ids are padded with: the tokenizer's pad id (RoBERTa's and MPNet's is 1, BERT's 0).
    pad_id: int = 0

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(ids) for ids in self.input_ids), dtype=np.int64, count=len(self.input_ids))

    def __len__(self) -> int:
        return len(self.input_ids)


def encode(tokenizer: Any, split: Split, max_length: int, *, token_type_ids: bool = True, batch: int = 2048) -> Encoded:
    """Tokenize a split with a Hugging Face tokenizer, truncating to `max_length`, without padding; `token_type_ids`:
    whether the model the ids are for takes segment ids (`edgekd.hf_families.model_inputs`)."""
    input_ids: list[np.ndarray] = []
    segment_ids: list[np.ndarray] = []
    # Pairs through a fast tokenizer are encoded whole and cut by `longest_first` (the same positions as
    # `truncation=True`), since the library's own pair truncation needs memory quadratic in the texts' lengths.
    pairs = bool(split.texts) and len(split.texts[0]) == 2 and getattr(tokenizer, "is_fast", False)
    room = max_length - tokenizer.num_special_tokens_to_add(pair=True) if pairs else 0
    for start in range(0, len(split), batch):
        chunk = split.texts[start : start + batch]
        columns = [list(c) for c in zip(*chunk)]
        if not pairs:
            out = tokenizer(*columns, truncation=True, max_length=max_length, return_token_type_ids=True)
            input_ids += [np.asarray(ids, dtype=np.int64) for ids in out["input_ids"]]
            segment_ids += [np.asarray(ids, dtype=np.int64) for ids in out["token_type_ids"]]
            continue
        out = tokenizer(*columns, truncation=False, return_token_type_ids=True, verbose=False)
        for row, (ids, types) in enumerate(zip(out["input_ids"], out["token_type_ids"])):
            keep = longest_first(out.sequence_ids(row), room) if len(ids) > max_length else range(len(ids))
            input_ids.append(np.asarray([ids[k] for k in keep], dtype=np.int64))
            segment_ids.append(np.asarray([types[k] for k in keep], dtype=np.int64))
    pad_id = tokenizer.pad_token_id
    return Encoded(input_ids=input_ids, token_type_ids=segment_ids if token_type_ids else None, labels=split.labels,
                   pad_id=0 if pad_id is None else int(pad_id))


def pad_batch(encoded: Encoded, indices: list[int] | np.ndarray) -> dict[str, np.ndarray]:
    """Pad the examples at `indices` to the batch's longest: input_ids (with the tokenizer's pad id), attention_mask,
    token_type_ids where the model takes them, labels."""
    width = max(len(encoded.input_ids[i]) for i in indices)
    input_ids = np.full((len(indices), width), encoded.pad_id, dtype=np.int64)  # (batch, seq)
    attention_mask = np.zeros((len(indices), width), dtype=np.int64)
    token_type_ids = np.zeros((len(indices), width), dtype=np.int64)
    for row, i in enumerate(indices):
        n = len(encoded.input_ids[i])
        input_ids[row, :n] = encoded.input_ids[i]
        attention_mask[row, :n] = 1
        if encoded.token_type_ids is not None:
            token_type_ids[row, :n] = encoded.token_type_ids[i]
    segments = {"token_type_ids": token_type_ids} if encoded.token_type_ids is not None else {}
    return {"input_ids": input_ids, "attention_mask": attention_mask, **segments, "labels": encoded.labels[np.asarray(indices)]}


def length_grouped_batches(lengths: np.ndarray, batch_size: int, seed: int, group: bool = True) -> list[np.ndarray]:
    """Shuffled batches of indices; with `group`, members of a batch have similar lengths (less padding).

    Indices are shuffled, cut into mega-batches of 50 batches, each sorted by length and cut into batches; then the
    batch order is shuffled, so the model does not see lengths in order.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths))
    if group:
        mega = batch_size * 50
        order = np.concatenate(
            [chunk[np.argsort(-lengths[chunk], kind="stable")] for chunk in np.array_split(order, max(1, -(-len(order) // mega)))]
        )
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if group:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def eval_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Batches for inference: sorted by length so that padding is minimal; order does not matter."""
    order = np.argsort(-lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def spread_by_length(lengths: np.ndarray, count: int) -> np.ndarray:
    """Indices of up to `count` examples spread evenly over the length range, shortest to longest (golden inputs)."""
    order = np.argsort(lengths, kind="stable")
    picks = order[np.linspace(0, len(order) - 1, min(count, len(order))).round().astype(int)]
    return np.unique(picks)
