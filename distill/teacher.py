"""Teacher stage: fine-tune an encoder on the task (or import a fine-tuned classifier), evaluate it, write a bundle.

The bundle loads with `transformers.AutoModelForSequenceClassification.from_pretrained(bundle_dir)`, its tokenizer
with `AutoTokenizer.from_pretrained(bundle_dir)` (the Hugging Face layout: both at the root). After writing, the teacher's logits on the train split go into the logits cache for distillation.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any

import torch

from edgekd import metrics
from edgekd.bundle import GOLDEN_EXAMPLES, Bundle, TokenizerInfo, produced_by, set_tokenizer_max_length, write_golden
from edgekd.config import Recipe, TeacherConfig, check_teacher_config, teacher_lineage, to_dict
from edgekd.data import TaskData, load_task_data
from edgekd.batching import Encoded, encode, pad_batch, spread_by_length
from edgekd.errors import ConfigError
from edgekd.hashing import sha256_json
from edgekd.hf_families import model_inputs
from edgekd.packaged import PACKAGED_TEACHERS, packaged_dir
from edgekd.tasks import Task, hf_label_config
from edgekd.writer import BundleWriter, check_output

from .curves import write_curves
from .features import hf_architecture
from .logits_cache import teacher_logits
from .loop import Checkpoint, Resume, TaskLoss, Trainer, cpu_logits, pick_device, predict_logits, seed_everything

logger = logging.getLogger(__name__)

def resolve_model_source(name: str) -> str:
    """A packaged teacher (`minilm`, `mpnet`: edgekd/packaged.py); a directory is used as is; anything else is a hub id."""
    if name in PACKAGED_TEACHERS:
        return str(packaged_dir(name))
    path = Path(name).expanduser()
    if path.exists() and not (path / "config.json").is_file():
        raise ConfigError(f"teacher.model {name!r}: the directory has no config.json; give a Hugging Face model directory")
    return str(path) if path.exists() else name


def teacher(recipe: Recipe, out: Path | None = None, *, resume: Resume = False, force: bool = False) -> Bundle:
    """Run the teacher stage of a recipe and return the written teacher bundle."""
    cfg = recipe.teacher
    out = Path(out or recipe.out / "teacher")
    check_output(out, overwrite=force)  # before the data and the model are loaded
    seed_everything(recipe.seed)
    data = load_task_data(recipe.data)
    source = resolve_model_source(cfg.model)
    # The family's inputs: segment ids only for a model that takes them (DistilBERT's forward has no such argument).
    segments = "token_type_ids" in model_inputs(_check_config(source, cfg))
    tokenizer = _load_tokenizer(source, cfg)
    device = pick_device(cfg.train.device)
    train = encode(tokenizer, data.train, cfg.max_length, token_type_ids=segments)
    selection = encode(tokenizer, data.selection, cfg.max_length, token_type_ids=segments)
    dev = encode(tokenizer, data.dev, cfg.max_length, token_type_ids=segments)
    if cfg.mode == "import":
        model = _load_finetuned(source, cfg, data.task)
        training: dict[str, Any] = {}
    else:
        model = _load_for_finetune(source, cfg, data.task)
        # Only what the teacher depends on: a change to the students or artifacts keeps an interrupted fine-tune resumable.
        fingerprint = sha256_json({"recipe": teacher_lineage(to_dict(recipe)), "train": data.train.fingerprint})
        checkpoint = Checkpoint(out.parent / f".{out.name}.checkpoint", fingerprint)
        training = finetune(model, train, selection, data.task, recipe, checkpoint, resume)
    model.to(device)
    # Dev (and test) evaluated once, here, after every choice was made on the selection split.
    scores = {"selection": selection, "dev": dev}
    if data.test is not None:
        scores["test"] = encode(tokenizer, data.test, cfg.max_length, token_type_ids=segments)
    measured = {name: evaluate_split(model, encoded, data.task, cfg.train.eval_batch_size, device) for name, encoded in scores.items()}
    logger.info("teacher metrics: %s", measured)
    bundle = _write_bundle(out, recipe, data, tokenizer, model, dev, measured, training, force)
    if cfg.mode == "finetune":
        checkpoint.remove()
    if cfg.cache_logits:
        teacher_logits(bundle, data.train, recipe.cache, cfg.train.eval_batch_size, device, model=model, encoded=train)
    return bundle


def _refused(cfg: TeacherConfig, what: str, exc: BaseException) -> ConfigError:
    """The error for a teacher source that does not load, saying how to fix the two refusals that protect the user:
    custom Python code in the source, and a pickled checkpoint that holds more than tensors."""
    chain, cause = [], exc
    while cause is not None and len(chain) < 10:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    if any(isinstance(c, pickle.UnpicklingError) for c in chain):
        reason = ("its PyTorch checkpoint is a pickle holding more than tensors, which could run code when loaded; edgekd "
                  "loads safetensors or plain-tensor checkpoints only (torch.load with weights_only=True)")
    elif "trust_remote_code" in str(exc):
        reason = ("it ships its own Python code, which edgekd does not run unless the recipe sets "
                  "teacher.trust_remote_code=true: set it only for a source you trust")
    else:
        reason = str(exc)
    return ConfigError(f"teacher.model {cfg.model!r}: could not load {what} ({reason})")


def _check_config(source: str, cfg: TeacherConfig) -> dict[str, Any]:
    """Read the teacher's config (local or fetched from the hub) and refuse a family edgekd does not take, impossible
    sizes and a teacher.max_length past its position embeddings, before a tensor is allocated; return the config."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise _refused(cfg, "its config", exc) from None
    check_teacher_config(cfg, config.to_dict())
    return config.to_dict()


