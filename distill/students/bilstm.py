"""Tang et al.'s BiLSTM student: tokenizer, GloVe initialisation, batching and saving around `BiLSTMClassifier`
(the module itself lives in `edgekd.modeling`, where later stages load it from)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from edgekd.bundle import Bundle
from edgekd.config import BiLSTMConfig
from edgekd.data import Split, TaskData
from edgekd.modeling import CONFIG_FILE, WEIGHTS_FILE, BiLSTMClassifier
from edgekd.runtime.word_tokenizer import PAD_ID, WordTokenizer

from ..features import Features
from . import Student

# The paper's sizes (hidden units per direction, ReLU layer) for single-sentence and sentence-pair tasks.
PAPER_SIZES = {"single": (150, 200), "pair": (300, 400)}


@dataclass(frozen=True)
class WordEncoded:
    """Word ids per example (and of the second sentence for pairs), unpadded."""

    ids: list[np.ndarray]
    ids_b: list[np.ndarray] | None
    labels: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        first = np.fromiter((len(x) for x in self.ids), dtype=np.int64, count=len(self.ids))
        if self.ids_b is None:
            return first
        return np.maximum(first, np.fromiter((len(x) for x in self.ids_b), dtype=np.int64, count=len(self.ids_b)))

    def __len__(self) -> int:
        return len(self.ids)


def _pad(sequences: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.asarray([len(s) for s in sequences], dtype=np.int64)
    padded = np.full((len(sequences), int(lengths.max())), PAD_ID, dtype=np.int64)  # (batch, seq)
    for row, seq in enumerate(sequences):
        padded[row, : len(seq)] = seq
    return padded, lengths


class BiLSTMStudent(Student):
    intermediate = False
    default_loss = "mse"

    def __init__(self, cfg: BiLSTMConfig, teacher: Bundle, data: TaskData, seed: int) -> None:
        self.cfg = cfg
        self.task = data.task
        self.pair = data.task.kind == "pair"
        hidden, fc = PAPER_SIZES[data.task.kind]
        self.hidden, self.fc = cfg.hidden or hidden, cfg.fc or fc
        texts = [text for example in data.train.texts for text in example]
        extra: list[str] = []
        if cfg.glove_words:
            from ..glove import load_glove

            extra = list(load_glove()[0])[: cfg.glove_words]  # GloVe's rows are ordered by corpus frequency
        self.tokenizer = WordTokenizer.build(
            texts, min_freq=cfg.min_freq, max_vocab=cfg.max_vocab, lowercase=cfg.lowercase, max_length=cfg.max_length,
            extra_words=extra,
        )
        torch.manual_seed(seed)
        self.module = BiLSTMClassifier(
            len(self.tokenizer), cfg.embedding_dim, self.hidden, self.fc, data.task.num_labels, self.pair, cfg.dropout
        )
        self.glove_coverage: float | None = None
        if cfg.embeddings == "glove":
            from ..glove import embedding_matrix

            matrix, found = embedding_matrix(self.tokenizer.vocab, cfg.embedding_dim, seed)
            self.module.embedding.weight.data.copy_(torch.from_numpy(matrix))
            self.glove_coverage = found / max(1, len(self.tokenizer) - 3)

    def encode(self, split: Split) -> WordEncoded:
        encode = self.tokenizer.encode
        ids = [np.asarray(encode(example[0]), dtype=np.int64) for example in split.texts]
        ids_b = [np.asarray(encode(example[1]), dtype=np.int64) for example in split.texts] if self.pair else None
        return WordEncoded(ids=ids, ids_b=ids_b, labels=split.labels)

    def make_batch(self, encoded: WordEncoded, indices: np.ndarray) -> dict[str, np.ndarray]:
        input_ids, lengths = _pad([encoded.ids[i] for i in indices])
        batch = {"input_ids": input_ids, "lengths": lengths, "labels": encoded.labels[indices], "index": np.asarray(indices)}
        if encoded.ids_b is not None:
            batch["input_ids_b"], batch["lengths_b"] = _pad([encoded.ids_b[i] for i in indices])
        return batch

    def features(self, batch: dict[str, torch.Tensor], intermediate: bool = False) -> Features:
        inputs = {k: batch[k] for k in ("input_ids", "lengths", "input_ids_b", "lengths_b") if k in batch}
        return Features(logits=self.module(**inputs))

    def save(self, directory: Path) -> dict[str, Any]:
        module = self.module.to("cpu")
        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, directory / WEIGHTS_FILE)
        architecture = {
            "family": "bilstm",
            "student": "bilstm",
            "vocab": len(self.tokenizer),
            "embedding_dim": self.cfg.embedding_dim,
            "hidden": self.hidden,
            "fc": self.fc,
            "pair": self.pair,
            "num_labels": self.task.num_labels,
            "dropout": self.cfg.dropout,
            "embeddings": self.cfg.embeddings,
            "glove_words": self.cfg.glove_words,
            "parameters": self.parameters(),
            **({"glove_coverage": round(self.glove_coverage, 4)} if self.glove_coverage is not None else {}),
        }
        (directory / CONFIG_FILE).write_text(json.dumps(architecture, indent=2))
        # word_vocab.json (what the runtime reads) and its `tokenizers` copy, tokenizer.json, beside the model.
        self.tokenizer.save(directory)
        names = ["input_ids", "lengths"] + (["input_ids_b", "lengths_b"] if self.pair else [])
        return {
            "architecture": architecture,
            "tokenizer": {"type": "word", "max_length": self.cfg.max_length, "lowercase": self.cfg.lowercase},
            "inputs": [{"name": n, "dtype": "int64", "shape": ["batch", "sequence"] if "ids" in n else ["batch"]} for n in names],
        }
