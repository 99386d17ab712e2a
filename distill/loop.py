"""The training loop every stage shares (teacher fine-tune, TinyBERT and BiLSTM distillation).

A short explicit loop: AdamW with linear warm-up and decay, gradient clipping, evaluation every N steps on the
selection split (never on dev, which is reported), the best weights kept, early stopping, atomic periodic checkpoints
that resume exactly, seeds, a progress bar, CUDA/MPS/CPU, mixed precision on CUDA, and data parallelism over processes
through `accelerate` (launch with `accelerate launch` or `torchrun`; each process takes its share of every step's
batches and gradients are averaged).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from edgekd import progress
from edgekd.config import TrainConfig
from edgekd.batching import Encoded, eval_batches, length_grouped_batches, pad_batch
from edgekd.errors import ConfigError, UnsupportedError

logger = logging.getLogger(__name__)
# False: start over; True: continue from the checkpoint (strict); "auto": continue when the checkpoint matches.
Resume = bool | Literal["auto"]

Batch = dict[str, torch.Tensor]


class TaskLoss(torch.nn.Module):
    """A Hugging Face model trained on its own task loss (the teacher fine-tune), in the Trainer's module shape."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        inputs = {k: v for k, v in batch.items() if k != "index"}
        return self.model(**inputs).loss, {}


def pick_device(choice: str) -> torch.device:
    """`auto` takes CUDA, then MPS, then CPU; asking for an absent accelerator is an error, not a silent CPU run."""
    available = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available(), "cpu": True}
    if choice == "auto":
        return torch.device(next(name for name in ("cuda", "mps", "cpu") if available[name]))
    if not available[choice]:
        raise UnsupportedError(f"device {choice!r} was asked for but is not available here; use device=auto or cpu")
    return torch.device(choice)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def adamw_with_warmup(
    model: torch.nn.Module, lr: float, weight_decay: float, warmup_steps: int, total_steps: int
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW without decay on biases and LayerNorm weights, and a linear warm-up then linear decay to zero."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(param)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=lr
    )

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def to_device(batch: dict[str, np.ndarray], device: torch.device) -> Batch:
    return {key: torch.from_numpy(np.ascontiguousarray(value)).to(device) for key, value in batch.items()}


def cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of a module's weights; tensors that share memory (tied weights) become independent."""
    return {key: tensor.detach().to("cpu", copy=True).contiguous() for key, tensor in module.state_dict().items()}


@torch.no_grad()
def batched_logits(
    forward: Callable[[Batch], torch.Tensor],
    make_batch: Callable[[np.ndarray], dict[str, np.ndarray]],
    lengths: np.ndarray,
    batch_size: int,
    device: torch.device,
) -> np.ndarray:
    """Logits for every example in the original order, (examples, labels); batches sorted by length (little padding)."""
    outputs: np.ndarray | None = None
    for indices in eval_batches(lengths, batch_size):
        logits = forward(to_device(make_batch(indices), device)).float().cpu().numpy()  # (batch, labels)
        if outputs is None:
            outputs = np.zeros((len(lengths), logits.shape[-1]), dtype=np.float32)
        outputs[indices] = logits
    assert outputs is not None, "encoded splits are never empty"
    return outputs


@torch.no_grad()
def cpu_logits(module: torch.nn.Module, forward: Callable[[Batch], torch.Tensor], batch: dict[str, np.ndarray]) -> np.ndarray:
    """The logits of `module` (moved to CPU for good: call it on a finished model) on one batch, in float32.

    A bundle's golden logits come from here, not from the evaluation on the training device: every later stage and
    device checks itself against them on CPU, and a CUDA run's own logits differ (cuDNN's LSTM uses TF32 by default:
    3e-4 on a BiLSTM trained on an H100).
    """
    module.to("cpu").float().eval()
    return forward(to_device(batch, torch.device("cpu"))).float().numpy()


