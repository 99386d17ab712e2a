"""Distill stage: a teacher bundle and a task in, a student bundle out.

Stages run in the order the recipe lists them (TinyBERT: optional general distillation on unlabeled text, then task
distillation step 1 on the intermediate layers and step 2 on the logits; BiLSTM: the logits only). Teacher logits come
from the memory-mapped cache; the teacher runs only where hidden states and attention scores are matched.
A finished stage's weights are kept beside the output, so `--resume` skips it and continues the next one exactly.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from edgekd import metrics
from edgekd.bundle import GOLDEN_EXAMPLES, HF_CONFIG, Bundle, produced_by, write_golden
from edgekd.config import Recipe, StageConfig, StudentConfig, to_dict
from edgekd.data import Split, TaskData, load_task_data
from edgekd.batching import spread_by_length
from edgekd.errors import ConfigError, DataError
from edgekd.hashing import sha256_json
from edgekd.hf_families import attention_loss_problem
from edgekd.modeling import check_hf_config
from edgekd.writer import BundleWriter, check_output, write_text_atomic

from .curves import write_curves
from .features import hf_features
from .logits_cache import cached_teacher_logits, teacher_logits
from .loop import Batch, Checkpoint, Resume, Trainer, batched_logits, cpu_logits, cpu_state, pick_device, process_state, seed_everything
from .losses import IntermediateLoss, PredictionLoss
from .students import Student, registry

logger = logging.getLogger(__name__)


class IntermediateStep(nn.Module):
    """Student + projections: the loss of TinyBERT's transformer-layer distillation against a frozen teacher."""

    def __init__(self, student: Student, teacher: nn.Module, loss: IntermediateLoss) -> None:
        super().__init__()
        self.student_module, self.loss = student.module, loss
        self._student = student
        self._teacher = (teacher,)  # a tuple keeps the frozen teacher out of the trained (and DDP-wrapped) modules

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        with torch.no_grad():
            teacher = hf_features(self._teacher[0], batch, intermediate=True)
        parts = self.loss(self._student.features(batch, intermediate=True), teacher)
        return parts["loss"], {k: v.item() for k, v in parts.items() if k != "loss"}


class PredictionStep(nn.Module):
    """Student: the prediction-layer loss against cached teacher logits, looked up by example index."""

    def __init__(self, student: Student, loss: PredictionLoss, teacher_logits: np.ndarray) -> None:
        super().__init__()
        self.student_module, self.loss = student.module, loss
        self._student = student
        self._teacher_logits = teacher_logits

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        index = batch["index"].cpu().numpy()
        teacher = torch.from_numpy(np.asarray(self._teacher_logits[index])).to(batch["labels"].device)
        parts = self.loss(self._student.features(batch), teacher, batch["labels"])
        return parts["loss"], {k: v.item() for k, v in parts.items() if k != "loss"}


@dataclass
class Context:
    recipe: Recipe
    spec: StudentConfig
    teacher: Bundle
    data: TaskData
    student: Student
    train: Any
    selection: Any
    dev: Any
    teacher_train: np.ndarray
    teacher_selection: np.ndarray
    teacher_dev: np.ndarray
    device: torch.device
    work: Path  # per-stage checkpoints and finished-stage weights
    _teacher_model: nn.Module | None = None

    def teacher_model(self) -> nn.Module:
        if self._teacher_model is None:
            from transformers import AutoModelForSequenceClassification

            self._teacher_model = AutoModelForSequenceClassification.from_pretrained(self.teacher.path, attn_implementation="eager")
            self._teacher_model.to(self.device).eval().requires_grad_(False)
        return self._teacher_model


