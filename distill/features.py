"""What a teacher or student emits, as one typed record, so any two architectures meet in the same loss code.

Hugging Face classifiers of every family in `edgekd.hf_families` are read through their family's entry (the inputs it
takes, where its layers and its query and key projections are): nothing here branches on a model type.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from edgekd.hf_families import family_of, model_inputs


@dataclass
class Features:
    """Outputs of one forward pass. Optional fields are None when the model does not have them or was not asked.

    logits:        (batch, labels)
    hidden_states: layer 0 (the embedding output) then each transformer layer, each (batch, seq, hidden)
    attentions:    each layer's unnormalised attention scores, masked key positions zeroed, (batch, heads, seq, seq);
                   None for a family whose scores are not QK^T of two projections (DeBERTa-v2, ModernBERT)
    """

    logits: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None

    @property
    def embeddings(self) -> torch.Tensor | None:
        return self.hidden_states[0] if self.hidden_states else None


def hf_features(model: torch.nn.Module, batch: dict[str, torch.Tensor], intermediate: bool) -> Features:
    """Run a Hugging Face sequence classifier of a supported family on the inputs it takes (a batch may hold segment
    ids another model needs); with `intermediate`, also hidden states and, where the family allows, raw scores.

    Hugging Face returns attention *probabilities*; TinyBERT distils the scores before the softmax. They are
    recomputed from the query and key projections the family's entry names, captured by forward hooks:
    QK^T / sqrt(head_dim).
    """
    inputs = {k: batch[k] for k in model_inputs(model.config) if k in batch}
    if not intermediate:
        return Features(logits=model(**inputs).logits)
    family = family_of(model.config)
    captured: list[dict[str, torch.Tensor]] = []
    handles = []
    if family.query is not None and family.key is not None:
        encoder = getattr(model, model.base_model_prefix)
        for layer in encoder.get_submodule(family.layers):
            store: dict[str, torch.Tensor] = {}
            captured.append(store)
            for name, path in (("query", family.query), ("key", family.key)):
                handles.append(layer.get_submodule(path).register_forward_hook(_keep(store, name)))
    try:
        out = model(**inputs, output_hidden_states=True)
    finally:
        for handle in handles:
            handle.remove()
    scores = None
    if captured:
        heads = model.config.num_attention_heads
        key_mask = inputs["attention_mask"][:, None, None, :].to(out.logits.dtype)  # (batch, 1, 1, seq)
        scores = tuple(_scores(store["query"], store["key"], heads) * key_mask for store in captured)
    return Features(logits=out.logits, hidden_states=tuple(out.hidden_states), attentions=scores)


def hf_architecture(model: torch.nn.Module) -> dict[str, object]:
    """The manifest's architecture summary of a Hugging Face classifier: its family (the config's model_type), shape
    (through the family's attribute names) and whether it takes segment ids."""
    config = model.config
    family = family_of(config)
    return {
        "family": config.model_type,
        "class": type(model).__name__,
        "layers": config.num_hidden_layers,
        "hidden": config.hidden_size,
        "heads": config.num_attention_heads,
        "intermediate": getattr(config, family.intermediate_attr, None),
        "vocab": config.vocab_size,
        "token_type_ids": "token_type_ids" in model_inputs(config),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def _keep(store: dict[str, torch.Tensor], name: str):  # noqa: ANN202 - a hook closure
    def hook(module: torch.nn.Module, args: object, output: torch.Tensor) -> None:
        store[name] = output

    return hook


def _scores(query: torch.Tensor, key: torch.Tensor, heads: int) -> torch.Tensor:
    batch, seq, width = query.shape  # (batch, seq, hidden)
    head_dim = width // heads
    q = query.view(batch, seq, heads, head_dim).transpose(1, 2)  # (batch, heads, seq, head_dim)
    k = key.view(batch, seq, heads, head_dim).transpose(1, 2)
    return q @ k.transpose(-1, -2) / math.sqrt(head_dim)  # (batch, heads, seq, seq)
