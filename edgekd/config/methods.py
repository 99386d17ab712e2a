"""Config models of the methods that derive a bundle from a bundle: export formats, quantize methods, prune methods."""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Any, ClassVar, Generic, Literal, TypeVar

from pydantic import Field, field_validator, model_validator

from .base import _Config
from .render import _shown


class MethodConfig(_Config):
    """A method that derives a bundle from a bundle. The class states what it reads and makes; the recipe's graph,
    default output names and the CLI help read these facts, and defining a concrete class enters it in `METHODS`.
    Its handler is registered beside the handler's code, in its stage's registry (the spine imports no stage)."""

    stage: ClassVar[str]
    # The format of the bundle the method reads, and the one it makes (None: the same as it reads).
    parent_format: ClassVar[str] = "torch"
    output_format: ClassVar[str | None] = None
    # The default output is the parent's folder name + "-" + this suffix.
    suffix: ClassVar[str] = ""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        for name in _tags(cls):
            known = METHODS.setdefault(cls.stage, {}).get(name)
            if known is not None and known.__qualname__ != cls.__qualname__:
                raise TypeError(f"{cls.stage} method {name!r} is already defined by {known.__name__}")
            METHODS[cls.stage][name] = cls

    @property
    def name(self) -> str:
        """The method's name as the recipe and the CLI spell it."""
        return str(_tags(type(self))[0])

    def made_format(self) -> str:
        return self.output_format or self.parent_format

    def output_suffix(self) -> str:
        return self.suffix


# Every method config by stage and name, in definition order (filled as the classes are defined).
METHODS: dict[str, dict[str, type[MethodConfig]]] = {}


def _tags(cls: type[MethodConfig]) -> tuple[str, ...]:
    """The names a concrete config class answers to: its `method` literal (export: its `format` literals)."""
    field = cls.model_fields.get("method") or cls.model_fields.get("format")
    return typing.get_args(field.annotation) if field is not None else ()


def method_configs(stage: str) -> dict[str, type[MethodConfig]]:
    """The config class of every method of a stage (export, quantize, prune), by name."""
    return dict(METHODS.get(stage, {}))


def registered_methods(stage: str) -> list[str]:
    """The names of a stage's methods, in definition order (the CLI help lists them)."""
    return list(METHODS.get(stage, {}))


H = TypeVar("H", bound=Callable[..., Any])


class Handlers(Generic[H]):
    """A stage's handlers keyed by config type (an export's by format too), each entered by `@handlers.register(Config)`
    beside its code, as torchao registers its transforms. `load` imports the modules holding the handlers (each pulls
    in its own backend only when a handler runs), so the table is complete when it is read."""

    def __init__(self, stage: str, load: Callable[[], object]) -> None:
        self.stage = stage
        self._load = load
        self._table: dict[str, tuple[type[MethodConfig], H]] = {}

    def register(self, config: type[MethodConfig], name: str | None = None) -> Callable[[H], H]:
        """Enter the decorated function as the handler of `config` (of its method `name` where it has several)."""
        names = _tags(config)
        if config.stage != self.stage or (name or names[0]) not in names or (name is None and len(names) != 1):
            raise TypeError(f"{config.__name__} {name or ''}: not one {self.stage} method (its names: {', '.join(names)})")

        def enter(handler: H) -> H:
            self._table[name or names[0]] = (config, handler)
            return handler

        return enter

    def unregister(self, name: str) -> None:
        self._table.pop(name, None)

    def table(self) -> dict[str, tuple[type[MethodConfig], H]]:
        """Every registered method by name: (its config class, its handler)."""
        self._load()
        return dict(self._table)

    def get(self, cfg: MethodConfig) -> H | None:
        """The handler of a config, or None where its method has none."""
        entry = self.table().get(cfg.name)
        return entry[1] if entry is not None and isinstance(cfg, entry[0]) else None


