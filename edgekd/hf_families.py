"""The Hugging Face encoder families edgekd takes as teachers (and builds TinyBERT students in), one declarative entry
each, keyed by the config's `model_type`.

The entries hold facts only (no torch), so `validate` reads them before any training: the export side
(`edgekd/families.py`), distillation (`distill/features.py`, the TinyBERT student) and structured pruning read the same
entry. A new family is one entry here plus whatever its entry says it lacks.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HfFamily:
    model_type: str
    # Whether the classifier's forward takes segment ids (BERT, ELECTRA, DeBERTa) or not (RoBERTa's type vocabulary
    # of 1 and its tokenizer's missing type ids, DistilBERT, MPNet, ModernBERT): the inputs a bundle's model takes.
    token_type_ids: bool
    # Dotted path, from the base model (`model.<base_model_prefix>`), to the list of transformer layers.
    layers: str
    # Dotted paths inside one layer to the query and key projections whose product is the pre-softmax attention score;
    # None where the scores cannot be recomputed faithfully from them (then the attention loss is refused, by name).
    query: str | None
    key: str | None
    # Why the attention loss is refused (None: it is supported).
    no_attention_loss: str | None = None
    # The config attribute of the FFN width (transformers names it `intermediate_size` except for DistilBERT).
    intermediate_attr: str = "intermediate_size"
    # Whether transformers' `prune_heads` and a per-layer FFN shrink apply (structured pruning).
    structured_pruning: bool = True


_BERT_LAYERS = dict(layers="encoder.layer", query="attention.self.query", key="attention.self.key")

HF_FAMILIES: dict[str, HfFamily] = {
    family.model_type: family
    for family in (
        HfFamily("bert", token_type_ids=True, **_BERT_LAYERS),
        HfFamily("electra", token_type_ids=True, **_BERT_LAYERS),
        HfFamily("roberta", token_type_ids=False, **_BERT_LAYERS),
        HfFamily("xlm-roberta", token_type_ids=False, **_BERT_LAYERS),
        HfFamily("distilbert", token_type_ids=False, layers="transformer.layer", query="attention.q_lin", key="attention.k_lin",
                 intermediate_attr="hidden_dim"),
        # MPNet adds a relative-position bias to QK^T: the content scores are what teacher and student share.
        HfFamily("mpnet", token_type_ids=False, layers="encoder.layer", query="attention.attn.q", key="attention.attn.k",
                 structured_pruning=False),
        HfFamily("deberta-v2", token_type_ids=True, layers="encoder.layer", query=None, key=None,
                 no_attention_loss="DeBERTa's disentangled attention adds content-to-position and position-to-content "
                 "terms that QK^T does not hold", structured_pruning=False),
        HfFamily("modernbert", token_type_ids=False, layers="layers", query=None, key=None,
                 no_attention_loss="ModernBERT's fused QKV projection is rotated (RoPE) before the product, so its "
                 "scores are not QK^T of a projection", structured_pruning=False),
    )
}


def hf_family(model_type: str) -> HfFamily | None:
    """The entry of a transformers `model_type`, or None for a family edgekd does not support."""
    return HF_FAMILIES.get(model_type)