def _load_tokenizer(source: str, cfg: TeacherConfig) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source, trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise _refused(cfg, "its tokenizer", exc) from None


def _load_for_finetune(source: str, cfg: TeacherConfig, task: Task) -> torch.nn.Module:
    from transformers import AutoModelForSequenceClassification

    try:
        # Eager attention: ONNX Runtime's transformer optimizer fuses attention only in graphs exported from it.
        return AutoModelForSequenceClassification.from_pretrained(
            source, trust_remote_code=cfg.trust_remote_code, attn_implementation="eager", **hf_label_config(task.labels, task.problem)
        )
    # transformers 4 wraps a refused pickle in an OSError; transformers 5 lets torch.load's UnpicklingError through.
    except (OSError, ValueError, pickle.UnpicklingError) as exc:
        raise _refused(cfg, "it", exc) from None


def _load_finetuned(source: str, cfg: TeacherConfig, task: Task) -> torch.nn.Module:
    from transformers import AutoConfig, AutoModelForSequenceClassification

    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise _refused(cfg, "its config", exc) from None
    heads = [a for a in (config.architectures or []) if a.endswith("ForSequenceClassification")]
    if not heads:
        raise ConfigError(
            f"teacher.model {cfg.model!r} is not a fine-tuned sequence classifier (architectures: "
            f"{config.architectures}); use teacher.mode=finetune to train a head on the task"
        )
    if config.num_labels != task.num_labels:
        raise ConfigError(
            f"teacher.model {cfg.model!r} has {config.num_labels} labels but task {task.name!r} has "
            f"{task.num_labels} ({', '.join(task.labels)}); pick the matching task or model"
        )
    try:
        model = AutoModelForSequenceClassification.from_pretrained(source, trust_remote_code=cfg.trust_remote_code, attn_implementation="eager")
    except (OSError, ValueError, pickle.UnpicklingError) as exc:  # transformers 5's refused pickle: as above
        raise _refused(cfg, "it", exc) from None
    theirs = [model.config.id2label[i] for i in range(config.num_labels)]
    if task.problem == "classification" and [s.lower() for s in theirs] != [s.lower() for s in task.labels]:
        logger.warning("the model's labels %s differ from the task's %s; ids are taken as equal", theirs, task.labels)
    model.config.update(hf_label_config(task.labels, task.problem))
    return model


def evaluate_split(model: torch.nn.Module, encoded: Encoded, task: Task, batch_size: int, device: torch.device) -> dict[str, float]:
    """The task's metrics of a Hugging Face classifier on one encoded split."""
    logits = predict_logits(model, encoded, batch_size, device)
    return metrics.compute(task.metrics, logits, encoded.labels, task.problem)


