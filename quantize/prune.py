"""`edgekd prune`: a torch bundle to a smaller torch bundle (export and quantize it next), evaluated against its parent.

- magnitude: unstructured global magnitude pruning of the Linear weights to a target sparsity. Dense runtimes (ONNX
  Runtime, LiteRT) still multiply the zeros: the file compresses better (gzip) but does not run faster.
- structured: whole attention heads and FFN neurons, ranked by gradient importance, removed (`structured.py`).
- vocab: the word pieces (or words) the training text uses, plus the special tokens, keep their embedding rows; the
  rest go. The tokenizer is remapped so that the runtime produces the new ids: a WordPiece tokenizer keeps its full
  vocabulary for segmentation (so text splits exactly as before) and maps every dropped piece to [UNK]'s id.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgekd import metrics
from edgekd.bundle import Bundle, produced_by, write_golden
from edgekd.config import Handlers, MagnitudePruneConfig, PruneConfig, VocabPruneConfig, to_dict
from edgekd.data import TaskData, lineage_data, load_task_data, resolve_task
from edgekd.errors import DataError, UnsupportedError
from edgekd.families import family_spec
from edgekd.footprint import footprint
from edgekd.modeling import WEIGHTS_FILE, load_torch_model
from edgekd.parity import compare
from edgekd.runtime.backends import run_batched
from edgekd.runtime.encoder import collate, load_encoder
from edgekd.runtime.word_tokenizer import SPECIALS, VOCAB_FILE
from edgekd.writer import BundleWriter, check_output

logger = logging.getLogger(__name__)

# pruner(model, parent, data, config, new bundle directory) -> details; saves the model and tokenizer there.
Pruner = Callable[[nn.Module, Bundle, TaskData, Any, Path], dict[str, Any]]


def _load_pruners() -> None:
    from . import structured  # noqa: F401  (its `@register` enters it)


# Pruning handlers by config type, each registered beside its code.
PRUNERS: Handlers[Pruner] = Handlers("prune", _load_pruners)
register = PRUNERS.register


def prune(source: str | Path, cfg: PruneConfig, out: str | Path | None = None, *, overrides: list[str] | tuple[str, ...] = (), force: bool = False) -> Bundle:
    """Prune a torch bundle with the method of `cfg`; `overrides` (`data.path=DIR`) say where the text comes from."""
    pruner = PRUNERS.get(cfg)
    if pruner is None:
        raise UnsupportedError(f"prune method {cfg.name!r} has no handler; registered: {', '.join(PRUNERS.table())}")
    return transform_torch(source, cfg, pruner, "prune", cfg.output_suffix(), out, overrides=overrides, force=force)


def transform_torch(
    source: str | Path,
    cfg: Any,
    transform: Pruner,
    stage: str,
    suffix: str,
    out: str | Path | None = None,
    *,
    overrides: list[str] | tuple[str, ...] = (),
    force: bool = False,
    key: str | None = None,
) -> Bundle:
    """A torch bundle to a transformed torch bundle (pruned, or quantized by Neural Compressor), evaluated on the dev
    set against its parent, each reading the text through its own tokenizer."""
    parent = Bundle.open(source)
    manifest = parent.manifest
    if manifest.format != "torch":
        raise UnsupportedError(f"{parent.path}: is a {manifest.format} bundle; {stage} {cfg.method} reads a torch bundle (a student), then export it")
    out_path = Path(out) if out is not None else parent.path.parent / f"{parent.path.name}-{suffix}"
    check_output(out_path, overwrite=force, sources=(parent.path,))
    data_cfg = lineage_data(parent, overrides)
    task = resolve_task(data_cfg)
    data = load_task_data(data_cfg)
    model = load_torch_model(parent)
    spec = family_spec(manifest.architecture)
    columns = manifest.task.columns
    tokenizer = manifest.tokenizer
    parent_encoder = load_encoder(parent.tokenizer_dir, tokenizer.type, tokenizer.max_length, columns)
    golden, golden_texts = parent.read_golden()
    parent_run = spec.runner(load_torch_model(parent), parent_encoder.pad_id)
    with BundleWriter(out_path, overwrite=force) as writer:
        details = {"method": cfg.method, **transform(model, parent, data, cfg, writer.path)}
        pruned = load_torch_model(Bundle(writer.path, manifest, ""))
        encoder = load_encoder(writer.path / tokenizer.path, tokenizer.type, tokenizer.max_length, columns)
        run = spec.runner(pruned, encoder.pad_id)
        # Parent and pruned model each read the text through their own tokenizer.
        results, outputs = [], {}
        for name, texts in {"golden": golden_texts, "dev": list(data.dev.texts)}.items():
            expected = run_batched(parent_encoder.encode(texts), parent_run)
            outputs[name] = run_batched(encoder.encode(texts), run)
            results.append(compare(name, expected, outputs[name]))
        write_golden(writer.path, collate(encoder.encode(golden_texts), encoder.pad_id), outputs["golden"], golden_texts, np.asarray(golden["logits"]))
        dev_metrics = metrics.compute(task.metrics, outputs["dev"], data.dev.labels, task.problem)
        architecture = {**manifest.architecture, key or stage: details, "parameters": sum(p.numel() for p in pruned.parameters())}
        if "vocab" in details:
            architecture["vocab"] = details["vocab"]
        return writer.commit(
            kind=manifest.kind,
            format="torch",
            task=manifest.task.model_dump(),
            architecture=architecture,
            inputs=[i.model_dump() for i in manifest.inputs],
            outputs=[o.model_dump() for o in manifest.outputs],
            tokenizer=tokenizer.model_dump(),
            parent={"path": str(parent.path), "sha256": parent.sha256},
            produced_by=produced_by(stage, {stage: to_dict(cfg), "data": data_cfg.model_dump(mode="json")}, None),
            metrics={
                "dev": {**{k: round(v, 6) for k, v in dev_metrics.items()}, "examples": len(data.dev)},
                "parent_dev": manifest.metrics.get("dev", {}),
                "parity": {"outputs": [r.as_dict() for r in results]},
                "footprint": footprint(writer.path / WEIGHTS_FILE),
                "parent_footprint": footprint(parent.file(WEIGHTS_FILE)),
            },
            golden=manifest.golden,
        )


def save_model(model: nn.Module, parent: Bundle, directory: Path) -> None:
    """Save a pruned model the way its family loads (transformers' format, or the BiLSTM's config + safetensors)."""
    if parent.manifest.architecture.get("family") == "bilstm":
        from safetensors.torch import save_file

        config = json.loads(parent.file("config.json").read_text())
        config["vocab"] = int(model.embedding.num_embeddings)
        (directory / "config.json").write_text(json.dumps(config, indent=2))
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, directory / WEIGHTS_FILE)
    else:
        model.save_pretrained(directory, safe_serialization=True)


# ---- magnitude --------------------------------------------------------------------------------------------------


@register(MagnitudePruneConfig)
def magnitude(model: nn.Module, parent: Bundle, data: TaskData, cfg: MagnitudePruneConfig, directory: Path) -> dict[str, Any]:
    """Zero the globally smallest |w| of every Linear weight (embeddings, LayerNorms and biases are left alone)."""
    weights = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
    magnitudes = torch.cat([w.detach().abs().flatten() for w in weights])  # (all Linear weights,)
    count = int(cfg.sparsity * magnitudes.numel())
    threshold = torch.kthvalue(magnitudes, count).values if count > 0 else magnitudes.min() - 1
    with torch.no_grad():
        for w in weights:
            w.mul_((w.abs() > threshold).to(w.dtype))
    zeros = sum(int((w == 0).sum()) for w in weights)
    save_model(model, parent, directory)
    shutil.copytree(parent.tokenizer_dir, directory / parent.manifest.tokenizer.path)
    return {"sparsity": cfg.sparsity, "linear_weights": int(magnitudes.numel()), "zeroed": zeros,
            "note": "dense runtimes still compute the zeros: smaller gzip size, same latency"}


# ---- vocabulary -------------------------------------------------------------------------------------------------


@register(VocabPruneConfig)
def vocab(model: nn.Module, parent: Bundle, data: TaskData, cfg: VocabPruneConfig, directory: Path) -> dict[str, Any]:
    texts = [part for example in data.train.texts for part in example]
    if not texts:
        raise DataError("vocabulary pruning needs training text; the train split is empty")
    tokenizer_dir = directory / parent.manifest.tokenizer.path
    if parent.manifest.tokenizer.type == "word":
        kept, before = _prune_word_vocab(parent.tokenizer_dir, tokenizer_dir, texts, cfg.min_count)
        embedding = model.embedding
    else:
        kept, before = _prune_wordpiece(parent.tokenizer_dir, tokenizer_dir, texts, cfg.min_count)
        embedding = model.get_input_embeddings()
    index = torch.as_tensor(kept, dtype=torch.long)
    smaller = nn.Embedding(len(kept), embedding.embedding_dim, padding_idx=0)
    with torch.no_grad():
        smaller.weight.copy_(embedding.weight[index])
    if parent.manifest.tokenizer.type == "word":
        model.embedding = smaller
    else:
        model.set_input_embeddings(smaller)
        model.config.vocab_size = len(kept)
    save_model(model, parent, directory)
    logger.info("vocabulary %d -> %d entries", before, len(kept))
    return {
        "vocab": len(kept), "vocab_before": before, "min_count": cfg.min_count,
        "embedding_parameters_removed": (before - len(kept)) * embedding.embedding_dim,
    }


def _prune_wordpiece(source: Path, target: Path, texts: list[str], min_count: int) -> tuple[list[int], int]:
    """Keep the specials and every piece the texts produce at least `min_count` times; rewrite tokenizer.json (and
    vocab.txt) with the new ids."""
    from tokenizers import Tokenizer

    shutil.copytree(source, target)
    tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    counts: Counter[int] = Counter()
    for start in range(0, len(texts), 4096):
        for encoding in tokenizer.encode_batch(texts[start : start + 4096]):
            counts.update(encoding.ids)
    seen = {piece for piece, count in counts.items() if count >= min_count}
    spec = json.loads((source / "tokenizer.json").read_text(encoding="utf-8"))
    full: dict[str, int] = spec["model"]["vocab"]
    specials = {t["content"] for t in spec.get("added_tokens", [])} | {spec["model"].get("unk_token", "[UNK]")}
    kept_old = sorted({i for t, i in full.items() if t in specials} | seen)
    new_id = {old: new for new, old in enumerate(kept_old)}
    unk = new_id[full[spec["model"].get("unk_token", "[UNK]")]]
    # Every original piece stays in the table, so WordPiece splits text exactly as before; dropped ones read as [UNK].
    spec["model"]["vocab"] = {token: new_id.get(old, unk) for token, old in full.items()}
    for added in spec.get("added_tokens", []):
        added["id"] = new_id[added["id"]]
    post = spec.get("post_processor") or {}
    for special in (post.get("special_tokens") or {}).values():
        special["ids"] = [new_id[full[token]] for token in special["tokens"]]
    if spec.get("padding"):
        spec["padding"]["pad_id"] = new_id.get(spec["padding"]["pad_id"], 0)
    (target / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    by_id = {i: t for t, i in full.items()}
    if (target / "vocab.txt").exists():
        (target / "vocab.txt").write_text("".join(by_id[old] + "\n" for old in kept_old), encoding="utf-8")
    return kept_old, len(full)


def _prune_word_vocab(source: Path, target: Path, texts: list[str], min_count: int) -> tuple[list[int], int]:
    from edgekd.runtime.word_tokenizer import WordTokenizer

    tokenizer = WordTokenizer.load(source)
    counts = Counter(word for text in texts for word in tokenizer.split(text))
    seen = {word for word, count in counts.items() if count >= min_count}
    kept = [i for i, word in enumerate(tokenizer.vocab) if word in SPECIALS or word in seen]
    smaller = WordTokenizer([tokenizer.vocab[i] for i in kept], lowercase=tokenizer.lowercase, max_length=tokenizer.max_length)
    smaller.save(target)
    assert (target / VOCAB_FILE).is_file()
    return kept, len(tokenizer)

