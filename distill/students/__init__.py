"""Students: each is a config type (in edgekd.config) plus a `Student` class, registered by the config's `type`.

Adding a student means adding a config and a class here; the distill stage and the losses do not change.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from edgekd.bundle import Bundle
from edgekd.data import Split, TaskData

from ..features import Features


class Student(ABC):
    """A student model with its own tokenization, batching, feature extraction and saving."""

    # Whether the student has transformer layers that intermediate (attention/hidden) losses can match.
    intermediate: ClassVar[bool] = False
    # The prediction loss of the student's paper when a stage does not name one.
    default_loss: ClassVar[str] = "soft_ce"

    module: torch.nn.Module

    @abstractmethod
    def __init__(self, cfg: Any, teacher: Bundle, data: TaskData, seed: int) -> None: ...

    @abstractmethod
    def encode(self, split: Split) -> Any:
        """Tokenize a split; the result has `lengths` (per example) and `labels`, and `len()`."""

    @abstractmethod
    def make_batch(self, encoded: Any, indices: np.ndarray) -> dict[str, np.ndarray]:
        """A padded numpy batch of the examples at `indices`, including `labels` and `index`."""

    @abstractmethod
    def features(self, batch: dict[str, torch.Tensor], intermediate: bool = False) -> Features:
        """Run the student on a batch on the device."""

    @abstractmethod
    def save(self, directory: Path) -> dict[str, Any]:
        """Write weights, config and tokenizer into a bundle directory; return manifest fields
        (architecture, tokenizer, inputs)."""

    def parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters())


def registry() -> dict[str, type[Student]]:
    """Student classes by config type (imported lazily: each pulls in its own dependencies)."""
    from .bilstm import BiLSTMStudent
    from .tinybert import TinyBertStudent

    return {"tinybert": TinyBertStudent, "bilstm": BiLSTMStudent}
