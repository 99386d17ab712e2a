"""Multiply-accumulates of one example at a sequence length, from a bundle's architecture (analytic, per family)."""

from __future__ import annotations

import json
from typing import Any

from edgekd.bundle import Bundle
from edgekd.records import Architecture


def macs(bundle: Bundle, length: int) -> int | None:
    """MACs of one forward pass on `length` tokens; None for a family this does not know."""
    arch = bundle.manifest.architecture
    if arch.family == "bilstm":
        return _bilstm(arch, length)
    if "config.json" in bundle.manifest.files:
        config = json.loads(bundle.file("config.json").read_text())
        if config.get("model_type") == "bert":
            return _bert(config, length)
    return None


def _bert(config: dict[str, Any], length: int) -> int:
    hidden, ffn, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    heads, head_dim = config["num_attention_heads"], config["hidden_size"] // config["num_attention_heads"]
    pruned = {int(k): len(v) for k, v in (config.get("pruned_heads") or {}).items()}
    total = 0
    for layer in range(layers):
        width = (heads - pruned.get(layer, 0)) * head_dim  # what the layer's Q, K, V project to
        total += length * hidden * width * 3  # Q, K, V
        total += 2 * length * length * width  # scores and the weighted sum of values
        total += length * width * hidden  # attention output
        total += 2 * length * hidden * ffn  # FFN up and down
    total += hidden * hidden + hidden * max(1, config.get("num_labels", 2))  # pooler, classifier ([CLS] only)
    return int(total)


def _bilstm(arch: Architecture, length: int) -> int:
    inputs, hidden, fc = arch.shape("embedding_dim"), arch.shape("hidden"), arch.shape("fc")
    pair = bool(arch.shape("pair"))
    sentences = 2 if pair else 1
    recurrent = 2 * length * 4 * hidden * (inputs + hidden)  # both directions, four gates per step
    features = 2 * hidden * (4 if pair else 1)
    return int(sentences * recurrent + features * fc + fc * arch.shape("num_labels"))