class ExportConfig(MethodConfig):
    """One export of a torch bundle to a deployable format, checked against its parent."""

    stage: ClassVar[str] = "export"
    format: Literal["onnx", "tflite", "executorch"]
    # ONNX opset; 17 has LayerNormalization, which ONNX Runtime's fusions expect.
    opset: int = Field(default=17, ge=17, le=21)
    # ONNX only: ONNX Runtime's transformer fusions (attention, skip layer-norm, GELU); BERT-family graphs only.
    fuse: bool = False
    # TFLite and ExecuTorch: fixed sequence lengths, one signature (method) each; the runtime picks the smallest that
    # fits. Lengths past the tokenizer's max_length are dropped (the max_length itself becomes the largest bucket).
    buckets: list[int] = Field(default=[16, 32, 64, 128], min_length=1)
    # ExecuTorch only: INT8 through ExecuTorch's XNNPACK quantizer before lowering; `static` calibrates activation
    # ranges on `calibration_samples` training examples, `dynamic` quantizes activations per call.
    int8: Literal["static", "dynamic"] | None = None
    calibration_samples: int = Field(default=128, gt=0)
    # Dev examples compared with the parent (spread over the length range), or `all` for the whole dev set.
    parity_samples: int | Literal["all"] = 256

    @field_validator("buckets")
    @classmethod
    def _positive_buckets(cls, buckets: list[int]) -> list[int]:
        if any(b < 2 for b in buckets):
            raise ValueError(f"buckets {_shown(buckets)}: every sequence length must be at least 2")
        return sorted(set(buckets))

    @field_validator("parity_samples")
    @classmethod
    def _some_samples(cls, samples: int | str) -> int | str:
        if isinstance(samples, int) and samples < 1:
            raise ValueError(f"parity_samples {samples}: compare at least 1 dev example (or `all`)")
        return samples

    @property
    def name(self) -> str:
        return self.format

    def made_format(self) -> str:
        return self.format

    def output_suffix(self) -> str:
        return self.format + ("-fused" if self.fuse else "") + (f"-int8{'-dynamic' if self.int8 == 'dynamic' else ''}" if self.int8 else "")

    @model_validator(mode="after")
    def _options_of_the_format(self) -> ExportConfig:
        if self.int8 and self.format != "executorch":
            raise ValueError(f"int8 applies to ExecuTorch exports only; quantize a {self.format} export with `edgekd quantize`")
        return self


class _QuantizeBase(MethodConfig):
    stage: ClassVar[str] = "quantize"
    # Whether the method refuses a parent exported with ORT's fusions.
    needs_unfused: ClassVar[bool] = False

    # A floor on top-1 agreement with the parent on the evaluated dev examples: a quantized model below it is broken
    # (a wrong calibration, an unsupported graph) and is not written. Accuracy budgets belong in the gate.
    min_agreement: float = Field(default=0.9, ge=0.0, le=1.0)
    # Dev examples evaluated (accuracy, agreement, SQNR against the parent), or `all`.
    eval_samples: int | Literal["all"] = "all"


class OnnxDynamicConfig(_QuantizeBase):
    """ONNX Runtime dynamic INT8: weights quantized ahead of time, activations' ranges computed per call."""

    parent_format: ClassVar[str] = "onnx"
    suffix: ClassVar[str] = "dynamic"
    method: Literal["onnx-dynamic"] = "onnx-dynamic"
    per_channel: bool = True
    # 7-bit weights: needed where INT8 dot products saturate 16-bit sums (AVX2 without VNNI); see quantize.presets.
    reduce_range: bool = False
    # `weights`: the operators that hold weights, MatMuls only where B is a weight (attention's activation products stay
    # float). `ort-defaults`: `onnxruntime.quantization.quantize_dynamic` as its defaults have it (every operator it can
    # quantize, activation-by-activation MatMuls too): the plain call a user writes, measured beside edgekd's choice.
    operators: Literal["weights", "ort-defaults"] = "weights"


