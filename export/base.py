"""What an exporter receives (`Source`) and returns (`Exported`); exporters are registered by format in `stage`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgekd.bundle import Bundle
from edgekd.records import Architecture
from edgekd.runtime.encoder import Encoder, Example


@dataclass(frozen=True)
class Source:
    parent: Bundle
    encoder: Encoder
    # A few real examples of different lengths to trace or convert with.
    trace_examples: list[Example]
    # Facts written into the model file's metadata (labels, tokenizer, task).
    metadata: dict[str, Any]
    # Training examples spread over the length range, for an export that quantizes while it converts (ExecuTorch INT8).
    calibration: list[Example] = field(default_factory=list)

    @property
    def pair(self) -> bool:
        return self.parent.manifest.task.kind == "pair"

    @property
    def architecture(self) -> Architecture:
        return self.parent.manifest.architecture


@dataclass(frozen=True)
class Exported:
    """Files an exporter wrote into the bundle directory and how to run them."""

    files: list[str]
    inputs: list[dict[str, Any]]
    details: dict[str, Any]
    # Logits (examples, labels) of encoded examples through the runtime backend, in the examples' order.
    run: Callable[[list[Example]], np.ndarray]
    # The name of the group (e.g. a TFLite length bucket) an example's parity is reported under; None: one group.
    group: Callable[[Example], str] | None = None