def finetune(
    model: torch.nn.Module, train: Encoded, selection: Encoded, task: Task, recipe: Recipe, checkpoint: Checkpoint,
    resume: Resume,
) -> dict[str, Any]:
    """Fine-tune with the shared Trainer (the model's own task loss), evaluating on the selection split; returns
    training facts and curves."""
    cfg = recipe.teacher.train

    def evaluate() -> dict[str, float]:
        return evaluate_split(model, selection, task, cfg.eval_batch_size, trainer.device)

    trainer = Trainer(
        cfg, TaskLoss(model), lambda indices: pad_batch(train, indices), train.lengths,
        seed=recipe.seed, checkpoint=checkpoint, evaluate=evaluate, metric=task.metrics[0], desc="teacher fine-tune",
    )
    model.to(trainer.device)
    result = trainer.fit(resume)
    losses = [row["loss"] for row in result.history]
    return {
        "steps": result.steps,
        "train_seconds": result.seconds,
        "best": result.best,
        "first_losses": losses[:5],
        "last_losses": losses[-5:],
        "history": result.history,
    }


def _write_bundle(
    out: Path,
    recipe: Recipe,
    data: TaskData,
    tokenizer: Any,
    model: torch.nn.Module,
    dev: Encoded,
    measured: dict[str, dict[str, float]],
    training: dict[str, Any],
    force: bool,
) -> Bundle:
    task, cfg = data.task, recipe.teacher
    with BundleWriter(out, overwrite=force) as writer:
        model.to("cpu").save_pretrained(writer.path, safe_serialization=True)
        # The tokenizer beside the model (the Hugging Face layout: `pipeline(model=bundle)` loads both), saying the
        # trained max length (transformers' `truncation=True` cuts there, not at the checkpoint's 512).
        tokenizer.save_pretrained(writer.path)
        set_tokenizer_max_length(writer.path, cfg.max_length)
        picks = spread_by_length(dev.lengths, GOLDEN_EXAMPLES)
        batch = pad_batch(dev, picks)
        inputs = model_inputs(model.config)
        logits = cpu_logits(model, lambda b: model(**{k: b[k] for k in inputs}).logits, batch)
        golden = write_golden(writer.path, batch, logits, [data.dev.texts[i] for i in picks])
        write_curves(training.get("history", []), writer.path, f"teacher fine-tune on {task.name}")
        lowercase = bool(getattr(tokenizer, "do_lower_case", False) or tokenizer.init_kwargs.get("do_lower_case"))
        pad_id = tokenizer.pad_token_id
        return writer.commit(
            kind="teacher",
            format="torch",
            task={
                "name": task.name,
                "kind": task.kind,
                "problem": task.problem,
                "labels": list(task.labels),
                "text_columns": list(task.text_columns),
            },
            architecture=hf_architecture(model),
            inputs=[{"name": n, "dtype": "int64", "shape": ["batch", "sequence"]} for n in inputs],
            outputs=[{"name": "logits", "dtype": "float32", "shape": ["batch", task.num_labels]}],
            # The file's own kind (WordPiece, byte-level BPE, Unigram) and pad id: the runtime encodes and pads by them.
            tokenizer={"type": TokenizerInfo.kind_of(writer.path), "max_length": cfg.max_length,
                       "lowercase": lowercase, "pad_id": None if pad_id is None else int(pad_id)},
            parent=None,
            produced_by=produced_by("teacher", to_dict(recipe), recipe.seed),
            metrics={
                **{name: {**{k: round(v, 6) for k, v in values.items()}, "examples": len(getattr(data, name))}
                   for name, values in measured.items()},
                # An imported classifier is only evaluated here: nothing was chosen on the selection split.
                "splits": data.split_facts(selected=cfg.mode == "finetune"),
                "train_examples": len(data.train),
                "data_source": data.source,
                "model_source": cfg.model,
                "mode": cfg.mode,
                **{k: v for k, v in training.items() if k != "history"},
            },
            golden=golden,
        )