def distill(recipe: Recipe, name: str, out: Path | None = None, *, resume: Resume = False, force: bool = False) -> Bundle:
    """Distil the student `name` of a recipe; return the written student bundle."""
    if name not in recipe.students:
        known = ", ".join(recipe.students) or "none (add a `students:` section)"
        raise ConfigError(f"recipe {recipe.name!r} has no student {name!r}; its students: {known}")
    spec = recipe.students[name]
    out = Path(out or recipe.out / name)
    check_output(out, overwrite=force, sources=(spec.teacher or recipe.out / "teacher",))  # before any training
    teacher = Bundle.open(spec.teacher or recipe.out / "teacher")
    if teacher.manifest.format == "torch" and HF_CONFIG in teacher.manifest.files:
        check_hf_config(teacher.path)  # before the teacher or a student sized from it is allocated
    data = load_task_data(recipe.data)
    if list(teacher.manifest.task.labels) != list(data.task.labels) or teacher.manifest.task.kind != data.task.kind:
        raise ConfigError(
            f"the teacher at {teacher.path} was trained on task {teacher.manifest.task.name!r} ({teacher.manifest.task.kind}, "
            f"labels {teacher.manifest.task.labels}) but the recipe's task is {data.task.name!r} ({data.task.kind}, labels "
            f"{list(data.task.labels)}); distil from a teacher of the same task"
        )
    seed_everything(recipe.seed)
    student = registry()[spec.student.type](spec.student, teacher, data, recipe.seed)
    augmentation = None
    if spec.augment is not None:  # the vocabulary above came from the original text; training sees both
        train, augmentation = augmented(recipe, spec.augment, data)
        data = dataclasses.replace(data, train=train)
    device = pick_device(spec.stages[0].train.device)
    state = process_state(device)
    device = state.device
    batch_size = spec.stages[0].train.eval_batch_size
    work = out.parent / f".{out.name}.work"
    with state.main_process_first():  # the main process fills the logits cache; the others then read it
        labeling, cached = time.perf_counter(), cached_teacher_logits(teacher, data.train, recipe.cache) is not None
        train_logits = teacher_logits(teacher, data.train, recipe.cache, batch_size, device)
        if augmentation is not None:  # tokenizing included; a resumed fill's rate covers only its own part
            seconds = time.perf_counter() - labeling
            augmentation["teacher_labeling"] = {"examples": len(data.train), "cached": cached, "seconds": round(seconds, 2),
                                                "examples_per_second": None if cached else round(len(data.train) / seconds, 1)}
        selection_logits = np.asarray(teacher_logits(teacher, data.selection, recipe.cache, batch_size, device))
        dev_logits = np.asarray(teacher_logits(teacher, data.dev, recipe.cache, batch_size, device))
        if state.is_main_process and not resume and work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True, exist_ok=True)
    ctx = Context(
        recipe=recipe, spec=spec, teacher=teacher, data=data, student=student,
        train=student.encode(data.train), selection=student.encode(data.selection), dev=student.encode(data.dev),
        teacher_train=train_logits, teacher_selection=selection_logits, teacher_dev=dev_logits, device=device, work=work,
    )
    student.module.to(device)
    results = [run_stage(ctx, i, stage, resume, state.is_main_process) for i, stage in enumerate(spec.stages)]
    if not state.is_main_process:
        state.wait_for_everyone()
        return Bundle.open(out)
    bundle = write_student(out, ctx, results, force, augmentation)
    shutil.rmtree(ctx.work, ignore_errors=True)
    state.wait_for_everyone()
    return bundle


