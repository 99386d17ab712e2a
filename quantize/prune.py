"""`edgekd prune`: a torch bundle to a smaller torch bundle (export and quantize it next), evaluated against its parent.

- magnitude: unstructured global magnitude pruning of the Linear weights to a target sparsity. Dense runtimes (ONNX
  Runtime, LiteRT) still multiply the zeros: the file compresses better (gzip) but does not run faster.
- structured: whole attention heads and FFN neurons, ranked by gradient importance, removed (`structured.py`).
- vocab: the word pieces (or words) the training text uses, plus the special tokens, keep their embedding rows; the
  rest go. The tokenizer is remapped so that the runtime produces the new ids: a WordPiece tokenizer keeps its full
  vocabulary for segmentation (so text splits exactly as before) and maps every dropped piece to [UNK]'s id. Byte-level
  BPE (RoBERTa, ModernBERT) and Unigram (XLM-R, DeBERTa-v3) tokenizers are refused by name: their pieces are built
  by merges or scored against each other, so a dropped piece has no single stand-in and text would split differently.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.bundle import Bundle
from edgekd.config import Handlers, MagnitudePruneConfig, PruneConfig, VocabPruneConfig
from edgekd.derive import Derived, Parent, Transform, derive
from edgekd.errors import DataError, UnsupportedError
from edgekd.families import family_spec
from edgekd.modeling import WEIGHTS_FILE, load_torch_model
from edgekd.runtime.word_tokenizer import SPECIALS, VOCAB_FILE

logger = logging.getLogger(__name__)

# pruner(model to change, parent, config, new bundle directory) -> details; saves the model (and a new tokenizer) there.
Pruner = Callable[[nn.Module, Parent, Any, Path], dict[str, Any]]


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

    def accepts(parent: Bundle) -> None:
        if parent.manifest.format != "torch":
            raise UnsupportedError(f"{parent.path}: is a {parent.manifest.format} bundle; prune {cfg.method} reads a torch bundle (a student), then export it")

    return derive(source, cfg, "prune", torch_transform(pruner, cfg), out, accepts=accepts, overrides=overrides, force=force)


def torch_transform(change: Pruner, cfg: Any) -> Transform:
    """A transform of a torch bundle's model (pruned, or quantized by Neural Compressor) into a torch bundle, run from
    the saved files (so the comparison checks what was written, tokenizer included)."""

    def transform(parent: Parent, directory: Path) -> Derived:
        details = {"method": cfg.method, **change(parent.fresh_model(), parent, cfg, directory)}
        changed = load_torch_model(Bundle(directory, parent.manifest, ""))
        spec = family_spec(parent.manifest.architecture)
        facts: dict[str, Any] = {"parameters": sum(p.numel() for p in changed.parameters())}
        if "vocab" in details:
            facts["vocab"] = details["vocab"]
        return Derived(details=details, runner=lambda ours: spec.runner(changed, ours.pad_id), architecture=facts)

    return transform


def save_model(model: nn.Module, parent: Bundle, directory: Path) -> None:
    """Save a pruned model the way its family loads (transformers' format, or the BiLSTM's config + safetensors)."""
    if parent.manifest.architecture.family == "bilstm":
        from safetensors.torch import save_file

        config = json.loads(parent.file("config.json").read_text())
        config["vocab"] = int(model.embedding.num_embeddings)
        (directory / "config.json").write_text(json.dumps(config, indent=2))
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, directory / WEIGHTS_FILE)
    else:
        model.save_pretrained(directory, safe_serialization=True)


# ---- magnitude --------------------------------------------------------------------------------------------------


@register(MagnitudePruneConfig)
def magnitude(model: nn.Module, parent: Parent, cfg: MagnitudePruneConfig, directory: Path) -> dict[str, Any]:
    """Zero the globally smallest |w| of every Linear weight (embeddings, LayerNorms and biases are left alone)."""
    weights = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
    magnitudes = torch.cat([w.detach().abs().flatten() for w in weights])  # (all Linear weights,)
    count = int(cfg.sparsity * magnitudes.numel())
    threshold = torch.kthvalue(magnitudes, count).values if count > 0 else magnitudes.min() - 1
    with torch.no_grad():
        for w in weights:
            w.mul_((w.abs() > threshold).to(w.dtype))
    zeros = sum(int((w == 0).sum()) for w in weights)
    save_model(model, parent.bundle, directory)
    return {"sparsity": cfg.sparsity, "linear_weights": int(magnitudes.numel()), "zeroed": zeros,
            "note": "dense runtimes still compute the zeros: smaller gzip size, same latency"}


# ---- vocabulary -------------------------------------------------------------------------------------------------


@register(VocabPruneConfig)
def vocab(model: nn.Module, parent: Parent, cfg: VocabPruneConfig, directory: Path) -> dict[str, Any]:
    texts = [part for example in parent.data.train.texts for part in example]
    if not texts:
        raise DataError("vocabulary pruning needs training text; the train split is empty")
    # The new bundle's tokenizer files lie at its root (derive copied the parent's there), whatever the parent's layout.
    tokenizer_dir = directory
    kind = parent.manifest.tokenizer.type
    if kind not in VocabPruneConfig.tokenizers:
        raise UnsupportedError(f"vocabulary pruning remaps WordPiece and word vocabularies; this model's tokenizer is {kind} "
                               f"({parent.manifest.architecture.family}), whose pieces are merged or scored together, so "
                               "dropping one changes how text splits. Prune it with method structured or magnitude instead")
    if kind == "word":
        kept, before = _prune_word_vocab(parent.bundle.tokenizer_dir, tokenizer_dir, texts, cfg.min_count)
        embedding = model.embedding
    else:
        kept, before = _prune_wordpiece(parent.bundle.tokenizer_dir, tokenizer_dir, texts, cfg.min_count)
        embedding = model.get_input_embeddings()
    index = torch.as_tensor(kept, dtype=torch.long)
    # The pad row keeps its id: every special token is kept and they open the vocabulary (ids 0..), so the kept ids
    # below the pad id are all of the old ones (the pad id stays what the manifest and the model's config record).
    pad_id = 0 if kind == "word" else getattr(model.config, "pad_token_id", None) or 0
    if pad_id >= len(kept) or kept[pad_id] != pad_id:
        raise UnsupportedError(f"vocabulary pruning keeps the pad id {pad_id} in place; this tokenizer's specials do not "
                               "open its vocabulary, so pruning would move it. Skip vocabulary pruning for this model")
    smaller = nn.Embedding(len(kept), embedding.embedding_dim, padding_idx=pad_id)
    with torch.no_grad():
        smaller.weight.copy_(embedding.weight[index])
    if parent.manifest.tokenizer.type == "word":
        model.embedding = smaller
    else:
        model.set_input_embeddings(smaller)
        model.config.vocab_size = len(kept)
    save_model(model, parent.bundle, directory)
    logger.info("vocabulary %d -> %d entries", before, len(kept))
    return {
        "vocab": len(kept), "vocab_before": before, "min_count": cfg.min_count,
        "embedding_parameters_removed": (before - len(kept)) * embedding.embedding_dim,
    }


def _prune_wordpiece(source: Path, target: Path, texts: list[str], min_count: int) -> tuple[list[int], int]:
    """Keep the specials and every piece the texts produce at least `min_count` times; rewrite tokenizer.json (and
    vocab.txt) of `target` (a copy of `source`) with the new ids."""
    from tokenizers import Tokenizer

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

