"""`edgekd quantize`: an ONNX or TFLite bundle to a quantized one, evaluated against its parent through the runtime.

Each method is a config type (its facts: the format it reads, its output suffix) plus a handler registered by config
type beside its code (`@register(OnnxDynamicConfig)`), as torchao dispatches on its configs.
Every output is evaluated: dev metrics of the quantized file through the runtime, top-1 agreement and logit SQNR
against the parent on the same examples, bytes, gzip bytes, parameters and non-zero parameters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgekd import metrics
from edgekd.bundle import Bundle, copy_support_files, produced_by, write_golden
from edgekd.config import Handlers, QuantizeConfig, to_dict
from edgekd.data import lineage_data, load_task_data, resolve_task, spread_by_length
from edgekd.errors import ParityError, UnsupportedError
from edgekd.footprint import footprint
from edgekd.logs import root_filter
from edgekd.parity import compare_sets
from edgekd.runtime.backends import open_backend
from edgekd.runtime.encoder import Example, collate, load_encoder, sequence_length
from edgekd.writer import BundleWriter, check_output

from .presets import host_preset, host_saturation

logger = logging.getLogger(__name__)

# handler(source model file, target model file, config, calibration examples, pad id) -> details for the manifest;
# a method that reads a torch bundle (Neural Compressor) has a torch transform instead (`prune.Pruner`).
Handler = Callable[..., dict[str, Any]]
MODEL_FILES = {"onnx": "model.onnx", "tflite": "model.tflite"}


def _load_handlers() -> None:
    from . import inc, onnx, tflite  # noqa: F401  (their `@HANDLERS.register` fill the table)


# Quantization handlers by config type, each registered beside its code; the config class says which format it reads.
HANDLERS: Handlers[Handler] = Handlers("quantize", _load_handlers)
register = HANDLERS.register


def handlers() -> dict[str, tuple[type, Handler]]:
    """Every quantization method with a handler, by name: (its config class, its handler)."""
    return HANDLERS.table()


def default_output(source: Path, cfg: QuantizeConfig) -> Path:
    return source.parent / f"{source.name}-{cfg.output_suffix()}"


def quantize(source: str | Path, cfg: QuantizeConfig, out: str | Path | None = None, *, overrides: list[str] | tuple[str, ...] = (), force: bool = False) -> Bundle:
    """Quantize an exported bundle; `overrides` (`data.path=DIR`) say where calibration and dev text come from."""
    parent = Bundle.open(source)
    manifest = parent.manifest
    handler = HANDLERS.get(cfg)
    if handler is None or cfg.parent_format != manifest.format:
        export_first = f"export it first: edgekd export {parent.path} --to onnx"
        valid = [name for name, (config, _) in handlers().items() if config.parent_format == manifest.format]
        shown = ", ".join(f"{name} (Neural Compressor)" if name == "inc" else name for name in valid)
        if manifest.format == "torch":
            shown = f"{shown}, or {export_first}" if shown else export_first
        raise UnsupportedError(f"{parent.path}: method {cfg.name!r} does not apply to a {manifest.format} bundle; valid: {shown}")
    if cfg.parent_format == "torch":
        from .prune import transform_torch

        # A torch bundle out (e.g. RTN-rounded float weights): it flows on to `edgekd export`.
        return transform_torch(parent.path, cfg, handler, "quantize", cfg.output_suffix(), out, overrides=overrides, force=force, key=cfg.name)
    if manifest.architecture.get("quantize"):
        raise UnsupportedError(f"{parent.path}: is already quantized ({manifest.architecture['quantize'].get('method')}); quantize its float parent")
    if cfg.method == "onnx-static" and manifest.architecture.get("export", {}).get("fusions"):
        raise UnsupportedError(
            f"{parent.path}: onnx-static needs the unfused export (ONNX shape inference cannot type the fused operators' "
            "outputs, so calibration would skip most tensors); quantize the export made without --fuse. ONNX Runtime "
            "fuses the QDQ graph's MatMuls into integer kernels when it loads the model."
        )
    out_path = check_output(Path(out) if out is not None else default_output(parent.path, cfg), overwrite=force, sources=(parent.path,))
    model_file = MODEL_FILES[manifest.format]
    data_cfg = lineage_data(parent, overrides)
    task = resolve_task(data_cfg)
    data = load_task_data(data_cfg)
    columns = manifest.task.columns
    encoder = load_encoder(parent.tokenizer_dir, manifest.tokenizer.type, manifest.tokenizer.max_length, columns)
    calibration: list[Example] = []
    samples = getattr(cfg, "samples", 0)
    if samples:
        # Real task text, spread over the length range, so short and long inputs both set the activation ranges.
        train = encoder.encode(data.train.texts)
        picks = spread_by_length(np.asarray([sequence_length(e) for e in train]), samples)
        calibration = [train[i] for i in picks]
    dev_examples = encoder.encode(data.dev.texts)
    picks = np.arange(len(dev_examples)) if cfg.eval_samples == "all" else spread_by_length(
        np.asarray([sequence_length(e) for e in dev_examples]), int(cfg.eval_samples)
    )
    golden, golden_texts = parent.read_golden()
    golden_examples = encoder.encode(golden_texts)
    parent_backend = open_backend(parent.file(model_file), encoder.pad_id)
    with BundleWriter(out_path, overwrite=force) as writer:
        target = writer.path / model_file
        # onnxruntime's quantizer logs every tensor it skips at INFO on the root logger, and advises pre-processing
        # for dynamic quantization too (it matters for static calibration, which does it).
        with root_filter(lambda r: r.levelno < logging.WARNING or "pre-processing before quantization" in r.getMessage()):
            details = {"method": cfg.method, **handler(parent.file(model_file), target, cfg, calibration, encoder.pad_id)}
        saturation = host_saturation(cfg)
        if saturation:
            logger.warning("%s: %s", cfg.method, saturation)
            details["evaluated_on"] = {"host": host_preset(), "note": saturation}
        candidate = open_backend(target, encoder.pad_id)
        sets = {"golden": golden_examples, "dev": [dev_examples[i] for i in picks]}
        results, outputs = compare_sets(parent_backend.run, candidate.run, sets)
        dev_parity = results[-1]
        if dev_parity.agreement < cfg.min_agreement:
            raise ParityError(
                f"{cfg.method} of {parent.path}: top-1 agreement with the parent {dev_parity.agreement:.4f} is below the floor "
                f"{cfg.min_agreement} on {dev_parity.examples} dev examples (SQNR {dev_parity.sqnr_db:.1f} dB); the quantized "
                "model is broken for this graph. Try another method or calibration; no bundle was written."
            )
        copy_support_files(parent, writer.path)
        golden_feeds = collate(golden_examples, encoder.pad_id)
        write_golden(writer.path, golden_feeds, outputs["golden"], golden_texts, np.asarray(golden["logits"]))
        dev_metrics = metrics.compute(task.metrics, outputs["dev"], data.dev.labels[picks], task.problem)
        key = "dev" if len(picks) == len(data.dev) else "dev_sample"
        return writer.commit(
            kind=manifest.kind,
            format=manifest.format,
            task=manifest.task.model_dump(),
            architecture={**manifest.architecture, "quantize": details},
            inputs=[i.model_dump() for i in manifest.inputs],
            outputs=[o.model_dump() for o in manifest.outputs],
            tokenizer=manifest.tokenizer.model_dump(),
            parent={"path": str(parent.path), "sha256": parent.sha256},
            produced_by=produced_by("quantize", {"quantize": to_dict(cfg), "data": data_cfg.model_dump(mode="json")}, None),
            metrics={
                key: {**{k: round(v, 6) for k, v in dev_metrics.items()}, "examples": int(len(picks))},
                # The float model's full-dev metrics: measured on the export itself, or on its torch parent.
                "parent_dev": manifest.metrics.get("dev") or manifest.metrics.get("parent_dev", {}),
                "parity": {"outputs": [r.as_dict() for r in results]},
                "footprint": footprint(target),
                "parent_footprint": footprint(parent.file(model_file)),
            },
            golden=manifest.golden,
        )

