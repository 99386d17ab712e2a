"""Config models of what a run trains: the data, the teacher, the students, their stages and augmentation."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from edgekd.tasks import METRICS, PRESETS

from .base import _Config
from .render import _shown


class DataConfig(_Config):
    """Where a task's data comes from and what its columns mean."""

    # A preset (sst2, mrpc, tweets) fills in everything below; `custom` needs kind, text_columns, label_column, and
    # labels unless a data.dataset's ClassLabel names them.
    task: str = "custom"
    # A Hugging Face `datasets` id (e.g. `nyu-mll/glue` with dataset_config `sst2`; `glue/sst2` is accepted too), or a
    # local folder: a DatasetDict.save_to_disk folder, or parquet/csv/json files named by split.
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
    # Checkpoints are chosen (keep_best) and early stopping judged on the selection split, never on dev: dev is
    # evaluated once per model, at the end, and reported. Null carves it out of train (after max_train_examples) with
    # a fixed seed: selection_fraction of it (at most half), at most selection_max_examples; or name a split of the data
    # (`<name>.tsv` beside train.tsv, or a dataset split).
    selection_split: str | None = None
    selection_fraction: float = Field(default=0.05, gt=0, le=0.5)
    selection_max_examples: int = Field(default=2000, gt=0)
    # A labelled split of the data reported beside dev (e.g. `test`); never evaluated during training.
    test_split: str | None = None
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
            # A `datasets` source (data.dataset without data.path) may give the names as its label column's ClassLabel.
            if self.problem != "regression" and not self.labels and (self.dataset is None or self.path is not None):
                problems.append("data.labels is required for a custom classification task read from data.path (the label "
                                "names, in id order); a data.dataset whose label column is a ClassLabel gives them")
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
        problems += self._split_problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _split_problems(self) -> list[str]:
        """Selection and test splits that would overlap the splits they must stay apart from."""
        problems = []
        dev = self.dev_split or (PRESETS[self.task].dev_split if self.task in PRESETS else "validation")
        for key in ("selection_split", "test_split"):
            name = getattr(self, key)
            if name is not None and name == self.train_split:
                problems.append(f"data.{key} {_shown(name)} is the train split; name another split, or leave "
                                f"{'selection_split null to carve one out of train' if key == 'selection_split' else 'test_split null'}")
            if name is not None and name in (dev, self.dev_split):
                problems.append(f"data.{key} {_shown(name)} is the dev split, which is reported: "
                                + ("choosing checkpoints on it is what the selection split prevents" if key == "selection_split"
                                   else "a test split must be another split"))
        if self.selection_split is not None and self.selection_split == self.test_split:
            problems.append(f"data.selection_split and data.test_split are both {_shown(self.test_split)}; never select on "
                            "the split you report")
        return problems


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
    # Evaluate on the selection split (data.selection_*, never dev) every N optimizer steps; null: at each epoch's end.
    eval_every: int | None = Field(default=None, gt=0)
    # Keep the weights of the best selection-split evaluation (else the last weights).
    keep_best: bool = False
    # Stop when this many evaluations in a row did not improve the selection-split metric; null never stops early.
    early_stopping_patience: int | None = Field(default=None, gt=0)
    checkpoint_every: int = Field(default=500, gt=0)
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    # Mixed precision on CUDA (ignored on CPU, where it would be slower).
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"


class TeacherConfig(_Config):
    """Fine-tune an encoder on the task, or import an already fine-tuned classifier and only evaluate it."""

    # `minilm` / `mpnet`: the packaged all-MiniLM-L6-v2 / all-mpnet-base-v2 encoders (offline, edgekd/packaged.py);
    # otherwise a local HF directory or a hub id.
    model: str = "minilm"
    mode: Literal["finetune", "import"] = "finetune"
    trust_remote_code: bool = False
    max_length: int = Field(default=128, gt=1, le=4096)
    train: TrainConfig = TrainConfig()
    # Run the finished teacher over the train split and keep its logits (memory-mapped) for distillation.
    cache_logits: bool = True


class TinyBertConfig(_Config):
    """A transformer student (TinyBERT). Defaults are TinyBERT-4: 4 layers, hidden 312, 12 heads, FFN 1200."""

    type: Literal["tinybert"] = "tinybert"
    # `teacher`: the teacher's own family at the sizes below (a 4-layer RoBERTa for a RoBERTa teacher); `bert`: a BERT.
    # Either way the student reads the teacher's tokenizer, so its layers align with the teacher's token by token.
    family: Literal["teacher", "bert"] = "teacher"
    layers: int = Field(default=4, gt=0)
    hidden: int = Field(default=312, gt=0)
    heads: int = Field(default=12, gt=0)
    intermediate: int = Field(default=1200, gt=0)
    # random; `teacher` (copy the teacher's embeddings and the layers the layer map picks; widths must match, and
    # family: teacher); or a checkpoint directory of the student's family and the teacher's vocabulary (e.g. a
    # general-distilled TinyBERT for a BERT teacher).
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


# TinyBERT's transformer-layer losses, in the order the loss adds them.
LAYER_LOSSES = ("embedding", "attention", "hidden")


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
    # general and intermediate: which of TinyBERT's layer losses to take; null: all three. A teacher whose attention
    # scores cannot be taken (DeBERTa-v2, ModernBERT) is distilled with [embedding, hidden].
    losses: list[Literal["embedding", "attention", "hidden"]] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _settings_of_the_kind(self) -> StageConfig:
        if self.kind == "general" and not self.corpus:
            raise ValueError("a general stage needs corpus: a text file, `train`, or `tweets`")
        if self.kind != "general" and self.corpus:
            raise ValueError(f"corpus is only for general stages, not {self.kind}")
        if self.kind == "prediction" and self.losses is not None:
            raise ValueError("losses names layer losses (embedding, attention, hidden): it is for general and intermediate "
                             "stages; a prediction stage takes loss, alpha and temperature")
        if self.losses is not None and len(set(self.losses)) != len(self.losses):
            raise ValueError(f"losses {_shown(self.losses)} names a loss twice")
        return self

    def layer_losses(self) -> tuple[str, ...]:
        """The layer losses of a general or intermediate stage (all three unless `losses` names some)."""
        return tuple(self.losses) if self.losses is not None else LAYER_LOSSES


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
