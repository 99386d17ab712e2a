"""The Hugging Face encoder families edgekd takes as teachers (and builds TinyBERT students in), one declarative entry
each, keyed by the config's `model_type`.

The entries hold facts only (no torch), so `validate` reads them before any training: the export side
(`edgekd/families.py`), distillation (`distill/features.py`, the TinyBERT student) and structured pruning read the same
entry. A new family is one entry here plus whatever its entry says it lacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgekd.errors import UnsupportedError

# A transformer classifier's inputs, in the order its exports take them; segment ids only where the family takes them.
TEXT_INPUTS = ("input_ids", "attention_mask")
SEGMENT_INPUT = "token_type_ids"


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
    # Dotted paths inside one layer to the FFN's up- and down-projections (the Linear layers structured pruning
    # shrinks); the down-projection's input is the FFN's activation, one column per neuron.
    ffn_up: str = "intermediate.dense"
    ffn_down: str = "output.dense"
    # Dotted path inside one layer to the attention's output projection, whose input is the heads' outputs side by
    # side (batch, seq, heads * head_dim): structured pruning masks a head there.
    attention_out: str = "attention.output.dense"

    def inputs(self, type_vocab_size: int | None = None) -> tuple[str, ...]:
        """The classifier's inputs: segment ids only where the family takes them and the model has a table for them
        (DeBERTa-v3's type_vocab_size is 0: its forward takes token_type_ids and ignores them, and an export drops
        the unused input)."""
        segments = self.token_type_ids and (type_vocab_size is None or type_vocab_size > 0)
        return TEXT_INPUTS + ((SEGMENT_INPUT,) if segments else ())


_BERT_LAYERS = dict(layers="encoder.layer", query="attention.self.query", key="attention.self.key")

HF_FAMILIES: dict[str, HfFamily] = {
    family.model_type: family
    for family in (
        HfFamily("bert", token_type_ids=True, **_BERT_LAYERS),
        HfFamily("electra", token_type_ids=True, **_BERT_LAYERS),
        HfFamily("roberta", token_type_ids=False, **_BERT_LAYERS),
        HfFamily("xlm-roberta", token_type_ids=False, **_BERT_LAYERS),
        HfFamily("distilbert", token_type_ids=False, layers="transformer.layer", query="attention.q_lin", key="attention.k_lin",
                 intermediate_attr="hidden_dim", ffn_up="ffn.lin1", ffn_down="ffn.lin2", attention_out="attention.out_lin"),
        # MPNet adds a relative-position bias to QK^T: the content scores are what teacher and student share. Its
        # bias table is one per model, as wide as the heads, so heads cannot be pruned in one layer only.
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


def unsupported_family(model_type: Any, whose: str) -> str:
    """The message for a model of a family edgekd does not take (`whose`: e.g. "teacher.model 'x'")."""
    return (f"{whose} is a {str(model_type)[:80]!r} model; edgekd distils and exports these encoder families: "
            f"{', '.join(HF_FAMILIES)}. Pick a checkpoint of one of them")


def family_of(config: Any, whose: str = "the model") -> HfFamily:
    """The entry of a transformers config's family (a config object or a config.json mapping); UnsupportedError
    naming the supported families for any other."""
    model_type = config.get("model_type") if isinstance(config, dict) else getattr(config, "model_type", None)
    family = hf_family(str(model_type))
    if family is None:
        raise UnsupportedError(unsupported_family(model_type, whose))
    return family


def model_inputs(config: Any) -> tuple[str, ...]:
    """The inputs of a classifier of a supported family, from its transformers config (an object or a mapping)."""
    type_vocab_size = config.get("type_vocab_size") if isinstance(config, dict) else getattr(config, "type_vocab_size", None)
    return family_of(config).inputs(type_vocab_size)


def attention_loss_problem(model_types: list[str], losses: tuple[str, ...] | list[str], where: str) -> str | None:
    """Why a layer-distillation stage (`where`, e.g. "students.tinybert.stages[0]") taking `losses` cannot run between
    models of these families, or None: the attention loss needs QK^T scores from the teacher and the student."""
    if "attention" not in losses:
        return None
    for model_type in dict.fromkeys(model_types):
        family = hf_family(model_type)
        if family is not None and family.no_attention_loss:
            keep = ", ".join(name for name in losses if name != "attention") or "embedding, hidden"
            return (f"{where}: the attention loss cannot be taken from a {model_type} model ({family.no_attention_loss}); "
                    f"set {where}.losses=[{keep}] to distil its hidden states (the prediction stage is unchanged)")
    return None
