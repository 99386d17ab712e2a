"""Hardware presets: named factories of quantization configs, each choice with its reason.

`for_target("x86-vnni")` and friends, like optimum's `AutoQuantizationConfig.arm64()`.
"""

from __future__ import annotations

from collections.abc import Callable

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
