"""Hardware presets: named factories of quantization configs, each choice with its reason.

`for_target("x86-vnni")` and friends, like optimum's `AutoQuantizationConfig.arm64()`.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from pathlib import Path

from edgekd.config import OnnxDynamicConfig, OnnxStaticConfig
from edgekd.errors import ConfigError


def x86_vnni() -> OnnxDynamicConfig:
    # VNNI's VPDPBUSD multiplies u8 activations by s8 weights into 32-bit sums: full 8-bit weights cannot overflow,
    # so no reduce_range; per-channel weight scales cost nothing at run time and keep the small rows precise.
    return OnnxDynamicConfig(per_channel=True, reduce_range=False)


def avx2() -> OnnxDynamicConfig:
    # AVX2 without VNNI (VPMADDUBSW) adds pairs of u8*s8 products into saturating 16-bit sums: 7-bit weights
    # (reduce_range) keep the sums in range at the cost of one bit of weight precision.
    return OnnxDynamicConfig(per_channel=True, reduce_range=True)


def arm64() -> OnnxStaticConfig:
    # ARM64's SDOT multiplies s8 by s8: symmetric int8 activations and weights in QDQ form map onto it, and static
    # ranges avoid the per-call min/max pass, which costs relatively more on small in-order mobile cores.
    return OnnxStaticConfig(activations="int8", per_channel=True, calibration="minmax")


PRESETS: dict[str, Callable[[], OnnxDynamicConfig | OnnxStaticConfig]] = {"x86-vnni": x86_vnni, "avx2": avx2, "arm64": arm64}


def for_target(name: str) -> OnnxDynamicConfig | OnnxStaticConfig:
    if name not in PRESETS:
        raise ConfigError(f"preset {name!r} is unknown; valid: {', '.join(PRESETS)}")
    return PRESETS[name]()


def host_preset() -> str | None:
    """The preset that matches this machine's 8-bit dot products (x86-vnni, avx2, arm64), from its CPU flags; None
    when they cannot be read or the CPU is none of these."""
    machine = platform.machine().lower()
    if machine in ("aarch64", "arm64"):
        return "arm64"
    if machine not in ("x86_64", "amd64"):
        return None
    try:
        flags = {flag for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")
                 for flag in line.partition(":")[2].split()}
    except OSError:
        return None
    if flags & {"avx512_vnni", "avx_vnni", "amx_int8"}:
        return "x86-vnni"
    return "avx2" if "avx2" in flags else None


def host_saturation(cfg: object) -> str | None:
    """Why this machine's numbers for an ONNX INT8 config understate a VNNI or ARM target's, or None. Without VNNI,
    ONNX Runtime's x86 kernels add pairs of u8*s8 products into saturating 16-bit sums; with full 8-bit weights the
    sums overflow, so agreement and SQNR measured here are lower than on a VNNI or ARM device (the `avx2` preset's
    7-bit weights avoid it)."""
    # (Optimum's presets keep full 8-bit weights: its config has no reduce_range.)
    if getattr(cfg, "method", None) not in ("onnx-dynamic", "onnx-static", "optimum-dynamic") or getattr(cfg, "reduce_range", False):
        return None
    if host_preset() != "avx2":
        return None
    return ("this CPU has AVX2 but no VNNI: ONNX Runtime adds u8*s8 pairs into saturating 16-bit sums here, so the "
            "agreement and SQNR measured on it understate a VNNI or ARM target's; for AVX2 targets use --preset avx2 "
            "(--reduce-range)")
