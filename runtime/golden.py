"""The golden self-check: a bundle's model, run here on its golden texts, against what the stage that wrote it stored.

golden.npz holds a few real texts, their encoded inputs and the bundle's own logits on them, computed by the stage that
wrote the bundle through this runtime's backends (an export's or a quantized file's outputs, on the builder's CPU).
Run here, the tokenizer must give the same ids and the model, within a tolerance, the same logits: a model file
swapped for another (its manifest re-hashed), a tokenizer that encodes differently, or a backend build that computes
wrongly shows up as a ParityError before any prediction.

The tolerance allows what legitimately differs between the builder's machine and this one (another CPU, x86 or ARM,
another onnxruntime or LiteRT build) and nothing of a different model:
- float files: only the order of floating-point operations differs (other GEMM kernels, other SIMD widths); on the
  6-layer students and the tiny test models that stays below 1e-5 (aarch64 under qemu against x86: 2e-6, in
  benchmarks/results/qemu-aarch64.md). The bound is the family's export tolerance (`FAMILY_ATOL`, which
  edgekd/families.py's parity check uses too): a device that differs from its builder by more than an export may differ
  from PyTorch is not running the same model.
- quantized files (the manifest's architecture has `quantize`): integer and fp16 kernels differ between CPUs in
  rounding (x86's u8s8 multiply-add saturates where ARM's sdot does not; ARM may compute fp16 in fp16, x86 in fp32),
  by up to the order of the quantization error itself. The bound is the largest of the family's tolerance, twice the
  file's own quantization error on the golden texts (golden.npz keeps the float parent's logits), and 5% of the
  largest stored logit. A different model misses it by far (a swapped tiny BERT: 3.45 on logits of about 4).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from edgekd.bundle import Manifest
from edgekd.errors import ParityError

from .encoder import Example, collate

# Largest |logit - stored| of a float file, per encoder family (`architecture.family`); edgekd/families.py reads these.
FAMILY_ATOL = {"bert": 1e-3, "bilstm": 1e-4}
# A family without an entry (a new one not yet measured): the loosest float bound.
DEFAULT_ATOL = max(FAMILY_ATOL.values())
# Quantized files: the bound's multiple of the quantization error, and its floor relative to the stored logits.
QUANTIZED_ERROR_MARGIN = 2.0
QUANTIZED_RELATIVE = 0.05


def golden_tolerance(manifest: Manifest, golden: Mapping[str, np.ndarray]) -> float:
    """The largest |logit - stored| a correct copy of this bundle's model may show on another machine (see above)."""
    atol = FAMILY_ATOL.get(manifest.architecture.family, DEFAULT_ATOL)
    if manifest.architecture.quantize is None:
        return atol
    stored = np.asarray(golden["logits"], dtype=np.float64)
    bounds = [atol, QUANTIZED_RELATIVE * float(np.abs(stored).max(initial=0.0))]
    parent = golden.get("parent_logits")
    if parent is not None and np.shape(parent) == stored.shape:
        bounds.append(QUANTIZED_ERROR_MARGIN * float(np.abs(stored - np.asarray(parent, dtype=np.float64)).max(initial=0.0)))
    return max(b for b in bounds if math.isfinite(b))


@dataclass(frozen=True)
class GoldenCheck:
    """The model run here on the golden texts, against the stored ids and logits."""

    examples: int
    max_abs_diff: float
    tolerance: float
    # One line per model input whose ids this tokenizer does not reproduce.
    tokenizer_problems: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        # Written so that NaN (a model that outputs NaN) fails.
        return not self.tokenizer_problems and self.max_abs_diff <= self.tolerance

    def raise_on_failure(self, where: object, machine: str = "this machine") -> None:
        """A ParityError with every difference, when the check failed."""
        if self.passed:
            return
        lines = [f"  - {p}" for p in self.tokenizer_problems]
        if not self.max_abs_diff <= self.tolerance:
            lines.append(f"  - golden ({self.examples} examples): max |logit - stored| {self.max_abs_diff:.3g} > {self.tolerance:.3g}")
        raise ParityError(
            f"{where}: on {machine}, the bundle does not reproduce its golden outputs beyond tolerance:\n" + "\n".join(lines)
            + "\nIts model or tokenizer is not the one its stage wrote and checked (a file replaced and the manifest "
            "re-hashed), or this machine's backend computes it wrongly. Re-create the bundle with its stage."
        )

    def as_dict(self) -> dict[str, object]:
        return {"examples": self.examples, "max_abs_diff": self.max_abs_diff, "tolerance": self.tolerance,
                "tokenizer_problems": list(self.tokenizer_problems)}


def check_golden(
    manifest: Manifest, golden: Mapping[str, np.ndarray], examples: list[Example], pad_id: int, run: Callable[[list[Example]], np.ndarray]
) -> tuple[GoldenCheck, np.ndarray]:
    """Compare the golden texts' encoded `examples` with the stored inputs, and their logits through `run` with the
    stored logits; also return those logits."""
    from .backends import run_batched

    feeds = collate(examples, pad_id)
    problems = tuple(
        f"{name}: this tokenizer gives {_first_row(feeds[name])}, the stored golden inputs {_first_row(golden[name])}"
        for name in feeds
        if name in golden and (feeds[name].shape != golden[name].shape or not np.array_equal(feeds[name], golden[name]))
    )
    # One batch, as the writing stage computed them (parity's `run_batched` with its default batch size): a dynamic
    # quantization's activation ranges depend on the batch.
    logits = run_batched(examples, run)
    stored = np.asarray(golden["logits"], dtype=np.float64)
    if logits.size == stored.size:
        diff = float(np.abs(logits.astype(np.float64).reshape(stored.shape) - stored).max(initial=0.0))
    else:
        diff = math.inf
    return GoldenCheck(len(examples), diff, golden_tolerance(manifest, golden), problems), logits


def _first_row(values: np.ndarray) -> str:
    """The first values (the first example's, row by row), at most 12, and the shape: enough to see what differs."""
    flat = np.asarray(values).reshape(-1)
    return f"{flat[:12].tolist()}{', ...' if flat.size > 12 else ''} (shape {list(np.shape(values))})"
