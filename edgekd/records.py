"""Typed records of a manifest: the model's architecture facts and its measured metrics.

A stage writes them and every reader reads them through these models, so the facts a reader needs (which split the
accuracy was measured on, on how many examples; whether a file is quantized; which family a model is) are decided in
one place. Stage-specific extras (a teacher's loss history, a student's stages) ride along as extra fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

# The model files a bundle's stage writes, by format.
MODEL_FILES = {"torch": "model.safetensors", "onnx": "model.onnx", "tflite": "model.tflite", "executorch": "model.pte"}
# The formats the runtime runs and the benchmark measures (a torch bundle is exported first).
DEPLOYABLE_FORMATS = ("onnx", "tflite", "executorch")
# The formats whose file fixes the sequence length: one signature or method per bucket (seq16, seq32, ...).
BUCKETED_FORMATS = ("tflite", "executorch")
# Metric values are stored to this many decimals (a millionth of an accuracy is far below any real difference).
DECIMALS = 6


class _Open(BaseModel):
    # Frozen, and open to the extras a stage adds (they keep their JSON form and are read as attributes).
    model_config = ConfigDict(frozen=True, extra="allow")

    @model_serializer(mode="wrap")
    def _set_facts_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # A manifest lists the facts a stage set, not every optional field of the model at its default.
        data = handler(self)
        fields = type(self).model_fields
        return {k: v for k, v in data.items() if k not in fields or v != fields[k].default}


class Scores(BaseModel):
    """A model's task metrics on one split: which split, on how many examples, the values (accuracy, f1, ...)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # "dev": the whole dev split; "dev_sample": a spread sample of it (`eval_samples`/`parity_samples` set).
    split: Literal["dev", "dev_sample"]
    examples: int = Field(ge=0)
    values: dict[str, float]
    # The whole split's size, for a sample (recorded as `of`; absent in manifests written before it was).
    of: int | None = None

    @classmethod
    def measured(cls, values: Mapping[str, float], examples: int, split_size: int) -> Scores:
        """Scores measured on `examples` of a dev split of `split_size`: the whole split or a sample of it."""
        sample = examples != split_size
        return cls(split="dev_sample" if sample else "dev", examples=examples, of=split_size if sample else None,
                   values={k: round(float(v), DECIMALS) for k, v in values.items()})

    def record(self) -> dict[str, float | int]:
        """The manifest's form: the values and the example count (and a sample's split size), under the split's key
        of `Metrics`."""
        return {**self.values, "examples": self.examples, **({"of": self.of} if self.of is not None else {})}

    def describe(self) -> str:
        """E.g. `dev (872 examples): accuracy 0.9060, f1 0.9081`, or for a sample `dev sample (200 of 872 examples,
        not the whole split): accuracy 0.8828`."""
        if self.split == "dev_sample":
            size = f"{self.examples} of {self.of}" if self.of is not None else str(self.examples)
            where = f"dev sample ({size} examples, not the whole split)"
        else:
            where = f"dev ({self.examples} examples)"
        return f"{where}: " + ", ".join(f"{k} {v:.4f}" for k, v in self.values.items())

    @classmethod
    def from_record(cls, split: Literal["dev", "dev_sample"], record: Mapping[str, Any]) -> Scores:
        values = {k: float(v) for k, v in record.items() if k not in ("examples", "of")}
        of = record.get("of")
        return cls(split=split, examples=int(record.get("examples", 0)), values=values, of=int(of) if of is not None else None)


class Metrics(_Open):
    """What a stage measured about the bundle it wrote. Exactly one of `dev` / `dev_sample` holds its own scores."""

    dev: dict[str, float | int] | None = None
    dev_sample: dict[str, float | int] | None = None
    # A trained model's scores on the split its checkpoints were chosen on (never dev), and on the data's own labelled
    # test split when the recipe names one; `splits` says, per split key, how many examples, where they came from and
    # whether checkpoints were chosen on it (dev and test: never).
    selection: dict[str, float | int] | None = None
    test: dict[str, float | int] | None = None
    splits: dict[str, dict[str, Any]] | None = None
    # The float parent's full-dev scores (a derived bundle); the parity of its outputs against the parent's.
    parent_dev: dict[str, float | int] | None = None
    parity: dict[str, Any] | None = None
    footprint: dict[str, Any] | None = None
    parent_footprint: dict[str, Any] | None = None

    @classmethod
    def of(cls, scores: Scores, parent: Scores | None = None, **extra: Any) -> Metrics:
        """Metrics holding `scores` under their split's key, the parent's full-dev scores, and stage extras."""
        parent_dev = {"parent_dev": parent.record()} if parent is not None else {}
        return cls.model_validate({scores.split: scores.record(), **parent_dev, **extra})

    def scores(self) -> Scores | None:
        """This model's own scores: on the whole dev split, or on a sample of it."""
        if self.dev is not None:
            return Scores.from_record("dev", self.dev)
        if self.dev_sample is not None:
            return Scores.from_record("dev_sample", self.dev_sample)
        return None

    def full_dev(self) -> Scores | None:
        """Full-dev scores of this model, or of the float model it was derived from when it was measured on a sample
        (an export checked on a sample carries its torch parent's)."""
        if self.dev is not None:
            return Scores.from_record("dev", self.dev)
        return Scores.from_record("dev", self.parent_dev) if self.parent_dev is not None else None

    def extra(self, name: str, default: Any = None) -> Any:
        """A stage-specific extra (`stages`, `agreement_with_teacher`, ...), or `default`."""
        return (self.model_extra or {}).get(name, default)


class Architecture(_Open):
    """Facts about the model: its family and shape (layers, hidden, heads, ...), and what derived stages did to it."""

    family: str
    # A reference built with random weights for its shape only (its accuracy means nothing).
    architecture_only: bool = False
    parameters: int | None = None
    vocab: int | None = None
    # The details each derived stage recorded (its method and what it measured or chose).
    export: dict[str, Any] | None = None
    quantize: dict[str, Any] | None = None
    prune: dict[str, Any] | None = None
    # Neural Compressor's tuning (a torch bundle holding rounded weights; its export may still be quantized).
    inc: dict[str, Any] | None = None

    def derived(self, **facts: Any) -> Architecture:
        """These facts with a derived stage's added (e.g. `quantize={...}`, `parameters=...`)."""
        return type(self).model_validate({**self.model_dump(), **facts})

    def shape(self, name: str) -> Any:
        """A shape fact (`layers`, `hidden`, `heads`, `intermediate`, ...) or None."""
        return (self.model_extra or {}).get(name)

    def facts(self) -> dict[str, Any]:
        """Every fact that is set, in the manifest's JSON form (for cards and `inspect`)."""
        return self.model_dump(mode="json")
