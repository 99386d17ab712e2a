"""Per-family export facts in one place: input names, dynamic axes, the module to trace, parity tolerances.

A new family is one small `FamilySpec` entry in `FAMILIES`, like optimum's per-architecture OnnxConfig: one for each
Hugging Face family of `edgekd.hf_families` (its inputs from that entry) and one for the BiLSTM. It lives in the spine,
not in `export`, because quantize, prune and the benchmarks' reference need the same facts (the import-linter
contracts in pyproject.toml keep stages from importing each other).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from edgekd.errors import UnsupportedError
from edgekd.hf_families import HF_FAMILIES, SEGMENT_INPUT, TEXT_INPUTS, HfFamily, model_inputs
from edgekd.records import DEPLOYABLE_FORMATS, Architecture
from edgekd.runtime.encoder import Example, collate
from edgekd.runtime.golden import DEFAULT_ATOL, FAMILY_ATOL


@dataclass(frozen=True)
class Tolerance:
    """How far an export may be from its parent: the largest logit difference and the lowest top-1 agreement."""

    atol: float
    min_agreement: float


class _HfLogits(nn.Module):
    """A Hugging Face classifier taking positional tensors and returning only the logits; segment ids are passed only
    when given (a family without them, RoBERTa or DistilBERT, is traced with two inputs)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        segments = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **segments).logits


def _hf_reference(model: nn.Module, feeds: dict[str, torch.Tensor]) -> torch.Tensor:
    # Only the inputs the model takes (the feeds of a single-sentence export hold no segment ids).
    return model(**{k: feeds[k] for k in model_inputs(model.config) if k in feeds}).logits


def _bilstm_reference(model: nn.Module, feeds: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(**{k: v for k, v in feeds.items() if k in ("input_ids", "lengths", "input_ids_b", "lengths_b")})


def _onnx_bilstm(model: nn.Module) -> nn.Module:
    from edgekd.lstm_forms import OnnxBiLSTM

    return OnnxBiLSTM(model)


def _tflite_bilstm(model: nn.Module) -> nn.Module:
    from edgekd.lstm_forms import UnrolledBiLSTM

    return UnrolledBiLSTM(model)


@dataclass(frozen=True)
class FamilySpec:
    name: str
    # Inputs of a single-sentence model and what a sentence-pair model adds.
    single_inputs: tuple[str, ...]
    pair_inputs: tuple[str, ...]
    # Which inputs carry a sequence axis (the rest are per-example scalars such as lengths).
    sequence_inputs: tuple[str, ...]
    onnx_module: Callable[[nn.Module], nn.Module]
    tflite_module: Callable[[nn.Module], nn.Module]
    # The parent's logits on a padded batch (the reference every export is compared with).
    reference: Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor]
    tolerance: dict[str, Tolerance]

    def runner(self, model: nn.Module, pad_id: int) -> Callable[[list[Example]], np.ndarray]:
        """The torch model's float32 logits (examples, labels) on encoded examples, each batch padded, no gradients."""

        @torch.no_grad()
        def run(examples: list[Example]) -> np.ndarray:
            return self.reference(model, to_torch(collate(examples, pad_id))).float().numpy()

        return run

    def inputs(self, pair: bool) -> tuple[str, ...]:
        return self.single_inputs + (self.pair_inputs if pair else ())

    def dynamic_axes(self, pair: bool) -> dict[str, dict[int, str]]:
        axes: dict[str, dict[int, str]] = {}
        for name in self.inputs(pair):
            # Each sentence of a BiLSTM pair is padded on its own, so it gets its own sequence axis.
            sequence = "sequence_b" if name.endswith("_b") else "sequence"
            axes[name] = {0: "batch", 1: sequence} if name in self.sequence_inputs else {0: "batch"}
        return {**axes, "logits": {0: "batch"}}

    def tensor_specs(self, pair: bool, width: int | str = "sequence", batch: int | str = "batch") -> list[dict[str, Any]]:
        specs = []
        for name in self.inputs(pair):
            shape = [batch, ("sequence_b" if name.endswith("_b") and isinstance(width, str) else width)]
            specs.append({"name": name, "dtype": "int64", "shape": shape if name in self.sequence_inputs else [batch]})
        return specs


# Tolerances on logits. FP32 exports differ from PyTorch only by operator order (fused attention, other GEMM
# kernels): 1e-6..1e-5 on tiny models, a few 1e-5 on 6-layer ones. Agreement below 1 allows for near-ties. The atol
# numbers live in runtime/golden.py, which also bounds a device's golden self-check by them (the runtime cannot
# import this torch-side module); a family without its own number takes the loosest float bound there.
def _tolerance(name: str) -> dict[str, Tolerance]:
    atol = FAMILY_ATOL.get(name, DEFAULT_ATOL)
    return {fmt: Tolerance(atol=atol, min_agreement=0.995) for fmt in DEPLOYABLE_FORMATS}


def _hf_spec(family: HfFamily, segments: bool) -> FamilySpec:
    """A Hugging Face family's spec: a single-sentence model takes ids and mask (segment ids of one text are all 0, so
    the export leaves them out); a pair adds segment ids where the model takes them."""
    return FamilySpec(
        name=family.model_type,
        single_inputs=TEXT_INPUTS,
        pair_inputs=(SEGMENT_INPUT,) if segments else (),
        sequence_inputs=(*TEXT_INPUTS, SEGMENT_INPUT),
        onnx_module=_HfLogits,
        tflite_module=_HfLogits,
        reference=_hf_reference,
        tolerance=_tolerance(family.model_type),
    )


FAMILIES: dict[str, FamilySpec] = {
    **{name: _hf_spec(family, family.token_type_ids) for name, family in HF_FAMILIES.items()},
    "bilstm": FamilySpec(
        name="bilstm",
        single_inputs=("input_ids", "lengths"),
        pair_inputs=("input_ids_b", "lengths_b"),
        sequence_inputs=("input_ids", "input_ids_b"),
        onnx_module=_onnx_bilstm,
        tflite_module=_tflite_bilstm,
        reference=_bilstm_reference,
        tolerance=_tolerance("bilstm"),
    ),
}


def family_spec(architecture: Architecture) -> FamilySpec:
    """The spec of a bundle's model. A family that takes segment ids, in a model without a table for them
    (DeBERTa-v3: the manifest's `token_type_ids` is false), exports without them."""
    family = architecture.family
    if family not in FAMILIES:
        raise UnsupportedError(
            f"architecture family {family!r} has no export spec; supported: {', '.join(FAMILIES)}. "
            "Add its entry in edgekd/hf_families.py (a Hugging Face family) or a FamilySpec in edgekd/families.py"
        )
    spec = FAMILIES[family]
    if family in HF_FAMILIES and architecture.shape("token_type_ids") is False and spec.pair_inputs:
        return _hf_spec(HF_FAMILIES[family], segments=False)
    return spec


def to_torch(feeds: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in feeds.items()}