class OnnxStaticConfig(_QuantizeBase):
    """ONNX Runtime static INT8 in QDQ format, activation ranges calibrated on real training text."""

    parent_format: ClassVar[str] = "onnx"
    # ONNX shape inference cannot type the outputs of ORT's fused operators, so calibration needs the unfused export.
    needs_unfused: ClassVar[bool] = True
    suffix: ClassVar[str] = "static"
    method: Literal["onnx-static"] = "onnx-static"
    calibration: Literal["minmax", "entropy", "percentile"] = "minmax"
    # Training examples run to collect activation ranges.
    samples: int = Field(default=128, gt=0)
    # Percentile calibration only: the share of each activation's values inside its range.
    percentile: float = Field(default=99.999, gt=90.0, le=100.0)
    per_channel: bool = True
    # uint8 activations suit x86 (VNNI multiplies u8 by s8); int8 symmetric suits ARM64's SDOT.
    activations: Literal["uint8", "int8"] = "uint8"
    reduce_range: bool = False


class OnnxFp16Config(_QuantizeBase):
    """FP16 weights and compute (inputs and outputs stay as they were): half the size; fast where FP16 is native."""

    parent_format: ClassVar[str] = "onnx"
    suffix: ClassVar[str] = "fp16"
    method: Literal["onnx-fp16"] = "onnx-fp16"


class OnnxInt4Config(_QuantizeBase):
    """ONNX Runtime weight-only 4-bit: MatMul weights (MatMulNBits) and, with `embeddings`, the embedding table
    (GatherBlockQuantized), in blocks of `block_size` values sharing a scale; activations stay float."""

    parent_format: ClassVar[str] = "onnx"
    suffix: ClassVar[str] = "int4"
    method: Literal["onnx-int4"] = "onnx-int4"
    block_size: int = Field(default=32, ge=16)
    embeddings: bool = True

    @field_validator("block_size")
    @classmethod
    def _power_of_two(cls, block_size: int) -> int:
        if block_size & (block_size - 1):
            raise ValueError(f"block_size {block_size}: ONNX Runtime's 4-bit kernels take a power of two (16, 32, 64, 128)")
        return block_size


class OptimumDynamicConfig(_QuantizeBase):
    """Optimum's `ORTQuantizer` with one of its `AutoQuantizationConfig` presets, dynamic INT8: what a user gets from
    Optimum in three lines. A method of its own so that edgekd's files are measured against it (edgekd/peers.py)."""

    parent_format: ClassVar[str] = "onnx"
    suffix: ClassVar[str] = "optimum"
    method: Literal["optimum-dynamic"] = "optimum-dynamic"
    # The preset's name in optimum.onnxruntime.AutoQuantizationConfig; its other arguments are Optimum's defaults.
    preset: Literal["avx512_vnni", "avx512", "avx2", "arm64"] = "avx512_vnni"
    per_channel: bool = True

    def output_suffix(self) -> str:
        return f"optimum-{self.preset.replace('_', '-')}"


class TfliteDynamicConfig(_QuantizeBase):
    """LiteRT dynamic-range INT8 (ai-edge-quantizer): INT8 weights, float activations quantized on the fly."""

    parent_format: ClassVar[str] = "tflite"
    suffix: ClassVar[str] = "dynamic"
    method: Literal["tflite-dynamic"] = "tflite-dynamic"


class TfliteInt8Config(_QuantizeBase):
    """LiteRT static INT8 (ai-edge-quantizer): INT8 weights and activations, ranges calibrated on real training text."""

    parent_format: ClassVar[str] = "tflite"
    suffix: ClassVar[str] = "int8"
    method: Literal["tflite-int8"] = "tflite-int8"
    # Training examples run to collect activation ranges (spread over the sequence buckets).
    samples: int = Field(default=128, gt=0)


class TfliteFp16Config(_QuantizeBase):
    """LiteRT FP16 weights (ai-edge-quantizer float casting): half the size; compute stays float32."""

    parent_format: ClassVar[str] = "tflite"
    suffix: ClassVar[str] = "fp16"
    method: Literal["tflite-fp16"] = "tflite-fp16"


