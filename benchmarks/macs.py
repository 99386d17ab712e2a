"""Multiply-accumulates of one example at a sequence length, from a bundle's architecture (analytic, per family)."""

from __future__ import annotations

import json
from typing import Any

from edgekd.bundle import Bundle
from edgekd.hf_families import hf_family
from edgekd.records import Architecture


def macs(bundle: Bundle, length: int) -> int | None:
    """MACs of one forward pass on `length` tokens; None for a family this does not know."""
    arch = bundle.manifest.architecture
    if arch.family == "bilstm":
        return _bilstm(arch, length)
    if "config.json" in bundle.manifest.files:
        config = json.loads(bundle.file("config.json").read_text())
        if hf_family(str(config.get("model_type"))) is not None:
            return _encoder(config, length)
    return None


# transformers' config.json names of the shape, and DistilBERT's own names for them.
_SHAPE = {"hidden": ("hidden_size", "dim"), "ffn": ("intermediate_size", "hidden_dim"), "layers": ("num_hidden_layers", "n_layers"),
          "heads": ("num_attention_heads", "n_heads")}


def _encoder(config: dict[str, Any], length: int) -> int:
    """A BERT-shaped encoder layer's MACs, for every supported family: the families differ in what costs little
    (ELECTRA's embedding projection, MPNet's position bias, DistilBERT's missing pooler) except ModernBERT, whose
    gated FFN and local-attention layers make this an estimate for it."""
    hidden, ffn, layers, heads = (next(config[k] for k in names if k in config) for names in _SHAPE.values())
    head_dim = hidden // heads
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
