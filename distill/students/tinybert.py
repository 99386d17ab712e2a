"""TinyBERT: a small BERT classifier sharing the teacher's WordPiece tokenizer, so layers align token by token."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekd.bundle import Bundle
from edgekd.config import TinyBertConfig
from edgekd.data import Split, TaskData
from edgekd.batching import Encoded, encode, pad_batch
from edgekd.errors import ConfigError
from edgekd.modeling import check_hf_config
from edgekd.tasks import hf_label_config

from ..features import Features, bert_architecture, bert_features
from ..layer_map import layer_map
from . import Student

logger = logging.getLogger(__name__)


class TinyBertStudent(Student):
    intermediate = True
    default_loss = "soft_ce"

    def __init__(self, cfg: TinyBertConfig, teacher: Bundle, data: TaskData, seed: int) -> None:
        from transformers import AutoConfig, AutoTokenizer, BertConfig, BertForSequenceClassification

        self.cfg, self.teacher = cfg, teacher
        self.max_length = teacher.manifest.tokenizer.max_length
        self.tokenizer = AutoTokenizer.from_pretrained(teacher.tokenizer_dir)
        teacher_config = AutoConfig.from_pretrained(teacher.path)
        labels = hf_label_config(teacher.manifest.task.labels, teacher.manifest.task.problem)
        torch.manual_seed(seed)
        if cfg.init not in ("random", "teacher"):
            self.module = self._from_checkpoint(Path(cfg.init), teacher_config, labels)
        else:
            config = BertConfig(
                vocab_size=teacher_config.vocab_size,
                hidden_size=cfg.hidden,
                num_hidden_layers=cfg.layers,
                num_attention_heads=cfg.heads,
                intermediate_size=cfg.intermediate,
                max_position_embeddings=teacher_config.max_position_embeddings,
                type_vocab_size=teacher_config.type_vocab_size,
                pad_token_id=teacher_config.pad_token_id,
                **labels,
            )
            # Eager attention: ONNX Runtime fuses attention only in graphs exported from it.
            config._attn_implementation = "eager"
            self.module = BertForSequenceClassification(config)
        self.layer_map = layer_map(cfg.layer_map, teacher_config.num_hidden_layers, self.module.config.num_hidden_layers)
        if cfg.init == "teacher":
            self._copy_teacher_layers(teacher_config)

    def _from_checkpoint(self, path: Path, teacher_config: Any, labels: dict[str, Any]) -> torch.nn.Module:
        from transformers import AutoConfig, AutoModelForSequenceClassification

        if not (path / "config.json").is_file():
            raise ConfigError(f"student.init {str(path)!r}: not 'random', 'teacher', or a model directory with config.json")
        check_hf_config(path)  # a checkpoint folder from anywhere: refuse impossible sizes before allocating them
        config = AutoConfig.from_pretrained(path)
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
        widths = ("hidden_size", "intermediate_size", "num_attention_heads")
        if any(getattr(student_config, w) != getattr(teacher_config, w) for w in widths):
            shown = ", ".join(f"{w} {getattr(teacher_config, w)}" for w in widths)
            raise ConfigError(
                f"student.init 'teacher' copies the teacher's layers, so the widths must match the teacher's ({shown}); "
                "set student.hidden/intermediate/heads to those, or use init: random"
            )
        teacher_model = AutoModelForSequenceClassification.from_pretrained(self.teacher.path, use_safetensors=True)
        source = teacher_model.state_dict()
        prefix = teacher_model.base_model_prefix
        copied = {}
        for key in self.module.state_dict():
            parts = key.split(".")
            if ".encoder.layer." in key:
                student_layer = int(parts[3])
                parts[3] = str(self.layer_map[student_layer] - 1)
            parts[0] = prefix if parts[0] == self.module.base_model_prefix else parts[0]
            copied[key] = source[".".join(parts)]
        self.module.load_state_dict(copied)
        logger.info("student initialised from teacher layers %s", self.layer_map)

    def encode(self, split: Split) -> Encoded:
        return encode(self.tokenizer, split, self.max_length)

    def make_batch(self, encoded: Encoded, indices: np.ndarray) -> dict[str, np.ndarray]:
        return {**pad_batch(encoded, indices, self.tokenizer.pad_token_id or 0), "index": np.asarray(indices)}

    def features(self, batch: dict[str, torch.Tensor], intermediate: bool = False) -> Features:
        return bert_features(self.module, batch, intermediate)

    def save(self, directory: Path) -> dict[str, Any]:
        self.module.to("cpu").save_pretrained(directory, safe_serialization=True)
        shutil.copytree(self.teacher.tokenizer_dir, directory / "tokenizer")
        return {
            "architecture": {**bert_architecture(self.module), "student": "tinybert", "layer_map": self.layer_map, "init": self.cfg.init},
            "tokenizer": self.teacher.manifest.tokenizer.model_dump(),
            "inputs": [{"name": n, "dtype": "int64", "shape": ["batch", "sequence"]} for n in ("input_ids", "attention_mask", "token_type_ids")],
        }
