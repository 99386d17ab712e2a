"""Augmenting a training split: in parallel through `datasets.map(num_proc=...)`, cached on disk by a hash of the
split, the settings and the seed, and returned as one split (the originals with their gold labels, then the new
examples without: -1, or NaN for regression, so the teacher's logits, cached like any split's, label them).

Every example gets its own random stream (seed, example index), so the result does not depend on num_proc or on
how `datasets` cuts the split into batches.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.data import Split
from edgekd.hashing import sha256_json
from edgekd.writer import write_text_atomic

from .tang import TangSettings
from .tinybert import TinyBertSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AugmentJob:
    method: str  # tang | tinybert
    settings: TangSettings | TinyBertSettings
    seed: int
    # tinybert: a masked-language-model directory (e.g. bert-base-uncased) for single-piece words; None: GloVe only
    mlm: str | None = None
    num_proc: int = 1
    batch_size: int = 64
    # augment only the first N training examples (a fixed-seed shuffle happens upstream); None: all
    max_examples: int | None = None

    def key(self, split: Split) -> str:
        return sha256_json({"split": split.fingerprint, "method": self.method, "settings": asdict(self.settings),
                            "seed": self.seed, "mlm": self.mlm, "max_examples": self.max_examples})[:32]


_WORKER: dict[str, Any] = {}


def _augmenter(job: AugmentJob, corpus: list[str] | None) -> Any:
    """One augmenter per worker process and job, built on first use (spaCy, GloVe and an MLM are slow to load)."""
    identity = sha256_json({"method": job.method, "settings": asdict(job.settings), "mlm": job.mlm,
                            "corpus": [len(corpus), corpus[:100]] if corpus is not None else None})
    if _WORKER.get("identity") != identity:
        _WORKER.clear()
        _WORKER["identity"] = identity
        if job.method == "tang":
            from .pos import tag
            from .tang import PosUnigrams, TangAugmenter

            assert isinstance(job.settings, TangSettings) and corpus is not None
            _WORKER["augmenter"] = TangAugmenter(PosUnigrams(tag(corpus)), job.settings)
        else:
            from .tinybert import GloveNeighbours, MlmCandidates, TinyBertAugmenter

            assert isinstance(job.settings, TinyBertSettings)
            mlm = MlmCandidates.load(job.mlm, job.settings.k, job.settings.batch_size) if job.mlm else None
            _WORKER["augmenter"] = TinyBertAugmenter(GloveNeighbours.packaged(), mlm, job.settings)
    return _WORKER["augmenter"]


def _map_batch(batch: dict[str, list[Any]], indices: list[int], job: AugmentJob, corpus: list[str] | None) -> dict[str, list[Any]]:
    augmenter = _augmenter(job, corpus)
    examples = [tuple(texts) for texts in batch["texts"]]
    out: dict[str, list[Any]] = {"texts": [], "source": []}
    if job.method == "tang":
        from .pos import tag

        columns = len(examples[0]) if examples else 1
        tagged = tag([text for example in examples for text in example])
        prepared = [tagged[i * columns:(i + 1) * columns] for i in range(len(examples))]
    else:
        prepared = augmenter.prepare(examples)
    for index, item in zip(indices, prepared):
        for texts in augmenter.augment(item, np.random.default_rng([job.seed, index])):
            out["texts"].append(list(texts))
            out["source"].append(index)
    return out


def augment(split: Split, job: AugmentJob, cache_root: Path, problem: str = "classification") -> tuple[Split, dict[str, Any]]:
    """The split followed by its augmented examples, and facts of the run (counts, seconds, examples per second)."""
    path = Path(cache_root) / "augmented" / f"{job.key(split)}.jsonl"
    source = split.texts[: job.max_examples] if job.max_examples else split.texts
    started = time.perf_counter()
    if path.is_file():
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        facts = {"cached": True}
    else:
        from datasets import Dataset

        corpus = [text for example in split.texts for text in example] if job.method == "tang" else None
        dataset = Dataset.from_dict({"texts": [list(t) for t in source]})
        mapped = dataset.map(
            _map_batch, batched=True, batch_size=job.batch_size, with_indices=True, remove_columns=["texts"],
            num_proc=job.num_proc if job.num_proc > 1 else None, fn_kwargs={"job": job, "corpus": corpus},
            desc=f"{job.method} augmentation",
        )
        rows = [{"texts": t, "source": s} for t, s in zip(mapped["texts"], mapped["source"])]
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        facts = {"cached": False}
    seconds = time.perf_counter() - started
    unlabeled = np.full(len(rows), np.nan if problem == "regression" else -1, dtype=np.float64 if problem == "regression" else np.int64)
    merged = Split(name=f"{split.name}+{job.method}", texts=[*split.texts, *(tuple(r["texts"]) for r in rows)],
                   labels=np.concatenate([split.labels.astype(unlabeled.dtype), unlabeled]))
    facts.update({"method": job.method, "source_examples": len(source), "augmented_examples": len(rows), "seconds": round(seconds, 2),
                  "source_examples_per_second": round(len(source) / seconds, 1) if seconds and not facts["cached"] else None,
                  "path": str(path)})
    logger.info("%s augmentation: %d examples -> %d new (%s)", job.method, len(source), len(rows), "cached" if facts["cached"] else f"{seconds:.1f} s")
    return merged, facts
