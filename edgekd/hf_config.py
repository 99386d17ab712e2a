"""Facts read from a model's config.json with `json` alone (no torch): whether its sizes are sane, and how long an
input its position embeddings take.

A model is built from these numbers before a single weight is read, so a damaged or hostile file (a vocabulary of
4e9 entries: an 800 GB embedding table) is refused here, in one line, before torch tries to allocate it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgekd.errors import EdgekdError
from edgekd.files import read_at_most

# A config.json is a page of JSON; the largest real ones (with their label maps) are a few hundred kilobytes.
MAX_CONFIG_BYTES = 4 << 20
# The largest encoder worth distilling here: XLM-R XXL has 10.7 billion parameters (43 GB of float32).
MAX_PARAMETERS = 12_000_000_000
# Sizes that index tensors: above int32 is no real model.
MAX_SIZE = 2**31 - 1
# The size fields a BERT-family config.json may hold, with the other names some families give them (DistilBERT's
# `dim`, `n_layers`, `hidden_dim`; ALBERT's embedding_size).
SIZE_FIELDS = {
    "vocab_size": ("vocab_size",),
    "hidden_size": ("hidden_size", "dim", "d_model"),
    "num_hidden_layers": ("num_hidden_layers", "n_layers", "num_layers"),
    "intermediate_size": ("intermediate_size", "hidden_dim", "ffn_dim"),
    "max_position_embeddings": ("max_position_embeddings",),
    "num_attention_heads": ("num_attention_heads", "n_heads"),
    "type_vocab_size": ("type_vocab_size",),
    "embedding_size": ("embedding_size",),
}
# Sizes that may be 0: DeBERTa-v3 has no token-type table (type_vocab_size 0).
MAY_BE_ZERO = frozenset({"type_vocab_size", "num_hidden_layers"})
# Families whose position ids start after the padding id (fairseq's convention): positions 0 .. pad_token_id are
# never given to text, so RoBERTa's 514 position embeddings take 512 tokens.
PADDING_OFFSET_FAMILIES = frozenset({
    "roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "mpnet", "data2vec-text", "longformer", "ibert", "luke",
    "roberta-prelayernorm", "xmod", "bertweet", "phobert",
})
# Families with relative positions only when `position_biased_input` is false (DeBERTa v1 base, DeBERTa-v3): no table
# of absolute positions limits the input.
RELATIVE_POSITION_FAMILIES = frozenset({"deberta", "deberta-v2"})


def read_model_config(path: Path, error: type[EdgekdError]) -> dict[str, Any]:
    """A config.json as a mapping; a file too large, unreadable, not JSON or not an object is `error` naming it."""
    data = read_at_most(path, MAX_CONFIG_BYTES, error, "model's config.json")
    try:
        config = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise error(f"{path}: not a JSON model config ({str(exc)[:200]})") from None
    if not isinstance(config, dict):
        raise error(f"{path}: a model's config.json is a JSON object, found {type(config).__name__}")
    return config


def size(config: dict[str, Any], field: str) -> int | None:
    """A size field under any of its names; None when absent (its family has no such size)."""
    for name in SIZE_FIELDS[field]:
        if config.get(name) is not None:
            return config[name]
    return None


def check_sizes(config: dict[str, Any], where: str, error: type[EdgekdError]) -> None:
    """Refuse a config whose sizes are not positive whole numbers, or that describes more than MAX_PARAMETERS
    parameters (the model would be allocated before its weights are read)."""
    sizes: dict[str, int] = {}
    for field in SIZE_FIELDS:
        value = size(config, field)
        if value is None:
            continue
        low = 0 if field in MAY_BE_ZERO else 1
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_SIZE:
            raise error(f"{where}: {field} is {str(value)[:60]}; a model's sizes are whole numbers from {low} to {MAX_SIZE:,}: "
                        "the config.json is damaged or not a text encoder's")
        sizes[field] = value
    parameters = estimated_parameters(sizes)
    if parameters > MAX_PARAMETERS:
        shown = ", ".join(f"{k} {v:,}" for k, v in sizes.items() if k in ("vocab_size", "hidden_size", "num_hidden_layers",
                                                                           "intermediate_size", "max_position_embeddings"))
        raise error(f"{where}: describes a model of about {parameters:.3g} parameters ({shown}), more than the "
                    f"{MAX_PARAMETERS / 1e9:.0f} billion edgekd builds (about {4 * parameters / 1e9:.3g} GB of float32 "
                    "to allocate before a weight is read); the config.json is damaged or not this model's")


def estimated_parameters(sizes: dict[str, int]) -> int:
    """A BERT-shaped model's parameter count from its sizes: embedding tables, then per layer the four attention
    projections and the two FFN matrices (biases and norms are a rounding error). Absent sizes count as BERT's
    ratios (FFN 4x hidden) or as nothing."""
    hidden = sizes.get("hidden_size", 0)
    embedding = sizes.get("embedding_size", hidden)
    table_rows = sizes.get("vocab_size", 0) + sizes.get("max_position_embeddings", 0) + sizes.get("type_vocab_size", 0)
    intermediate = sizes.get("intermediate_size", 4 * hidden)
    per_layer = 4 * hidden * hidden + 2 * hidden * intermediate
    return table_rows * embedding + sizes.get("num_hidden_layers", 0) * per_layer


def position_limit(config: dict[str, Any]) -> tuple[int, str] | None:
    """The longest input (in tokens, special tokens included) the model's position embeddings take, and a note on
    how it follows from the config; None when the model has no absolute position table (or the config says nothing)."""
    family = str(config.get("model_type", ""))
    positions = config.get("max_position_embeddings")
    if isinstance(positions, bool) or not isinstance(positions, int):
        return None
    if family in RELATIVE_POSITION_FAMILIES and not config.get("position_biased_input", True):
        return None
    if family in PADDING_OFFSET_FAMILIES:
        pad = config.get("pad_token_id")
        reserved = (pad if isinstance(pad, int) and not isinstance(pad, bool) and pad >= 0 else 1) + 1
        return positions - reserved, f"max_position_embeddings {positions}, of which {family} reserves {reserved}"
    return positions, f"max_position_embeddings {positions}"


def check_max_length(max_length: int, config: dict[str, Any], key: str, whose: str, error: type[EdgekdError]) -> None:
    """Refuse a max_length (the setting `key`) longer than the position embeddings of the model (`whose`)."""
    limit = position_limit(config)
    if limit is None:
        return
    usable, note = limit
    if max_length > usable:
        raise error(f"{key} {max_length} is longer than {whose} {usable} position embeddings; set {key} <= {usable} "
                    f"({note})")

