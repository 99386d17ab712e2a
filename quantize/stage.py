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


from edgekd.bundle import Bundle
from edgekd.config import Handlers, QuantizeConfig
from edgekd.derive import Derived, Parent, derive
from edgekd.errors import ParityError, UnsupportedError
from edgekd.logs import root_filter
from edgekd.parity import OutputParity
from edgekd.progress import step
from edgekd.records import MODEL_FILES
from edgekd.runtime.backends import open_backend

from .presets import host_preset, host_saturation

logger = logging.getLogger(__name__)

# handler(source model file, target model file, config, calibration examples, pad id) -> details for the manifest;
# a method that reads a torch bundle (Neural Compressor) has a torch transform instead (`prune.Pruner`).
Handler = Callable[..., dict[str, Any]]


def _load_handlers() -> None:
    from . import inc, onnx, optimum_ort, tflite  # noqa: F401  (their `@HANDLERS.register` fill the table)


# Quantization handlers by config type, each registered beside its code; the config class says which format it reads.
HANDLERS: Handlers[Handler] = Handlers("quantize", _load_handlers)
register = HANDLERS.register


def handlers() -> dict[str, tuple[type, Handler]]:
    """Every quantization method with a handler, by name: (its config class, its handler)."""
    return HANDLERS.table()


def quantize(source: str | Path, cfg: QuantizeConfig, out: str | Path | None = None, *, overrides: list[str] | tuple[str, ...] = (), force: bool = False) -> Bundle:
    """Quantize an exported bundle; `overrides` (`data.path=DIR`) say where calibration and dev text come from."""
    handler = HANDLERS.get(cfg)

    def accepts(parent: Bundle) -> None:
        _accepts(parent, cfg, handler is not None)

    if cfg.parent_format == "torch" and handler is not None:
        from .prune import torch_transform

        # A torch bundle out (e.g. RTN-rounded float weights): it flows on to `edgekd export`.
        return derive(source, cfg, "quantize", torch_transform(handler, cfg), out, accepts=accepts, key=cfg.name,
                      overrides=overrides, force=force)
    # (A method without a handler is refused by `accepts`, which names the valid ones.)
    return derive(source, cfg, "quantize", lambda parent, directory: _quantize(parent, cfg, handler, directory), out,
                  accepts=accepts, samples=cfg.eval_samples, overrides=overrides, force=force)


def _accepts(parent: Bundle, cfg: QuantizeConfig, handled: bool) -> None:
    manifest = parent.manifest
    if not handled or cfg.parent_format != manifest.format:
        export_first = f"export it first: edgekd export {parent.path} --to onnx"
        valid = [name for name, (config, _) in handlers().items() if config.parent_format == manifest.format]
        shown = ", ".join(f"{name} (Neural Compressor)" if name == "inc" else name for name in valid)
        if manifest.format == "torch":
            shown = f"{shown}, or {export_first}" if shown else export_first
        raise UnsupportedError(f"{parent.path}: method {cfg.name!r} does not apply to a {manifest.format} bundle; valid: {shown}")
    if cfg.parent_format == "torch":
        return
    if manifest.architecture.quantize:
        raise UnsupportedError(f"{parent.path}: is already quantized ({manifest.architecture.quantize.get('method')}); quantize its float parent")
    if cfg.needs_unfused and (manifest.architecture.export or {}).get("fusions"):
        raise UnsupportedError(
            f"{parent.path}: {cfg.name} needs the unfused export (ONNX shape inference cannot type the fused operators' "
            "outputs, so calibration would skip most tensors); quantize the export made without --fuse. ONNX Runtime "
            "fuses the QDQ graph's MatMuls into integer kernels when it loads the model."
        )


def _quantize(parent: Parent, cfg: QuantizeConfig, handler: Handler | None, directory: Path) -> Derived:
    assert handler is not None, "refused by _accepts"
    encoder = parent.encoder()
    samples = getattr(cfg, "samples", 0)
    calibration = parent.calibration(encoder, samples) if samples else []
    model_file = MODEL_FILES[parent.manifest.format]
    target = directory / model_file
    # onnxruntime's quantizer logs every tensor it skips at INFO on the root logger, and advises pre-processing
    # for dynamic quantization too (it matters for static calibration, which does it).
    with root_filter(lambda r: r.levelno < logging.WARNING or "pre-processing before quantization" in r.getMessage()), \
            step(f"quantize: {cfg.method}" + (f", calibrated on {len(calibration)} examples" if calibration else "")):
        details = {"method": cfg.method, **handler(parent.model_file(), target, cfg, calibration, encoder.pad_id)}
    saturation = host_saturation(cfg)
    if saturation:
        logger.warning("%s: %s", cfg.method, saturation)
        details["evaluated_on"] = {"host": host_preset(), "note": saturation}

    def judge(results: list[OutputParity]) -> dict[str, Any]:
        dev = results[-1]
        if dev.agreement < cfg.min_agreement:
            raise ParityError(
                f"{cfg.method} of {parent.path}: top-1 agreement with the parent {dev.agreement:.4f} is below the floor "
                f"{cfg.min_agreement} on {dev.examples} dev examples (SQNR {dev.sqnr_db:.1f} dB); the quantized "
                "model is broken for this graph. Try another method or calibration; no bundle was written."
            )
        return {}

    return Derived(details=details, runner=lambda ours: open_backend(target, ours.pad_id).run, judge=judge)