class IncConfig(_QuantizeBase):
    """Neural Compressor's accuracy-driven tuning of a torch student: weight-only round-to-nearest (RTN) of the Linear
    layers, trying bit widths from the most aggressive and stopping at the first within `tolerable_loss`."""

    parent_format: ClassVar[str] = "torch"
    suffix: ClassVar[str] = "inc"
    method: Literal["inc"] = "inc"
    # Relative loss of the dev metric accepted (0.01: the quantized model keeps at least 99% of the parent's accuracy).
    tolerable_loss: float = Field(default=0.01, gt=0.0, lt=1.0)
    # Weight bit widths tried in this order; widths below 8 quantize groups of `group_size` input channels.
    bits: list[Literal[2, 3, 4, 8]] = Field(default=[4, 8], min_length=1)
    group_size: int = Field(default=32, gt=0)


def method_names(union: Any) -> list[str]:
    """The `method` tags of a discriminated union of configs (QuantizeConfig, PruneConfig), in declaration order."""
    members = typing.get_args(typing.get_args(union)[0])
    return [typing.get_args(m.model_fields["method"].annotation)[0] for m in members]


QuantizeConfig = typing.Annotated[
    OnnxDynamicConfig | OnnxStaticConfig | OnnxFp16Config | OnnxInt4Config | OptimumDynamicConfig | TfliteDynamicConfig | TfliteInt8Config | TfliteFp16Config | IncConfig,
    Field(discriminator="method"),
]


class _PruneBase(MethodConfig):
    # Torch in, torch out (export and quantize it next).
    stage: ClassVar[str] = "prune"


class MagnitudePruneConfig(_PruneBase):
    """Unstructured global magnitude pruning: the smallest weights of every Linear layer, ranked together, set to 0."""

    method: Literal["magnitude"] = "magnitude"
    sparsity: float = Field(ge=0.0, lt=1.0)

    def output_suffix(self) -> str:
        return f"sparse{round(self.sparsity * 100)}"


class VocabPruneConfig(_PruneBase):
    """Keep only the vocabulary the task's training text uses (plus special tokens); shrink the embedding table."""

    method: Literal["vocab"] = "vocab"
    # Keep a piece (or word) only when the training text uses it at least this often: fewer rows, more [UNK]s.
    min_count: int = Field(default=1, ge=1)
    suffix: ClassVar[str] = "vocab"
    # The tokenizer types whose vocabulary can lose entries without changing how kept text splits: WordPiece pieces
    # and whole words stand alone; BPE merges and Unigram scores tie pieces together.
    tokenizers: ClassVar[tuple[str, ...]] = ("wordpiece", "word")


class StructuredPruneConfig(_PruneBase):
    """Remove whole attention heads and FFN neurons of a BERT-family model, least important first (Michel et al. 2019:
    importance = |gradient of the loss with respect to a mask on the unit|, over real training examples)."""

    method: Literal["structured"] = "structured"
    # Share of all attention heads removed (ranked across layers; every layer keeps at least one).
    heads: float = Field(default=0.0, ge=0.0, lt=1.0)
    # Share of FFN neurons removed from every layer (the same count per layer, so the config stays uniform).
    ffn: float = Field(default=0.0, ge=0.0, lt=1.0)
    # Training examples whose gradients rank the units.
    samples: int = Field(default=512, gt=0)

    @model_validator(mode="after")
    def _something_to_prune(self) -> StructuredPruneConfig:
        if self.heads == 0 and self.ffn == 0:
            raise ValueError("structured pruning needs heads > 0 or ffn > 0 (shares in [0, 1))")
        return self

    def output_suffix(self) -> str:
        return f"heads{round(self.heads * 100)}-ffn{round(self.ffn * 100)}"


PruneConfig = typing.Annotated[MagnitudePruneConfig | VocabPruneConfig | StructuredPruneConfig, Field(discriminator="method")]
