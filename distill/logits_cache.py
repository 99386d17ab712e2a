"""Teacher logits cached on disk, memory-mapped, keyed by the teacher's and the data's hashes.

Distillation reads the teacher's outputs many times per example; computing them once and memory-mapping them keeps
the teacher out of the student's training loop. Filling a cache is resumable: rows are written in fixed batches and a
progress file records how many batches are done, so a killed run continues where it stopped.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from edgekd import progress
from edgekd.bundle import Bundle
from edgekd.data import Split
from edgekd.batching import Encoded, encode, eval_batches, pad_batch
from edgekd.hashing import sha256_json
from edgekd.hf_families import model_inputs
from edgekd.writer import write_text_atomic

logger = logging.getLogger(__name__)


def cache_key(teacher_sha256: str, data_fingerprint: str, max_length: int) -> str:
    """The identity of a set of teacher logits: which teacher, which examples, which truncation."""
    return sha256_json({"teacher": teacher_sha256, "data": data_fingerprint, "max_length": max_length})[:32]


class LogitsCache:
    """A folder of `<key>.npy` arrays of shape (examples, num_labels), float32."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "teacher-logits"

    def path(self, key: str) -> Path:
        return self.root / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        """The cached logits, memory-mapped read-only, or None when this key was never finished."""
        path = self.path(key)
        return np.load(path, mmap_mode="r") if path.is_file() else None

    def fill(
        self,
        key: str,
        shape: tuple[int, int],
        batches: Iterable[np.ndarray],
        compute: Callable[[np.ndarray], np.ndarray],
    ) -> np.ndarray:
        """Compute the logits batch by batch (each batch an index array), resuming a partial fill; return them.

        `batches` must be the same sequence on every call for a key (it is, when derived from the data alone).
        """
        if (done := self.get(key)) is not None:
            return done
        self.root.mkdir(parents=True, exist_ok=True)
        # One filler per key: a second process (another run, a data-parallel rank) waits, then reads the result.
        with open(self.root / f"{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if (done := self.get(key)) is not None:
                return done
            return self._fill_locked(key, shape, batches, compute)

    def _fill_locked(
        self, key: str, shape: tuple[int, int], batches: Iterable[np.ndarray], compute: Callable[[np.ndarray], np.ndarray]
    ) -> np.ndarray:
        partial, progress = self.root / f"{key}.partial.npy", self.root / f"{key}.progress.json"
        start = json.loads(progress.read_text())["batches_done"] if progress.is_file() and partial.is_file() else 0
        mode = "r+" if start else "w+"
        array = np.lib.format.open_memmap(partial, mode=mode, dtype=np.float32, shape=shape)
        if start:
            logger.info("resuming teacher logits %s after %d batches", key, start)
        for number, indices in enumerate(batches):
            if number < start:
                continue
            array[indices] = compute(indices)
            if number % 20 == 19:
                array.flush()
                write_text_atomic(progress, json.dumps({"batches_done": number + 1}))
        array.flush()
        del array
        os.replace(partial, self.path(key))
        progress.unlink(missing_ok=True)
        result = self.get(key)
        assert result is not None
        return result


def _teacher_key(bundle: Bundle, split: Split) -> str:
    return cache_key(bundle.sha256, split.fingerprint, bundle.manifest.tokenizer.max_length)


def cached_teacher_logits(bundle: Bundle, split: Split, cache_root: Path) -> np.ndarray | None:
    """The teacher's logits on a split when the cache holds them (memory-mapped), else None."""
    return LogitsCache(cache_root).get(_teacher_key(bundle, split))


def teacher_logits(
    bundle: Bundle,
    split: Split,
    cache_root: Path,
    batch_size: int,
    device: Any,
    *,
    model: Any = None,
    encoded: Encoded | None = None,
) -> np.ndarray:
    """The teacher's logits on a split, from the cache, computing (and caching) them on first use."""
    import torch

    max_length = bundle.manifest.tokenizer.max_length
    cache = LogitsCache(cache_root)
    key = _teacher_key(bundle, split)
    if (cached := cache.get(key)) is not None:
        return cached
    if model is None:
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(bundle.path, use_safetensors=True)
    if encoded is None:
        from transformers import AutoTokenizer

        segments = "token_type_ids" in model_inputs(model.config)
        encoded = encode(AutoTokenizer.from_pretrained(bundle.tokenizer_dir), split, max_length, token_type_ids=segments)
    model.to(device).eval()
    bar = progress.bar(len(split), "teacher logits", unit="ex")

    @torch.no_grad()
    def compute(indices: np.ndarray) -> np.ndarray:
        batch = {k: torch.from_numpy(v).to(device) for k, v in pad_batch(encoded, indices).items() if k != "labels"}
        bar.update(len(indices))
        return model(**batch).logits.float().cpu().numpy()

    num_labels = bundle.manifest.outputs[0].shape[-1]
    assert isinstance(num_labels, int)
    result = cache.fill(key, (len(split), num_labels), eval_batches(encoded.lengths, batch_size), compute)
    bar.close()
    logger.info("teacher logits for %d examples cached at %s", len(split), cache.path(key))
    return result
