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
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.config import AugmentConfig
from edgekd.data import Split
from edgekd.hashing import sha256_json
from edgekd.writer import write_text_atomic

logger = logging.getLogger(__name__)


def _key(split: Split, cfg: AugmentConfig, seed: int) -> str:
    """The cache key of an augmentation: the split, every setting but the process count (the result does not depend on
    it), and the seed."""
    return sha256_json({"split": split.fingerprint, "augment": cfg.model_dump(mode="json", exclude={"num_proc"}), "seed": seed})[:32]


_WORKER: dict[str, Any] = {}


def _augmenter(cfg: AugmentConfig, corpus: list[str] | None) -> Any:
    """One augmenter per worker process and config, built on first use (spaCy, GloVe and an MLM are slow to load)."""
    identity = sha256_json({"augment": cfg.model_dump(mode="json"), "corpus": [len(corpus), corpus[:100]] if corpus is not None else None})
    if _WORKER.get("identity") != identity:
        _WORKER.clear()
        _WORKER["identity"] = identity
        if cfg.method == "tang":
            from .pos import tag
            from .tang import PosUnigrams, TangAugmenter

            assert corpus is not None
            _WORKER["augmenter"] = TangAugmenter(PosUnigrams(tag(corpus)), cfg)
        else:
            from .tinybert import GloveNeighbours, MlmCandidates, TinyBertAugmenter

            mlm = MlmCandidates.load(cfg.mlm, cfg.k, cfg.batch_size) if cfg.mlm else None
            _WORKER["augmenter"] = TinyBertAugmenter(GloveNeighbours.packaged(), mlm, cfg)
    return _WORKER["augmenter"]


def _map_batch(batch: dict[str, list[Any]], indices: list[int], cfg: AugmentConfig, seed: int, corpus: list[str] | None) -> dict[str, list[Any]]:
    augmenter = _augmenter(cfg, corpus)
    examples = [tuple(texts) for texts in batch["texts"]]
    out: dict[str, list[Any]] = {"texts": [], "source": []}
    if cfg.method == "tang":
        from .pos import tag

        columns = len(examples[0]) if examples else 1
        tagged = tag([text for example in examples for text in example])
        prepared = [tagged[i * columns:(i + 1) * columns] for i in range(len(examples))]
    else:
        prepared = augmenter.prepare(examples)
    for index, item in zip(indices, prepared):
        for texts in augmenter.augment(item, np.random.default_rng([seed, index])):
            out["texts"].append(list(texts))
            out["source"].append(index)
    return out


def augment(split: Split, cfg: AugmentConfig, seed: int, cache_root: Path, problem: str = "classification") -> tuple[Split, dict[str, Any]]:
    """The split followed by its augmented examples (`cfg`'s method and settings, each example's random stream from
    (seed, its index)), and facts of the run (counts, seconds, examples per second)."""
    path = Path(cache_root) / "augmented" / f"{_key(split, cfg, seed)}.jsonl"
    source = split.texts[: cfg.max_examples] if cfg.max_examples else split.texts
    started = time.perf_counter()
    if path.is_file():
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        facts = {"cached": True}
    else:
        from datasets import Dataset

        # datasets' own bar shows the progress on a terminal (the CLI turns it off elsewhere: CI logs get these lines).
        logger.info("%s augmentation of %d examples ...", cfg.method, len(source))
        corpus = [text for example in split.texts for text in example] if cfg.method == "tang" else None
        dataset = Dataset.from_dict({"texts": [list(t) for t in source]})
        mapped = dataset.map(
            _map_batch, batched=True, batch_size=cfg.batch_size, with_indices=True, remove_columns=["texts"],
            num_proc=cfg.num_proc if cfg.num_proc > 1 else None, fn_kwargs={"cfg": cfg, "seed": seed, "corpus": corpus},
            desc=f"{cfg.method} augmentation",
        )
        rows = [{"texts": t, "source": s} for t, s in zip(mapped["texts"], mapped["source"])]
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        facts = {"cached": False}
    seconds = time.perf_counter() - started
    unlabeled = np.full(len(rows), np.nan if problem == "regression" else -1, dtype=np.float64 if problem == "regression" else np.int64)
    merged = Split(name=f"{split.name}+{cfg.method}", texts=[*split.texts, *(tuple(r["texts"]) for r in rows)],
                   labels=np.concatenate([split.labels.astype(unlabeled.dtype), unlabeled]))
    facts.update({"method": cfg.method, "source_examples": len(source), "augmented_examples": len(rows), "seconds": round(seconds, 2),
                  "source_examples_per_second": round(len(source) / seconds, 1) if seconds and not facts["cached"] else None,
                  "path": str(path)})
    logger.info("%s augmentation: %d examples -> %d new (%s)", cfg.method, len(source), len(rows), "cached" if facts["cached"] else f"{seconds:.1f} s")
    return merged, facts
