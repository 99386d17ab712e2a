"""A plain fine-tuning loop of the packaged MiniLM, independent of edgekd's trainer: the yardstick its teacher recipe
must match (issue 22). Reads GLUE TSVs itself, trains with AdamW, linear warm-up and decay, batches of 32 sorted by
length (batch order shuffled), no clipping, no evaluation until the end, and prints one JSON line per seed.

    python benchmarks/results/plain_teacher.py sst2 ../shared/data/sst2 --seeds 0 1 2 --epochs 1 --max-length 64
    python benchmarks/results/plain_teacher.py mrpc ../shared/data/mrpc --seeds 0 1 2 --epochs 5 --max-length 128
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import f1_score
from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

from edgekd.packaged import packaged_dir

COLUMNS = {"sst2": (("sentence",), "label"), "mrpc": (("#1 String", "#2 String"), "Quality")}


def read(path: Path, task: str) -> tuple[list[tuple[str, ...]], np.ndarray]:
    texts, label = COLUMNS[task]
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [tuple(r[c] for c in texts) for r in rows], np.array([int(r[label]) for r in rows])


def run(task: str, data: Path, seed: int, args: argparse.Namespace) -> dict:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    source = str(packaged_dir("minilm"))
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=2)
    (train_x, train_y), (dev_x, dev_y) = read(data / "train.tsv", task), read(data / "dev.tsv", task)

    def encode(texts: list[tuple[str, ...]]) -> list[list[int]]:
        return tokenizer(*map(list, zip(*texts)), truncation=True, max_length=args.max_length)["input_ids"]

    def batch(ids: list[list[int]], pick: np.ndarray) -> dict[str, torch.Tensor]:
        width = max(len(ids[i]) for i in pick)
        input_ids = torch.zeros(len(pick), width, dtype=torch.long)
        mask = torch.zeros(len(pick), width, dtype=torch.long)
        for row, i in enumerate(pick):
            input_ids[row, : len(ids[i])] = torch.tensor(ids[i])
            mask[row, : len(ids[i])] = 1
        return {"input_ids": input_ids, "attention_mask": mask}

    train_ids, dev_ids = encode(train_x), encode(dev_x)
    order = np.argsort([len(t) for t in train_ids], kind="stable")
    batches = [order[i : i + args.batch_size] for i in range(0, len(order), args.batch_size)]
    total = len(batches) * args.epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    schedule = get_linear_schedule_with_warmup(optimizer, int(args.warmup * total), total)
    started = time.perf_counter()
    model.train()
    for _ in range(args.epochs):
        for b in rng.permutation(len(batches)):
            pick = batches[b]
            loss = model(**batch(train_ids, pick), labels=torch.from_numpy(train_y[pick])).loss
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
    model.eval()
    dev_order = np.argsort([len(t) for t in dev_ids])
    predictions = np.empty(len(dev_ids), dtype=int)
    with torch.no_grad():
        for i in range(0, len(dev_order), 128):
            pick = dev_order[i : i + 128]
            predictions[pick] = model(**batch(dev_ids, pick)).logits.argmax(-1).numpy()
    return {"task": task, "arm": "plain", "seed": seed, "steps": total, "train_seconds": round(time.perf_counter() - started),
            "dev_accuracy": round(float((predictions == dev_y).mean()), 6),
            "dev_f1": round(float(f1_score(dev_y, predictions)), 6), "dev_examples": len(dev_y)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=sorted(COLUMNS))
    parser.add_argument("data", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--warmup", type=float, default=0.06)
    args = parser.parse_args()
    for seed in args.seeds:
        print(json.dumps(run(args.task, args.data, seed, args)), flush=True)


if __name__ == "__main__":
    main()
