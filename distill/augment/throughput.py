"""Examples per second of each augmenter and of teacher labeling on this machine, as JSON lines.

    python -m edgekd.distill.augment.throughput TEACHER_BUNDLE [--examples 2000] [--num-proc 1] [data.path=DIR]

Augmenters: Tang et al. (tagging included), TinyBERT with GloVe neighbours only, and TinyBERT with an MLM for
single-piece words: `--mlm DIR` (e.g. bert-base-uncased); without one, the teacher's own encoder with a masked-LM head
of random weights stands in (the cost of a MiniLM-sized MLM, its candidates meaningless). Teacher labeling: the
teacher bundle's logits on the augmented text, batched as the distill stage does (the cache is bypassed).
"""

from __future__ import annotations

import argparse
import atexit
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgekd.distill.augment.throughput", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("teacher", type=Path)
    parser.add_argument("overrides", nargs="*", metavar="data.key=value")
    parser.add_argument("--examples", type=int, default=2000, help="training examples augmented (default 2000)")
    parser.add_argument("--num-proc", type=int, default=1)
    parser.add_argument("--mlm", help="a masked-language-model directory for TinyBERT's single-piece words")
    args = parser.parse_args(argv)

    from edgekd.bundle import Bundle
    from edgekd.config import AugmentConfig
    from edgekd.data import Split, lineage_data, load_task_data
    from edgekd.distill.augment.data import augment
    from edgekd.distill.logits_cache import teacher_logits

    teacher = Bundle.open(args.teacher)
    train = load_task_data(lineage_data(teacher, args.overrides)).train
    rng = np.random.default_rng(0)
    picks = rng.choice(len(train), size=min(args.examples, len(train)), replace=False)
    split = Split("sample", [train.texts[i] for i in picks], train.labels[picks])
    mlm = args.mlm or _random_head_mlm(teacher)
    configs = {
        "tang": AugmentConfig(method="tang", num_proc=args.num_proc),
        "tinybert-glove": AugmentConfig(method="tinybert", num_proc=args.num_proc),
        "tinybert-mlm": AugmentConfig(method="tinybert", mlm=mlm, num_proc=args.num_proc),
    }
    with tempfile.TemporaryDirectory() as scratch:
        augmented = None
        for name, cfg in configs.items():
            started = time.perf_counter()
            augmented, facts = augment(split, cfg, 0, Path(scratch) / name)
            seconds = time.perf_counter() - started
            print(json.dumps({"what": name, "examples": len(split), "new_examples": facts["augmented_examples"], "seconds": round(seconds, 1),
                              "examples_per_second": round(len(split) / seconds, 1), "num_proc": args.num_proc,
                              "mlm": cfg.mlm if name == "tinybert-mlm" and args.mlm else ("random-head MiniLM" if name == "tinybert-mlm" else None)}),
                  flush=True)
        assert augmented is not None
        labeled = Split("labeling", augmented.texts[len(split):][: 4 * args.examples], np.full(min(4 * args.examples, len(augmented) - len(split)), -1))
        started = time.perf_counter()
        teacher_logits(teacher, labeled, Path(scratch) / "cache", 128, "cpu")
        seconds = time.perf_counter() - started
        print(json.dumps({"what": "teacher labeling", "examples": len(labeled), "seconds": round(seconds, 1),
                          "examples_per_second": round(len(labeled) / seconds, 1)}), flush=True)
    return 0


def _random_head_mlm(teacher: object) -> str:
    """The teacher's encoder under a masked-LM head of random weights, saved to a temporary directory."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    from edgekd.bundle import Bundle

    assert isinstance(teacher, Bundle)
    torch.manual_seed(0)
    directory = Path(tempfile.mkdtemp(prefix="edgekd-mlm-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)  # read by the augmenter until the measurement ends
    config = BertConfig.from_pretrained(teacher.path)
    BertForMaskedLM(config).save_pretrained(directory)  # random weights: the same cost as a trained MLM of this size
    AutoTokenizer.from_pretrained(teacher.tokenizer_dir).save_pretrained(directory)
    return str(directory)


if __name__ == "__main__":
    sys.exit(main())
