"""Pieces every training loop shares: device choice, AdamW with warm-up, checkpoints that resume, batched inference."""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from edgekd.data import Encoded, eval_batches, pad_batch
from edgekd.errors import ConfigError, UnsupportedError

logger = logging.getLogger(__name__)


def pick_device(choice: str) -> torch.device:
    """`auto` takes CUDA when present; asking for CUDA without it is an error, not a silent CPU run."""
    if choice == "cuda" and not torch.cuda.is_available():
        raise UnsupportedError("device 'cuda' was asked for but no CUDA GPU is visible; use device=auto or cpu")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
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


def to_device(batch: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    return {key: torch.from_numpy(value).to(device) for key, value in batch.items()}


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module, encoded: Encoded, batch_size: int, device: torch.device, progress: Any = None
) -> np.ndarray:
    """Logits of a sequence classifier for every example, in the original order; (examples, num_labels)."""
    model.eval()
    outputs: np.ndarray | None = None
    for indices in eval_batches(encoded.lengths, batch_size):
        batch = to_device(pad_batch(encoded, indices), device)
        batch.pop("labels")
        logits = model(**batch).logits.float().cpu().numpy()  # (batch, num_labels)
        if outputs is None:
            outputs = np.zeros((len(encoded), logits.shape[-1]), dtype=np.float32)
        outputs[indices] = logits
        if progress is not None:
            progress.update(len(indices))
    assert outputs is not None, "encoded splits are never empty"
    return outputs


class Checkpoint:
    """A resumable training state in one directory: weights (safetensors), optimizer/scheduler/RNG, and a JSON header.

    The config fingerprint guards resumption: a checkpoint made under another config is refused, not mixed in.
    Saves are atomic (written beside, then renamed), so a kill during a save keeps the previous checkpoint.
    """

    def __init__(self, directory: Path, fingerprint: str) -> None:
        self.directory = directory
        self.fingerprint = fingerprint

    def exists(self) -> bool:
        return (self.directory / "state.json").is_file()

    def save(self, model: torch.nn.Module, optimizer: Any, scheduler: Any, step: int, extra: dict[str, Any]) -> None:
        tmp = self.directory.parent / f".{self.directory.name}.tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(_untie(state), tmp / "model.safetensors")
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

    def load(self, model: torch.nn.Module, optimizer: Any, scheduler: Any) -> dict[str, Any]:
        """Restore the saved state into the given objects; returns the JSON header (step and extras)."""
        header = json.loads((self.directory / "state.json").read_text())
        if header.get("fingerprint") != self.fingerprint:
            raise ConfigError(
                f"{self.directory}: this checkpoint was made with a different config or data; "
                "drop --resume to start over, or delete the checkpoint directory"
            )
        model.load_state_dict(load_file(self.directory / "model.safetensors"), strict=False)
        # weights_only: a checkpoint is data, never code.
        trainer = torch.load(self.directory / "trainer.pt", weights_only=True, map_location="cpu")
        optimizer.load_state_dict(trainer["optimizer"])
        scheduler.load_state_dict(trainer["scheduler"])
        torch.set_rng_state(trainer["torch_rng"])
        if trainer["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(trainer["cuda_rng"])
        logger.info("resumed from %s at step %d", self.directory, header["step"])
        return header

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def _untie(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors sharing memory (tied embeddings); store independent copies."""
    seen: set[int] = set()
    result = {}
    for key, tensor in state.items():
        pointer = tensor.untyped_storage().data_ptr()
        result[key] = tensor.clone() if pointer in seen else tensor
        seen.add(pointer)
    return result
