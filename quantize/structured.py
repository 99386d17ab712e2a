"""Structured pruning of a transformer classifier: whole attention heads and FFN neurons, physically removed.

It applies to the families whose `edgekd.hf_families` entry allows it (BERT, ELECTRA, RoBERTa, XLM-R, DistilBERT:
transformers' `prune_heads` and a head mask in the forward); the layers and FFN projections are found through the
entry. Others are refused by name.

Importance (Michel et al. 2019, "Are Sixteen Heads Really Better than One?"): a mask of ones multiplies each head's
output and each FFN neuron's activation; the importance of a unit is the absolute gradient of the task loss with
respect to its mask, summed over batches of real training examples; head scores are normalised per layer (L2), as in
the paper, before the global ranking. Removing units shrinks the Linear matrices, so the exported graph is smaller and
faster; a short distillation from the teacher (`edgekd distill ... student.init=PRUNED`) recovers accuracy.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgekd.config import StructuredPruneConfig
from edgekd.batching import length_grouped_batches
from edgekd.derive import Parent
from edgekd.errors import UnsupportedError
from edgekd.hf_families import HF_FAMILIES, HfFamily, hf_family
from edgekd.runtime.encoder import collate

from .prune import register

logger = logging.getLogger(__name__)
BATCH = 32


@register(StructuredPruneConfig)
def structured(model: nn.Module, parent: Parent, cfg: StructuredPruneConfig, directory: Path) -> dict[str, Any]:
    name = parent.manifest.architecture.family
    family = hf_family(name)
    if family is None or not family.structured_pruning:
        able = ", ".join(n for n, f in HF_FAMILIES.items() if f.structured_pruning)
        raise UnsupportedError(f"structured pruning removes attention heads and FFN neurons of {able} models; this model is "
                               f"a {name}. Use prune method magnitude, or quantize it instead")
    if parent.manifest.task.problem != "classification":
        raise UnsupportedError("structured pruning ranks units by the classification loss; this task is a regression")
    if cfg.heads > 0 and not hasattr(model, "prune_heads"):
        import transformers

        raise UnsupportedError(f"structured pruning of attention heads needs transformers' prune_heads, which transformers "
                               f"{transformers.__version__} no longer has (nor the config's pruned_heads, which let a model "
                               "with fewer heads in some layers load); set heads to 0 to remove FFN neurons only, or use "
                               "transformers 4.x")
    layers = _layers(model, family)
    head_scores, neuron_scores = importance(model, family, parent, cfg.samples)
    # Heads: normalise each layer's scores, rank globally, keep at least one head per layer.
    normalised = head_scores / head_scores.norm(dim=1, keepdim=True).clamp_min(1e-12)  # (layers, heads)
    total = normalised.numel()
    order = normalised.flatten().argsort()
    remove: dict[int, list[int]] = {}
    budget = int(round(cfg.heads * total))
    heads_per_layer = normalised.shape[1]
    for flat in order.tolist():
        if budget == 0:
            break
        layer, head = divmod(flat, heads_per_layer)
        if len(remove.get(layer, [])) < heads_per_layer - 1:
            remove.setdefault(layer, []).append(head)
            budget -= 1
    if remove:
        model.prune_heads(remove)
    # FFN neurons: the same number removed from every layer (the config's FFN width stays one number).
    width = layers[0].get_submodule(family.ffn_up).out_features
    keep_count = width - int(round(cfg.ffn * width))
    for layer, scores in zip(layers, neuron_scores):
        keep = scores.argsort(descending=True)[:keep_count].sort().values
        _shrink_ffn(layer, family, keep)
    setattr(model.config, family.intermediate_attr, keep_count)
    model.save_pretrained(directory, safe_serialization=True)
    removed = sum(len(v) for v in remove.values())
    logger.info("removed %d of %d heads and %d of %d FFN neurons per layer", removed, total, width - keep_count, width)
    return {
        "heads_removed": {str(k): sorted(v) for k, v in sorted(remove.items())},
        "heads_kept": total - removed,
        "heads_before": total,
        "ffn_kept": keep_count,
        "ffn_before": width,
        "samples": cfg.samples,
    }


def importance(model: nn.Module, family: HfFamily, parent: Parent, samples: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """|d loss / d mask| per head (layers, heads) and per FFN neuron (one (intermediate,) tensor per layer)."""
    layers = _layers(model, family)
    config = model.config
    head_mask = torch.ones(config.num_hidden_layers, config.num_attention_heads, requires_grad=True)
    neuron_masks = [torch.ones(layer.get_submodule(family.ffn_up).out_features, requires_grad=True) for layer in layers]
    # The mask multiplies the down-projection's input: the FFN's activations, one per neuron.
    hooks = [
        layer.get_submodule(family.ffn_down).register_forward_pre_hook(lambda module, args, mask=mask: (args[0] * mask,))
        for layer, mask in zip(layers, neuron_masks)
    ]
    # A head's mask multiplies its output where the output projection reads it: what transformers 4's `head_mask`
    # argument did to its attention probabilities (probabilities @ values is linear); transformers 5 has no such argument.
    hooks += [
        layer.get_submodule(family.attention_out).register_forward_pre_hook(lambda module, args, mask=mask: (_per_head(args[0], mask),))
        for layer, mask in zip(layers, head_mask)
    ]
    encoder, data = parent.encoder(), parent.data
    rng = np.random.default_rng(0)
    picks = rng.choice(len(data.train), size=min(samples, len(data.train)), replace=False)
    examples = encoder.encode([data.train.texts[i] for i in picks])
    labels = torch.as_tensor(data.train.labels[picks], dtype=torch.long)
    lengths = np.asarray([len(e["input_ids"]) for e in examples])  # type: ignore[arg-type]
    head_scores = torch.zeros_like(head_mask)
    neuron_scores = [torch.zeros_like(m) for m in neuron_masks]
    model.eval()  # no dropout: the gradients measure the model as it will run
    try:
        for batch in length_grouped_batches(lengths, BATCH, seed=0):
            feeds = {k: torch.from_numpy(v) for k, v in collate([examples[i] for i in batch], encoder.pad_id).items()}
            logits = model(**feeds).logits
            loss = nn.functional.cross_entropy(logits, labels[torch.as_tensor(batch)])
            grads = torch.autograd.grad(loss, [head_mask, *neuron_masks])
            head_scores += grads[0].abs()
            for total, grad in zip(neuron_scores, grads[1:]):
                total += grad.abs()
    finally:
        for hook in hooks:
            hook.remove()
    return head_scores.detach(), [s.detach() for s in neuron_scores]


def _per_head(context: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The heads' outputs (batch, seq, heads * head_dim), each head's slice times its mask entry (heads,)."""
    batch, seq, width = context.shape
    heads = mask.shape[0]
    return (context.reshape(batch, seq, heads, width // heads) * mask[:, None]).reshape(batch, seq, width)


def _layers(model: nn.Module, family: HfFamily) -> nn.ModuleList:
    """The model's transformer layers, through its family's path."""
    return getattr(model, model.base_model_prefix).get_submodule(family.layers)


def _shrink_ffn(layer: nn.Module, family: HfFamily, keep: torch.Tensor) -> None:
    """Keep FFN neurons `keep`: rows of the up-projection, columns of the down-projection."""
    up, down = layer.get_submodule(family.ffn_up), layer.get_submodule(family.ffn_down)
    new_up = nn.Linear(up.in_features, len(keep))
    new_down = nn.Linear(len(keep), down.out_features)
    with torch.no_grad():
        new_up.weight.copy_(up.weight[keep])  # (kept, hidden)
        new_up.bias.copy_(up.bias[keep])
        new_down.weight.copy_(down.weight[:, keep])  # (hidden, kept)
        new_down.bias.copy_(down.bias)
    layer.set_submodule(family.ffn_up, new_up)
    layer.set_submodule(family.ffn_down, new_down)
