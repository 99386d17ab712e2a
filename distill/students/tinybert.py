"""TinyBERT: a small transformer classifier sharing the teacher's tokenizer, so layers align token by token.

The student is built in the teacher's own family (a 4-layer RoBERTa for a RoBERTa teacher: the teacher's config with
the student's sizes) or, with `family: bert`, as a BERT reading the teacher's tokenizer.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekd.batching import Encoded, encode, pad_batch
from edgekd.bundle import Bundle, copy_tokenizer_files, set_tokenizer_max_length
from edgekd.config import TinyBertConfig
from edgekd.data import Split, TaskData
from edgekd.errors import ConfigError
from edgekd.hf_families import HF_FAMILIES, HfFamily, family_of, model_inputs
from edgekd.modeling import check_hf_config
from edgekd.tasks import hf_label_config

from ..features import Features, hf_architecture, hf_features
from ..layer_map import layer_map
from . import Student

logger = logging.getLogger(__name__)

# The student's sizes: the recipe's names and the transformers config attributes every family answers to (DistilBERT
# through its attribute map); the FFN width is the family's `intermediate_attr`.
SIZES = {"layers": "num_hidden_layers", "hidden": "hidden_size", "heads": "num_attention_heads"}


class TinyBertStudent(Student):
    intermediate = True
    default_loss = "soft_ce"

    def __init__(self, cfg: TinyBertConfig, teacher: Bundle, data: TaskData, seed: int) -> None:
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        self.cfg, self.teacher = cfg, teacher
        self.max_length = teacher.manifest.tokenizer.max_length
        self.tokenizer = AutoTokenizer.from_pretrained(teacher.tokenizer_dir)
        teacher_config = AutoConfig.from_pretrained(teacher.path)
        teacher_family = family_of(teacher_config, f"the teacher at {teacher.path}")
        self.family = HF_FAMILIES["bert"] if cfg.family == "bert" else teacher_family
        labels = hf_label_config(teacher.manifest.task.labels, teacher.manifest.task.problem)
        torch.manual_seed(seed)
        if cfg.init not in ("random", "teacher"):
            self.module = self._from_checkpoint(Path(cfg.init), teacher_config, labels)
        else:
            config = _bert_config(cfg, teacher_config) if cfg.family == "bert" else _family_config(cfg, teacher_config, self.family)
            config.update(labels)
            # Eager attention: ONNX Runtime fuses attention only in graphs exported from it.
            config._attn_implementation = "eager"
            self.module = AutoModelForSequenceClassification.from_config(config, attn_implementation="eager")
        self.segments = "token_type_ids" in model_inputs(self.module.config)
        self.layer_map = layer_map(cfg.layer_map, teacher_config.num_hidden_layers, self.module.config.num_hidden_layers)
        if cfg.init == "teacher":
            self._copy_teacher_layers(teacher_config)

    def _from_checkpoint(self, path: Path, teacher_config: Any, labels: dict[str, Any]) -> torch.nn.Module:
        from transformers import AutoConfig, AutoModelForSequenceClassification

        if not (path / "config.json").is_file():
            raise ConfigError(f"student.init {str(path)!r}: not 'random', 'teacher', or a model directory with config.json")
        check_hf_config(path)  # a checkpoint folder from anywhere: refuse impossible sizes before allocating them
        config = AutoConfig.from_pretrained(path)
        if config.model_type != self.family.model_type:
            how = "set student.family: bert" if config.model_type == "bert" else "give a checkpoint of the student's family"
            raise ConfigError(
                f"student.init {str(path)!r} is a {config.model_type!r} checkpoint, but the student is a "
                f"{self.family.model_type!r} (student.family: {self.cfg.family}, teacher {teacher_config.model_type!r}); {how}, "
                "or use init: random"
            )
        if config.vocab_size != teacher_config.vocab_size:
            raise ConfigError(
                f"student.init {str(path)!r} has a vocabulary of {config.vocab_size} but the teacher's tokenizer has "
                f"{teacher_config.vocab_size}; TinyBERT shares the teacher's tokenizer, so they must match"
            )
        logger.info("student from %s: %d layers, hidden %d (its sizes win over the recipe's)", path, config.num_hidden_layers, config.hidden_size)
        return AutoModelForSequenceClassification.from_pretrained(
            path, attn_implementation="eager", ignore_mismatched_sizes=True, **labels
        )

    def _copy_teacher_layers(self, teacher_config: Any) -> None:
        from transformers import AutoModelForSequenceClassification

        student_config = self.module.config
        if student_config.model_type != teacher_config.model_type:
            raise ConfigError(
                f"student.init 'teacher' copies the teacher's layers, so the student must be of the teacher's family "
                f"({teacher_config.model_type}), not {student_config.model_type}; set student.family: teacher, or use init: random"
            )
        widths = ("hidden_size", self.family.intermediate_attr, "num_attention_heads")
        if any(getattr(student_config, w) != getattr(teacher_config, w) for w in widths):
            shown = ", ".join(f"{w} {getattr(teacher_config, w)}" for w in widths)
            raise ConfigError(
                f"student.init 'teacher' copies the teacher's layers, so the widths must match the teacher's ({shown}); "
                "set student.hidden/intermediate/heads to those, or use init: random"
            )
        teacher_model = AutoModelForSequenceClassification.from_pretrained(self.teacher.path, use_safetensors=True)
        source = teacher_model.state_dict()
        # "<base prefix>.<layers path>.<i>.": the student's layer i takes the teacher's layer the layer map names.
        layers = f"{self.module.base_model_prefix}.{self.family.layers}."
        copied = {}
        for key in self.module.state_dict():
            if key.startswith(layers):
                index, rest = key[len(layers):].split(".", 1)
                key_in_teacher = f"{layers}{self.layer_map[int(index)] - 1}.{rest}"
            else:
                key_in_teacher = key
            copied[key] = source[key_in_teacher]
        self.module.load_state_dict(copied)
        logger.info("student initialised from teacher layers %s", self.layer_map)

    def encode(self, split: Split) -> Encoded:
        return encode(self.tokenizer, split, self.max_length, token_type_ids=self.segments)

    def make_batch(self, encoded: Encoded, indices: np.ndarray) -> dict[str, np.ndarray]:
        return {**pad_batch(encoded, indices), "index": np.asarray(indices)}

    def features(self, batch: dict[str, torch.Tensor], intermediate: bool = False) -> Features:
        return hf_features(self.module, batch, intermediate)

    def save(self, directory: Path) -> dict[str, Any]:
        self.module.to("cpu").save_pretrained(directory, safe_serialization=True)
        # The teacher's tokenizer files (only those), beside the student's model, at the student's max length.
        copy_tokenizer_files(self.teacher, directory)
        set_tokenizer_max_length(directory, self.max_length)
        architecture = hf_architecture(self.module)
        return {
            "architecture": {**architecture, "student": "tinybert", "layer_map": self.layer_map, "init": self.cfg.init},
            "tokenizer": self.teacher.manifest.tokenizer.model_dump(),
            "inputs": [{"name": n, "dtype": "int64", "shape": ["batch", "sequence"]} for n in model_inputs(self.module.config)],
        }


def _bert_config(cfg: TinyBertConfig, teacher_config: Any) -> Any:
    """A BERT of the student's sizes reading the teacher's tokenizer: BERT's defaults, the teacher's vocabulary, pad id
    and positions. Two segment types at least, since a pair's second text may carry type id 1 (RoBERTa's table has 1,
    DeBERTa-v3's none)."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=teacher_config.vocab_size,
        hidden_size=cfg.hidden,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        intermediate_size=cfg.intermediate,
        max_position_embeddings=teacher_config.max_position_embeddings,
        type_vocab_size=max(2, getattr(teacher_config, "type_vocab_size", 2) or 0),
        pad_token_id=teacher_config.pad_token_id,
    )


