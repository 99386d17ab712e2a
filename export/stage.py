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

from edgekd import metrics
from edgekd.bundle import GOLDEN, Bundle, copy_support_files, produced_by, write_golden
from edgekd.config import ExportConfig, Handlers, to_dict
from edgekd.data import lineage_data, load_task_data, resolve_task, spread_by_length
from edgekd.errors import ConfigError, ParityError, UnsupportedError
from edgekd.families import FamilySpec, family_spec
from edgekd.modeling import load_torch_model
from edgekd.parity import check, compare_sets
from edgekd.runtime.encoder import Example, collate, load_encoder, sequence_length
from edgekd.writer import BundleWriter, check_output

from .base import Exported, Source

logger = logging.getLogger(__name__)

Exporter = Callable[[nn.Module, FamilySpec, Source, ExportConfig, Path], Exported]


def _load_exporters() -> None:
    from . import onnx, tflite  # noqa: F401  (their `@register` enter them)


# Exporters by config type and format, each registered beside its code (`@register(ExportConfig, "onnx")`).
EXPORTERS: Handlers[Exporter] = Handlers("export", _load_exporters)
register = EXPORTERS.register


def exporter(cfg: ExportConfig) -> Exporter:
    """The exporter of a config's format."""
    found = EXPORTERS.get(cfg)
    if found is None:
        raise UnsupportedError(f"export format {cfg.name!r} has no exporter; registered: {', '.join(EXPORTERS.table())}")
    return found


def default_output(source: Path, cfg: ExportConfig) -> Path:
    return source.parent / f"{source.name}-{cfg.output_suffix()}"


def export(source: str | Path, cfg: ExportConfig, out: str | Path | None = None, *, overrides: list[str] | tuple[str, ...] = (), force: bool = False) -> Bundle:
    """Export a torch bundle; `overrides` (`data.path=DIR`, ...) change where the dev examples for parity come from."""
    parent = Bundle.open(source)
    manifest = parent.manifest
    if manifest.format != "torch":
        raise UnsupportedError(
            f"{parent.path}: is already a {manifest.format} bundle; export reads a torch bundle (a teacher or a distilled student)"
        )
    if cfg.fuse and cfg.format != "onnx":
        raise ConfigError(f"fuse applies to ONNX exports only; drop --fuse for {cfg.format}")
    out_path = check_output(Path(out) if out is not None else default_output(parent.path, cfg), overwrite=force, sources=(parent.path,))
    spec = family_spec(manifest.architecture)
    data_cfg = lineage_data(parent, overrides)
    task = resolve_task(data_cfg)
    columns = manifest.task.columns
    tokenizer = manifest.tokenizer
    golden, golden_texts = parent.read_golden()
    training_encoder = load_encoder(parent.tokenizer_dir, tokenizer.type, tokenizer.max_length, columns)
    _check_tokenizer(golden, training_encoder.encode(golden_texts), training_encoder.pad_id, parent.path)
    # TFLite's largest bucket may be shorter than the parent's max length: both sides then see the same truncation.
    max_length = min(tokenizer.max_length, max(cfg.buckets)) if cfg.format == "tflite" else tokenizer.max_length
    encoder = load_encoder(parent.tokenizer_dir, tokenizer.type, max_length, columns)
    golden_examples = encoder.encode(golden_texts)

    dev = load_task_data(data_cfg).dev
    dev_examples = encoder.encode(dev.texts)
    lengths = np.asarray([sequence_length(e) for e in dev_examples])
    picks = np.arange(len(dev)) if cfg.parity_samples == "all" else spread_by_length(lengths, int(cfg.parity_samples))
    model = load_torch_model(parent)
    metadata = {
        "task": manifest.task.model_dump(),
        "labels": list(manifest.task.labels),
        "tokenizer": {**tokenizer.model_dump(), "max_length": max_length},
        "family": spec.name,
        "parent_sha256": parent.sha256,
    }
    source_info = Source(parent=parent, encoder=encoder, trace_examples=golden_examples, metadata=metadata)
    with BundleWriter(out_path, overwrite=force) as writer:
        exported = exporter(cfg)(model, spec, source_info, cfg, writer.path)
        sets = {
            "golden": golden_examples,
            "edge cases": encoder.encode(_edge_texts(dev.texts, columns, encoder.max_length)),
            "dev": [dev_examples[i] for i in picks],
        }
        results, outputs = compare_sets(spec.runner(model, encoder.pad_id), exported.run, sets, exported.group)
        dev_logits = outputs["dev"]
        tolerance = spec.tolerance[cfg.format]
        check(results, tolerance, f"the {cfg.format} export of {parent.path}")
        copy_support_files(parent, writer.path)
        write_golden(writer.path, collate(golden_examples, encoder.pad_id), outputs["golden"], golden_texts, np.asarray(golden["logits"]))
        dev_metrics = metrics.compute(task.metrics, dev_logits, dev.labels[picks], task.problem)
        key = "dev" if len(picks) == len(dev) else "dev_sample"
        bundle = writer.commit(
            kind=manifest.kind,
            format=cfg.format,
            task=manifest.task.model_dump(),
            architecture={**manifest.architecture, "export": exported.details},
            inputs=exported.inputs,
            outputs=[o.model_dump() for o in manifest.outputs],
            tokenizer={**tokenizer.model_dump(), "max_length": max_length},
            parent={"path": str(parent.path), "sha256": parent.sha256},
            produced_by=produced_by("export", {"export": to_dict(cfg), "data": data_cfg.model_dump(mode="json")}, None),
            metrics={
                key: {**{k: round(v, 6) for k, v in dev_metrics.items()}, "examples": int(len(picks))},
                "parent_dev": manifest.metrics.get("dev", {}),
                "parity": {"tolerance": vars(tolerance), "outputs": [r.as_dict() for r in results]},
            },
            golden=GOLDEN,
        )
    return bundle


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