def run_stage(ctx: Context, number: int, stage: StageConfig, resume: Resume, main: bool = True) -> dict[str, Any]:
    """Run one stage (or, on resume, load its finished weights); return its summary."""
    # What this stage's result depends on: the data, the teacher, the student and this and the earlier stages
    # (a change to a later stage keeps this one's finished result).
    fingerprint = sha256_json({
        "data": ctx.recipe.data.model_dump(mode="json"), "seed": ctx.recipe.seed, "teacher": ctx.teacher.sha256,
        "train": ctx.data.train.fingerprint, "student": ctx.spec.student.model_dump(mode="json"),
        "stages": [s.model_dump(mode="json") for s in ctx.spec.stages[: number + 1]],
    })
    done, weights = ctx.work / f"stage{number}.json", ctx.work / f"stage{number}.safetensors"
    finished = json.loads(done.read_text()) if resume and done.is_file() else None
    if finished is not None and finished["fingerprint"] == fingerprint:
        ctx.student.module.load_state_dict(load_file(weights))
        logger.info("stage %d (%s) finished before; its weights are loaded", number, stage.kind)
        return finished["summary"]
    if stage.kind != "prediction" and not ctx.student.intermediate:
        raise ConfigError(f"a {ctx.spec.student.type} student has no transformer layers for a {stage.kind} stage")
    train = ctx.train
    if stage.kind == "general":
        train = ctx.student.encode(general_corpus(stage.corpus or "", ctx.data))
    if stage.kind == "prediction":
        problem = ctx.data.task.problem
        loss = PredictionLoss(stage.loss or ctx.student.default_loss, stage.alpha, stage.temperature, problem == "regression")
        step: nn.Module = PredictionStep(ctx.student, loss, ctx.teacher_train)
        evaluate = lambda: evaluate_student(ctx)  # noqa: E731 - a closure over the context
    else:
        teacher = ctx.teacher_model()
        losses = stage.layer_losses()
        # The same refusal `edgekd validate` gives, for a teacher bundle it could not read (a student's own `teacher:`).
        problem = attention_loss_problem([teacher.config.model_type, ctx.student.module.config.model_type], losses,
                                         f"stages[{number}]")
        if problem:
            raise ConfigError(problem)
        heads = (ctx.student.module.config.num_attention_heads, teacher.config.num_attention_heads)
        if "attention" in losses and heads[0] != heads[1]:
            raise ConfigError(
                f"attention-score distillation matches heads one to one: the student has {heads[0]} heads, the teacher "
                f"{heads[1]}; set student.heads={heads[1]} (hidden must stay divisible by it)"
            )
        intermediate = IntermediateLoss(ctx.student.module.config.hidden_size, teacher.config.hidden_size, ctx.student.layer_map, losses)
        step = IntermediateStep(ctx.student, teacher, intermediate.to(ctx.device))
        evaluate = None
    trainer = Trainer(
        stage.train, step, lambda indices: ctx.student.make_batch(train, indices), train.lengths,
        seed=ctx.recipe.seed + number, checkpoint=Checkpoint(ctx.work / f"stage{number}.checkpoint", fingerprint),
        evaluate=evaluate, metric=ctx.data.task.metrics[0], desc=f"stage {number + 1}/{len(ctx.spec.stages)} {stage.kind}",
    )
    result = trainer.fit(resume)
    summary = {
        "kind": stage.kind, "steps": result.steps, "seconds": result.seconds, "best": result.best,
        "stopped_early": result.stopped_early, "examples": len(train), "processes": result.processes,
        "history": result.history,
        **({"loss": stage.loss or ctx.student.default_loss, "alpha": stage.alpha, "temperature": stage.temperature}
           if stage.kind == "prediction" else {"layer_map": ctx.student.layer_map, "losses": list(stage.layer_losses())}),
    }
    if main:
        save_file(cpu_state(ctx.student.module), weights)
        write_text_atomic(done, json.dumps({"fingerprint": fingerprint, "summary": summary}))
    return summary