def _family_config(cfg: TinyBertConfig, teacher_config: Any, family: HfFamily) -> Any:
    """The teacher's config with the student's sizes: everything else (vocabulary, pad id, positions, dropout, and the
    family's structure, such as DeBERTa's relative attention or ModernBERT's local windows) stays the teacher's."""
    config = copy.deepcopy(teacher_config)
    for name, attribute in SIZES.items():
        setattr(config, attribute, getattr(cfg, name))
    setattr(config, family.intermediate_attr, cfg.intermediate)
    # Widths some families record apart from the hidden size (ELECTRA's embeddings, DeBERTa's pooler) follow the
    # student's when they were the teacher's hidden size or would now exceed the student's; DeBERTa's explicit
    # head width follows the student's heads.
    for attribute in ("embedding_size", "pooler_hidden_size"):
        width = getattr(config, attribute, None)
        if width is not None and (width == teacher_config.hidden_size or width > cfg.hidden):
            setattr(config, attribute, cfg.hidden)
    if getattr(config, "attention_head_size", None) is not None:
        config.attention_head_size = cfg.hidden // cfg.heads
    # A per-layer list (transformers 5's ModernBERT `layer_types`, which must have one entry per layer): the student's
    # layers take the teacher's pattern from its first layer on, repeated if the student is deeper.
    for attribute in ("layer_types", "mlp_layer_types"):
        per_layer = getattr(config, attribute, None)
        if isinstance(per_layer, (list, tuple)) and per_layer:
            setattr(config, attribute, [per_layer[i % len(per_layer)] for i in range(cfg.layers)])
    config.architectures = None
    return config