def predict_logits(model: torch.nn.Module, encoded: Encoded, batch_size: int, device: torch.device) -> np.ndarray:
    """Logits of a Hugging Face sequence classifier for every example of a split encoded for it (its inputs only)."""
    model.eval()
    return batched_logits(
        lambda batch: model(**{k: v for k, v in batch.items() if k != "labels"}).logits,
        lambda indices: pad_batch(encoded, indices), encoded.lengths, batch_size, device,
    )


@dataclass
class TrainResult:
    steps: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    stopped_early: bool = False
    processes: int = 1


class Checkpoint:
    """A resumable training state in one directory: weights (safetensors), optimizer/scheduler/RNG, and a JSON header.

    The fingerprint guards resumption: a checkpoint made under another config or data is refused, not mixed in.
    Saves are atomic (written beside, then renamed), so a kill during a save keeps the previous checkpoint.
    """

    def __init__(self, directory: Path, fingerprint: str) -> None:
        self.directory = directory
        self.fingerprint = fingerprint

    def exists(self) -> bool:
        return (self.directory / "state.json").is_file()

    def save(self, model: torch.nn.Module, optimizer: Any, scheduler: Any, step: int, extra: dict[str, Any],
             best_state: dict[str, torch.Tensor] | None = None) -> None:
        tmp = self.directory.parent / f".{self.directory.name}.tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        save_file(cpu_state(model), tmp / "model.safetensors")
        if best_state is not None:
            save_file(best_state, tmp / "best.safetensors")
        torch.save(
            {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            tmp / "trainer.pt",
        )
        (tmp / "state.json").write_text(json.dumps({"fingerprint": self.fingerprint, "step": step, **extra}))
        old = None
        if self.directory.exists():
            old = self.directory.parent / f".{self.directory.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(self.directory, old)
        os.rename(tmp, self.directory)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        logger.info("checkpoint at step %d saved to %s", step, self.directory)

    def load(self, model: torch.nn.Module, optimizer: Any, scheduler: Any) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None]:
        """Restore the saved state into the given objects; returns the JSON header and the best weights, if any."""
        header = json.loads((self.directory / "state.json").read_text())
        if header.get("fingerprint") != self.fingerprint:
            raise ConfigError(
                f"{self.directory}: this checkpoint was made with a different config or data; "
                "drop --resume to start over, or delete the checkpoint directory"
            )
        model.load_state_dict(load_file(self.directory / "model.safetensors"))
        # weights_only: a checkpoint is data, never code.
        trainer = torch.load(self.directory / "trainer.pt", weights_only=True, map_location="cpu")
        optimizer.load_state_dict(trainer["optimizer"])
        scheduler.load_state_dict(trainer["scheduler"])
        torch.set_rng_state(trainer["torch_rng"])
        if trainer["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(trainer["cuda_rng"])
        best_path = self.directory / "best.safetensors"
        logger.info("resumed from %s at step %d", self.directory, header["step"])
        return header, (load_file(best_path) if best_path.is_file() else None)

    def matches(self) -> bool:
        """Whether a checkpoint exists and was made under this fingerprint (the same config and data)."""
        try:
            return json.loads((self.directory / "state.json").read_text()).get("fingerprint") == self.fingerprint
        except (OSError, ValueError):
            return False

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


class Trainer:
    """Train `model`, a module whose `forward(batch)` returns `(loss, {name: float})`: everything trainable (a student
    and its projections) sits inside it, so data parallelism wraps one module and gradients are averaged.

    `make_batch(indices)` returns a numpy batch for the example indices; `evaluate()` returns selection-split metrics,
    of which `metric` is maximised for best-weights selection and early stopping.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        model: torch.nn.Module,
        make_batch: Callable[[np.ndarray], dict[str, np.ndarray]],
        lengths: np.ndarray,
        *,
        seed: int,
        checkpoint: Checkpoint,
        evaluate: Callable[[], dict[str, float]] | None = None,
        metric: str = "accuracy",
        desc: str = "train",
    ) -> None:
        self.cfg, self.model, self.make_batch = cfg, model, make_batch
        self.lengths, self.seed, self.checkpoint = lengths, seed, checkpoint
        self.evaluate, self.metric, self.desc = evaluate, metric, desc
        self.accelerator = _accelerator(cfg)
        self.device = self.accelerator.device

    @property
    def world(self) -> tuple[int, int]:
        return self.accelerator.process_index, self.accelerator.num_processes

    def steps_per_epoch(self) -> int:
        batches = math.ceil(len(self.lengths) / self.cfg.batch_size)
        return max(1, batches // self.world[1])

    def fit(self, resume: Resume = False) -> TrainResult:
        """Train; `resume=True` continues from the checkpoint (refusing one of another config), `"auto"` continues
        from it when it matches and otherwise starts over (what `edgekd run` does after an interruption)."""
        cfg = self.cfg
        per_epoch = self.steps_per_epoch()
        total = min(cfg.max_steps or per_epoch * cfg.epochs, per_epoch * cfg.epochs)
        optimizer, scheduler = adamw_with_warmup(self.model, cfg.learning_rate, cfg.weight_decay, int(cfg.warmup_ratio * total), total)
        step, history, best, best_state, bad_evals = 0, [], None, None, 0
        if resume == "auto" and self.checkpoint.exists() and not self.checkpoint.matches():
            logger.info("%s was made under another config; starting over", self.checkpoint.directory)
            self.checkpoint.remove()
        if resume and self.checkpoint.exists():
            header, best_state = self.checkpoint.load(self.model, optimizer, scheduler)
            step, history, best, bad_evals = header["step"], header["history"], header["best"], header["bad_evals"]
        elif resume is True:
            logger.warning("--resume given but no checkpoint at %s; starting from the beginning", self.checkpoint.directory)
        # The scheduler stays ours: accelerate's wrapper would step it once per process.
        model, optimizer = self.accelerator.prepare(self.model, optimizer)
        rank, world = self.world
        main = self.accelerator.is_main_process
        eval_every = cfg.eval_every or per_epoch
        started, stopped_early = time.perf_counter(), False
        bar = progress.bar(total, self.desc, unit="step", initial=step, disable=not main)
        while step < total and not stopped_early:
            epoch, offset = divmod(step, per_epoch)
            # Seeded by epoch: a resumed run replays the same batch order and skips what was done.
            batches = length_grouped_batches(self.lengths, cfg.batch_size, self.seed + epoch, cfg.group_by_length)
            mine = batches[rank::world][:per_epoch]
            for indices in mine[offset:]:
                model.train()
                batch = to_device(self.make_batch(indices), self.device)
                with self.accelerator.autocast():
                    loss, parts = model(batch)
                # Checked before the update: a non-finite loss would make every weight NaN, and a bundle of NaN
                # weights would be written and blamed on a later stage.
                self._check_finite(loss, step + 1, scheduler.get_last_lr()[0])
                self.accelerator.backward(loss)
                self.accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                row = {"step": step, "epoch": round(step / per_epoch, 4), "lr": scheduler.get_last_lr()[0],
                       "loss": round(loss.item(), 6), **{k: round(v, 6) for k, v in parts.items()}}
                history.append(row)
                bar.update(1)
                if step % eval_every == 0 or step == total:
                    result = self._evaluate(step)
                    if result is not None:
                        row.update({f"selection_{k}": v for k, v in result.items()})
                        if best is None or result[self.metric] > best[self.metric]:
                            best, bad_evals = {"step": step, "split": "selection", **result}, 0
                            if cfg.keep_best:
                                best_state = cpu_state(self.accelerator.unwrap_model(model))
                        else:
                            bad_evals += 1
                        stopped_early = cfg.early_stopping_patience is not None and bad_evals >= cfg.early_stopping_patience
                bar.set_postfix(loss=f"{np.mean([h['loss'] for h in history[-50:]]):.4f}",
                                **({self.metric: f"{best[self.metric]:.4f}"} if best else {}))
                if stopped_early:
                    logger.info("early stop at step %d: no improvement on the selection split in %d evaluations", step, bad_evals)
                    break
                if step % cfg.checkpoint_every == 0 and step < total and main:
                    extra = {"history": history, "best": best, "bad_evals": bad_evals}
                    self.checkpoint.save(self.accelerator.unwrap_model(model), optimizer, scheduler, step, extra, best_state)
                if step >= total:
                    break
        bar.close()
        self.accelerator.wait_for_everyone()
        if world > 1:
            self._check_replicas_agree(model)
        self._check_finite_weights(model, step)
        if cfg.keep_best and best_state is not None:
            self.accelerator.unwrap_model(model).load_state_dict(best_state)
        seconds = time.perf_counter() - started
        logger.info("%s: %d steps in %.0f s; best %s", self.desc, step, seconds, best)
        return TrainResult(
            steps=step, seconds=round(seconds, 1), history=history, best=best, stopped_early=stopped_early, processes=world
        )

    def _check_finite(self, loss: torch.Tensor, step: int, lr: float) -> None:
        """Stop the stage at the first step whose loss is NaN or infinite (on any process), before the update."""
        finite = torch.isfinite(loss.detach()).all().float().reshape(1)
        if self.world[1] > 1:
            # Every process stops together: one that raised alone would leave the others waiting in all-reduce.
            finite = self.accelerator.reduce(finite, reduction="sum") / self.world[1]
        if finite.item() < 1.0:
            raise ConfigError(
                f"{self.desc}: the loss at step {step} is {loss.detach().float().cpu().flatten()[0].item()} (learning "
                f"rate {lr:.3g}): training diverged and the stage stopped; nothing was written. Lower the learning_rate "
                "of this stage's train section (or raise its warmup_ratio, lower max_grad_norm, or use mixed_precision "
                "bf16 instead of fp16); a regression task needs finite labels"
            )

    def _check_finite_weights(self, model: torch.nn.Module, step: int) -> None:
        """A last update can make weights NaN or infinite after the last loss was computed: refuse to hand them on."""
        bad = [name for name, param in self.accelerator.unwrap_model(model).named_parameters() if not torch.isfinite(param).all()]
        if bad:
            raise ConfigError(
                f"{self.desc}: after step {step}, {len(bad)} weight tensor(s) hold NaN or infinite values ({', '.join(bad[:3])}"
                f"{', ...' if len(bad) > 3 else ''}): training diverged; nothing was written. Lower the learning_rate of "
                "this stage's train section (or raise its warmup_ratio, lower max_grad_norm)"
            )

    def _check_replicas_agree(self, model: torch.nn.Module) -> None:
        """Data parallelism keeps one model: every process must end with the same weights."""
        checksum = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1).to(self.device)
        gathered = self.accelerator.gather(checksum).cpu()
        if not torch.allclose(gathered, gathered[0].expand_as(gathered), rtol=1e-9, atol=1e-9):
            raise RuntimeError(f"data-parallel replicas diverged: weight checksums {gathered.tolist()}")
        logger.info("%d processes ended with identical weights (checksum %.6f)", len(gathered), float(gathered[0]))

    def _evaluate(self, step: int) -> dict[str, float] | None:
        if self.evaluate is None:
            return None
        result = self.evaluate()
        logger.info("%s step %d: selection split %s", self.desc, step, {k: round(v, 4) for k, v in result.items()})
        return result


def _accelerator(cfg: TrainConfig) -> Any:
    """An `accelerate.Accelerator` on the configured device; it sees the launcher's processes (DDP) when there are."""
    from accelerate import Accelerator

    device = pick_device(cfg.device)
    precision = cfg.mixed_precision if device.type == "cuda" else "no"
    return Accelerator(cpu=device.type == "cpu", mixed_precision=precision)


def process_state(device: torch.device) -> Any:
    """The launcher's processes (one unless run under `accelerate launch` or `torchrun`), as accelerate sees them.

    Work that writes shared files (caches, bundles) runs on the main process; the others wait at a barrier.
    """
    from accelerate import PartialState

    return PartialState(cpu=device.type == "cpu")