def general_corpus(corpus: str, data: TaskData) -> Split:
    """Unlabeled text for general distillation: a text file (one text per line), `train`, or `tweets`."""
    if corpus == "train":
        texts = data.train.texts
    elif corpus == "tweets":
        from edgekd.config import DataConfig

        texts = load_task_data(DataConfig(task="tweets")).train.texts
    else:
        path = Path(corpus)
        if not path.is_file():
            raise DataError(f"general corpus {corpus!r}: not `train`, `tweets`, or an existing text file")
        try:
            texts = [(line.strip(),) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not UTF-8 text ({exc}); one text per line, UTF-8") from None
        if data.task.kind == "pair":
            texts = [(t[0], "") for t in texts]
    if not texts:
        raise DataError(f"general corpus {corpus!r} holds no text")
    return Split(name="general", texts=list(texts), labels=np.full(len(texts), -1, dtype=np.int64))


def student_logits(ctx: Context, encoded: Any) -> np.ndarray:
    ctx.student.module.eval()
    return batched_logits(
        lambda batch: ctx.student.features(batch).logits,
        lambda indices: ctx.student.make_batch(encoded, indices), encoded.lengths, 256, ctx.device,
    )


def evaluate_student(ctx: Context) -> dict[str, float]:
    """The student's metrics on the selection split (what keep_best and early stopping see; never dev)."""
    return _scores(ctx, student_logits(ctx, ctx.selection), ctx.selection.labels, ctx.teacher_selection)


def _scores(ctx: Context, logits: np.ndarray, labels: np.ndarray, teacher: np.ndarray | None) -> dict[str, float]:
    task = ctx.data.task
    result = metrics.compute(task.metrics, logits, labels, task.problem)
    if task.problem == "classification" and teacher is not None:
        result["agreement"] = float(np.mean(logits.argmax(-1) == teacher.argmax(-1)))
    return result


def augmented(recipe: Recipe, name: str, data: TaskData) -> tuple[Split, dict[str, Any]]:
    """The train split plus the augmentation `name` of the recipe (cached by hash), and facts of the run."""
    from .augment.data import augment

    train, facts = augment(data.train, recipe.augment[name], recipe.seed, recipe.cache, data.task.problem)
    return train, {"name": name, **facts}


def write_student(out: Path, ctx: Context, stages: list[dict[str, Any]], force: bool, augmentation: dict[str, Any] | None = None) -> Bundle:
    # Dev (and test) measured once, here, after the stages chose their weights on the selection split.
    dev_logits = student_logits(ctx, ctx.dev)
    task = ctx.data.task
    dev = metrics.compute(task.metrics, dev_logits, ctx.dev.labels, task.problem)
    teacher_dev = ctx.teacher.manifest.metrics.dev or {}
    primary = task.metrics[0]
    measured = {"selection": (_scores(ctx, student_logits(ctx, ctx.selection), ctx.selection.labels, None), len(ctx.selection))}
    if ctx.data.test is not None:
        test = ctx.student.encode(ctx.data.test)
        measured["test"] = (_scores(ctx, student_logits(ctx, test), test.labels, None), len(test))
    summary: dict[str, Any] = {
        "dev": {**{k: round(v, 6) for k, v in dev.items()}, "examples": len(ctx.dev)},
        **{name: {**{k: round(v, 6) for k, v in values.items()}, "examples": count} for name, (values, count) in measured.items()},
        "splits": ctx.data.split_facts(),
        "teacher_dev": teacher_dev,
        "parameters": ctx.student.parameters(),
        "teacher_parameters": ctx.teacher.manifest.architecture.parameters,
    }
    if task.problem == "classification":
        summary["agreement_with_teacher"] = round(float(np.mean(dev_logits.argmax(-1) == ctx.teacher_dev.argmax(-1))), 6)
    if primary in teacher_dev and teacher_dev[primary]:
        summary[f"{primary}_retained"] = round(dev[primary] / teacher_dev[primary], 6)
    summary["stages"] = [{k: v for k, v in s.items() if k != "history"} for s in stages]
    if augmentation is not None:
        summary["augmentation"] = augmentation
    picks = spread_by_length(ctx.dev.lengths, GOLDEN_EXAMPLES)
    batch = ctx.student.make_batch(ctx.dev, picks)
    golden_inputs = {k: v for k, v in batch.items() if k != "index"}
    with BundleWriter(out, overwrite=force) as writer:
        fields = ctx.student.save(writer.path)
        golden_logits = cpu_logits(ctx.student.module, lambda b: ctx.student.features(b).logits, batch)
        golden = write_golden(writer.path, golden_inputs, golden_logits, [ctx.data.dev.texts[i] for i in picks])
        for number, stage in enumerate(stages):
            title = f"{ctx.spec.student.type} stage {number + 1}: {stage['kind']}"
            write_curves(stage["history"], writer.path, title, stem=f"training_curves-stage{number + 1}")
        task_info = ctx.teacher.manifest.task.model_dump()
        return writer.commit(
            kind="student",
            format="torch",
            task=task_info,
            outputs=[{"name": "logits", "dtype": "float32", "shape": ["batch", task.num_labels]}],
            parent={"path": str(ctx.teacher.path), "sha256": ctx.teacher.sha256},
            produced_by=produced_by("distill", to_dict(ctx.recipe), ctx.recipe.seed),
            metrics=summary,
            golden=golden,
            **fields,
        )
