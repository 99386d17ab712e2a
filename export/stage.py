"""`edgekd export`: a torch bundle to an ONNX or TFLite bundle, checked against its parent before it is written.

Parity inputs: the parent's golden examples (whose stored ids also check the runtime tokenizer), edge cases (an empty
text, one word, a text past the maximum length) and a sample of real dev examples spread over the length range.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from edgekd.bundle import Bundle
from edgekd.config import ExportConfig, Handlers
from edgekd.derive import Derived, Parent, derive
from edgekd.errors import ConfigError, ParityError, UnsupportedError
from edgekd.families import FamilySpec, family_spec
from edgekd.parity import OutputParity, check
from edgekd.progress import step
from edgekd.records import BUCKETED_FORMATS
from edgekd.runtime.encoder import Example, collate

from .base import Exported, Source

logger = logging.getLogger(__name__)

# How the formats are written in what the user reads.
FORMAT_NAMES = {"onnx": "ONNX", "tflite": "TFLite", "executorch": "ExecuTorch"}
# The top-1 agreement with the parent on dev an export that quantizes must keep (as `edgekd quantize`'s default floor).
INT8_MIN_AGREEMENT = 0.9
Exporter = Callable[[nn.Module, FamilySpec, Source, ExportConfig, Path], Exported]


def _load_exporters() -> None:
    from . import executorch, onnx, tflite  # noqa: F401  (their `@register` enter them)


# Exporters by config type and format, each registered beside its code (`@register(ExportConfig, "onnx")`).
EXPORTERS: Handlers[Exporter] = Handlers("export", _load_exporters)
register = EXPORTERS.register


def exporter(cfg: ExportConfig) -> Exporter:
    """The exporter of a config's format."""
    found = EXPORTERS.get(cfg)
    if found is None:
        raise UnsupportedError(f"export format {cfg.name!r} has no exporter; registered: {', '.join(EXPORTERS.table())}")
    return found


def export(source: str | Path, cfg: ExportConfig, out: str | Path | None = None, *, overrides: list[str] | tuple[str, ...] = (), force: bool = False) -> Bundle:
    """Export a torch bundle; `overrides` (`data.path=DIR`, ...) change where the dev examples for parity come from."""
    if cfg.fuse and cfg.format != "onnx":
        raise ConfigError(f"fuse applies to ONNX exports only; drop --fuse for {cfg.format}")
    return derive(source, cfg, "export", lambda parent, directory: _export(parent, cfg, directory), out, accepts=_accepts,
                  samples=cfg.parity_samples, overrides=overrides, force=force)


def _accepts(parent: Bundle) -> None:
    if parent.manifest.format != "torch":
        raise UnsupportedError(
            f"{parent.path}: is already a {parent.manifest.format} bundle; export reads a torch bundle (a teacher or a distilled student)"
        )


def _export(parent: Parent, cfg: ExportConfig, directory: Path) -> Derived:
    manifest = parent.manifest
    spec = family_spec(manifest.architecture)
    golden, golden_texts = parent.golden
    training_encoder = parent.encoder()
    _check_tokenizer(golden, training_encoder.encode(golden_texts), training_encoder.pad_id, parent.path)
    # TFLite's largest bucket may be shorter than the parent's max length: both sides then see the same truncation.
    max_length = min(manifest.tokenizer.max_length, max(cfg.buckets)) if cfg.format in BUCKETED_FORMATS else manifest.tokenizer.max_length
    encoder = parent.encoder(max_length)
    metadata = {
        "task": manifest.task.model_dump(),
        "labels": list(manifest.task.labels),
        "tokenizer": {**manifest.tokenizer.model_dump(), "max_length": max_length},
        "family": spec.name,
        "parent_sha256": parent.bundle.sha256,
    }
    calibration = parent.calibration(encoder, cfg.calibration_samples) if cfg.int8 == "static" else []
    source_info = Source(parent=parent.bundle, encoder=encoder, trace_examples=encoder.encode(golden_texts), metadata=metadata,
                         calibration=calibration)
    with step(f"export: converting to {FORMAT_NAMES.get(cfg.format, cfg.format)}"):
        exported = exporter(cfg)(parent.model, spec, source_info, cfg, directory)
    tolerance = spec.tolerance[cfg.format]

    def judge(results: list[OutputParity]) -> dict[str, Any]:
        if cfg.int8:
            # A quantizing export is judged as `edgekd quantize` judges its outputs: top-1 agreement on dev, not logits.
            dev = results[-1]
            if dev.agreement < INT8_MIN_AGREEMENT:
                raise ParityError(
                    f"the {cfg.format} INT8 ({cfg.int8}) export of {parent.path}: top-1 agreement with the parent "
                    f"{dev.agreement:.4f} is below {INT8_MIN_AGREEMENT} on {dev.examples} dev examples (SQNR {dev.sqnr_db:.1f} dB); "
                    "the quantized program is broken for this model. Try the other --int8 mode; no bundle was written."
                )
            return {"min_agreement": INT8_MIN_AGREEMENT}
        check(results, tolerance, f"the {cfg.format} export of {parent.path}")
        return {"tolerance": vars(tolerance)}

    return Derived(
        details=exported.details,
        runner=lambda _: exported.run,
        format=cfg.format,
        max_length=max_length,
        inputs=exported.inputs,
        group=exported.group,
        extra_sets={"edge cases": _edge_texts(parent.data.dev.texts, manifest.task.columns, max_length)},
        judge=judge,
    )


def _edge_texts(dev_texts: list[tuple[str, ...]], columns: int, max_length: int) -> list[tuple[str, ...]]:
    """An empty text, a single word, and a text longer than the maximum length (truncated by the tokenizer)."""
    words = " ".join(t[0] for t in dev_texts[:200]).split()
    long_text = " ".join((words or ["word"]) * (max_length * 2 // max(1, len(words)) + 1))
    singles = ["", words[0] if words else "a", long_text]
    if columns == 1:
        return [(t,) for t in singles]
    return [("", ""), (singles[1], long_text), (long_text, long_text)]


def _check_tokenizer(golden: Any, examples: list[Example], pad_id: int, where: Path) -> None:
    """The runtime tokenizer must give the ids training gave (stored with the golden examples)."""
    feeds = collate(examples, pad_id)
    problems = [
        f"{name}: runtime {feeds[name].tolist()[:2]}... vs training {golden[name].tolist()[:2]}..."
        for name in feeds
        if name in golden and (feeds[name].shape != golden[name].shape or not np.array_equal(feeds[name], golden[name]))
    ]
    if problems:
        raise ParityError(f"{where}: the runtime tokenizer does not reproduce the golden inputs:\n  " + "\n  ".join(problems))
