"""Parity: an exported (or quantized) model against its parent, on the same inputs.

Each compared output gives its largest absolute logit difference, its SQNR (signal-to-quantization-noise ratio, dB:
how far below the parent's logits the error lies, pytorch/ao's `compute_error`) and top-1 agreement. Every failure
is collected and raised once, one line per output, as optimum's `validate_model_outputs` does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from edgekd.errors import ParityError
from edgekd.runtime.backends import run_batched
from edgekd.runtime.encoder import Example

from edgekd.families import Tolerance

# Logits (examples, labels) of a list of encoded examples, in their order.
Runner = Callable[[list[Example]], np.ndarray]


@dataclass(frozen=True)
class OutputParity:
    """One compared output: a named set of inputs (golden, dev sample, a length bucket, ...)."""

    name: str
    examples: int
    max_abs_diff: float
    sqnr_db: float
    agreement: float

    def failures(self, tolerance: Tolerance) -> list[str]:
        problems = []
        if not math.isfinite(self.max_abs_diff) or self.max_abs_diff > tolerance.atol:
            problems.append(f"max |diff| {self.max_abs_diff:.3g} > {tolerance.atol:g}")
        if self.agreement < tolerance.min_agreement:
            problems.append(f"top-1 agreement {self.agreement:.4f} < {tolerance.min_agreement:g}")
        return problems

    def as_dict(self) -> dict[str, float | int | str]:
        row = asdict(self)
        # JSON has no infinity: an exact match's SQNR is written as the string "inf".
        return {k: (round(v, 8) if math.isfinite(v) else str(v)) if isinstance(v, float) else v for k, v in row.items()}


def sqnr(reference: np.ndarray, candidate: np.ndarray) -> float:
    """10 log10(|reference|^2 / |reference - candidate|^2) in dB; inf when they are equal."""
    noise = float(np.sum((reference.astype(np.float64) - candidate) ** 2))
    signal = float(np.sum(reference.astype(np.float64) ** 2))
    if noise == 0.0:
        return math.inf
    return 10.0 * math.log10(signal / noise) if signal > 0 else -math.inf


def compare(name: str, reference: np.ndarray, candidate: np.ndarray) -> OutputParity:
    """Compare logits (examples, labels) of a candidate with its reference."""
    assert reference.shape == candidate.shape, f"{name}: shapes {reference.shape} vs {candidate.shape}"
    diff = np.abs(reference.astype(np.float64) - candidate)
    finite = bool(np.all(np.isfinite(candidate)))
    if reference.ndim == 2 and reference.shape[1] > 1:
        agreement = float(np.mean(reference.argmax(-1) == candidate.argmax(-1)))
    else:  # regression: no classes to agree on
        agreement = 1.0
    return OutputParity(
        name=name,
        examples=int(reference.shape[0]),
        max_abs_diff=float(diff.max()) if finite and diff.size else math.inf,
        sqnr_db=sqnr(reference, candidate) if finite else -math.inf,
        agreement=agreement,
    )


def check(results: list[OutputParity], tolerance: Tolerance, what: str) -> None:
    """Raise one ParityError listing every output outside `tolerance`."""
    lines = [f"  - {r.name} ({r.examples} examples): {'; '.join(p)}" for r in results if (p := r.failures(tolerance))]
    if lines:
        raise ParityError(
            f"{what} disagrees with its parent beyond tolerance:\n" + "\n".join(lines)
            + "\nThe parent's and the export's outputs differ: the export is wrong (or the tolerance in "
            "edgekd/families.py is too tight for this model); no bundle was written."
        )


def compare_sets(
    reference: Runner,
    candidate: Runner,
    sets: dict[str, list[Example]],
    group: Callable[[Example], str] | None = None,
    reference_sets: dict[str, list[Example]] | None = None,
) -> tuple[list[OutputParity], dict[str, np.ndarray]]:
    """Compare on each named set of examples (and per group, e.g. TFLite bucket); also return the candidate's logits.
    `reference_sets`: the same texts as the reference reads them, where its tokenizer differs (a pruned vocabulary)."""
    results: list[OutputParity] = []
    outputs: dict[str, np.ndarray] = {}
    for name, examples in sets.items():
        expected = run_batched((reference_sets or sets)[name], reference)
        got = run_batched(examples, candidate)
        results.append(compare(name, expected, got))
        if group is not None:
            groups = np.asarray([group(e) for e in examples])
            for label in sorted(set(groups), key=lambda g: (len(g), g)):
                mask = groups == label
                results.append(compare(f"{name}, {label}", expected[mask], got[mask]))
        outputs[name] = got
    return results, outputs
