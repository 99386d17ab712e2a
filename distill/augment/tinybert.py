"""TinyBERT's augmentation (Jiao et al. 2020, Algorithm 1): for each word, with probability p_t, a replacement: a
word that is one word piece gets one of a masked language model's top-K predictions at its position (that word
masked); any other word, or every word when no MLM is given, one of its K nearest GloVe neighbours (cosine). N_a
copies per example. The paper's defaults: p_t = 0.4, K = 15, N_a = 20.

Batched: candidates for a whole batch of examples come from one MLM forward pass per `batch_size` masked positions
(a copy of the sentence per single-piece word, that word masked) and one matrix product of the batch's words against
the normalised GloVe table. Sentence pairs cycle like Tang et al.'s: the first sentence, the second, both.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.config import AugmentConfig

from .tang import turn

_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)
Candidates = list[list[str]]  # per word of a sentence: its replacements (empty: the word stays)


# The words of a sentence considered (as TinyBERT's basic tokenizer splits them); the rest stay as they are.
MAX_WORDS = 128


def split_words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class GloveNeighbours:
    """The K nearest GloVe 6B 50-d words by cosine similarity, for many words at once (one matrix product per chunk)."""

    def __init__(self, index: dict[str, int], vectors: np.ndarray, targets: int = 100_000) -> None:
        table = np.asarray(vectors, dtype=np.float32)
        self.table = table / np.maximum(np.linalg.norm(table, axis=1, keepdims=True), 1e-8)
        self.index = index
        self.words = np.empty(len(index), dtype=object)
        for word, row in index.items():
            self.words[row] = word
        # Neighbours come from the `targets` most frequent words (GloVe's rows are in frequency order): rarer words
        # make noisy replacements, and the search is 4x faster than over all 400k.
        self.targets = self.table[: min(targets, len(self.table))]

    @classmethod
    @lru_cache(maxsize=1)
    def packaged(cls) -> GloveNeighbours:
        from edgekd.distill.glove import load_glove

        return cls(*load_glove())

    def neighbours(self, words: Sequence[str], k: int, chunk: int = 256) -> dict[str, list[str]]:
        known = [w for w in dict.fromkeys(words) if w in self.index]
        out: dict[str, list[str]] = {w: [] for w in words}
        for start in range(0, len(known), chunk):
            part = known[start:start + chunk]
            rows = np.asarray([self.index[w] for w in part])
            scores = self.table[rows] @ self.targets.T  # one product for the chunk: (words, targets)
            inside = rows < len(self.targets)
            scores[np.flatnonzero(inside), rows[inside]] = -np.inf  # never the word itself
            top = np.argpartition(scores, -k, axis=1)[:, -k:]
            order = np.take_along_axis(scores, top, axis=1).argsort(axis=1)[:, ::-1]
            for word, ids in zip(part, np.take_along_axis(top, order, axis=1)):
                out[word] = [str(self.words[i]) for i in ids]
        return out


class MlmCandidates:
    """Top-K word pieces a masked language model predicts at a masked single-piece word (never a special token, a
    `##` continuation, or the word itself)."""

    def __init__(self, model: Any, tokenizer: Any, k: int, batch_size: int = 64) -> None:
        import torch

        self.model, self.tokenizer, self.k, self.batch_size = model.eval(), tokenizer, k, batch_size
        vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        blocked = [t.startswith("##") or t in tokenizer.all_special_tokens or not t.strip() for t in vocab]
        self.blocked = torch.tensor(blocked)

    @classmethod
    def load(cls, directory: str | Path, k: int, batch_size: int = 64) -> MlmCandidates:
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        return cls(AutoModelForMaskedLM.from_pretrained(directory), AutoTokenizer.from_pretrained(directory), k, batch_size)

    def candidates(self, sentences: Sequence[list[str]]) -> list[dict[int, list[str]]]:
        """For each sentence, {word position: candidates} for its single-piece words."""
        import torch

        tok = self.tokenizer
        # sentence, word, ids with the word masked, mask position, the word's own piece id (never its own candidate)
        jobs: list[tuple[int, int, list[int], int, int]] = []
        for s, words in enumerate(sentences):
            pieces = [tok.tokenize(w) for w in words]
            ids = [tok.cls_token_id] + [i for p in pieces for i in tok.convert_tokens_to_ids(p)] + [tok.sep_token_id]
            position = 1
            for w, p in enumerate(pieces):
                if len(p) == 1 and p[0] != tok.unk_token:  # a single known piece: the MLM proposes its replacements
                    masked = list(ids)
                    masked[position] = tok.mask_token_id
                    jobs.append((s, w, masked, position, ids[position]))
                position += len(p)
        out: list[dict[int, list[str]]] = [{} for _ in sentences]
        with torch.inference_mode():
            for start in range(0, len(jobs), self.batch_size):
                batch = jobs[start:start + self.batch_size]
                width = max(len(j[2]) for j in batch)
                ids = torch.full((len(batch), width), tok.pad_token_id)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, (_, _, seq, _, _) in enumerate(batch):
                    ids[row, : len(seq)] = torch.tensor(seq)
                    mask[row, : len(seq)] = 1
                logits = self.model(input_ids=ids, attention_mask=mask).logits
                at = logits[torch.arange(len(batch)), torch.tensor([j[3] for j in batch])]
                at[:, self.blocked] = -torch.inf
                at[torch.arange(len(batch)), torch.tensor([j[4] for j in batch])] = -torch.inf
                top = at.topk(self.k, dim=-1).indices
                for row, (s, w, _, _, _) in enumerate(batch):
                    out[s][w] = tok.convert_ids_to_tokens(top[row].tolist())
        return out


class TinyBertAugmenter:
    """TinyBERT's augmentation with the settings of an `AugmentConfig` of method `tinybert` (p_t, k, n_a)."""

    def __init__(self, glove: GloveNeighbours, mlm: MlmCandidates | None, cfg: AugmentConfig) -> None:
        assert cfg.method == "tinybert", f"a tinybert augmenter given a {cfg.method} config"
        self.glove, self.mlm, self.cfg = glove, mlm, cfg

    def prepare(self, examples: Sequence[tuple[str, ...]]) -> list[list[tuple[list[str], Candidates]]]:
        """Words and candidates of every sentence of a batch of examples, computed together."""
        sentences = [split_words(text)[:MAX_WORDS] for example in examples for text in example]
        from_mlm = self.mlm.candidates(sentences) if self.mlm is not None else [{} for _ in sentences]
        rest = [w for words, mlm in zip(sentences, from_mlm) for i, w in enumerate(words) if i not in mlm]
        near = self.glove.neighbours(rest, self.cfg.k)
        prepared = [(words, [mlm.get(i) or near.get(w, []) for i, w in enumerate(words)]) for words, mlm in zip(sentences, from_mlm)]
        out, at = [], 0
        for example in examples:
            out.append(prepared[at:at + len(example)])
            at += len(example)
        return out

    def sample(self, words: list[str], candidates: Candidates, rng: np.random.Generator) -> list[str]:
        p_t = self.cfg.p_t
        return [c[int(rng.integers(len(c)))] if c and rng.random() < p_t else w for w, c in zip(words, candidates)]

    def augment(self, prepared: list[tuple[list[str], Candidates]], rng: np.random.Generator) -> list[tuple[str, ...]]:
        """Up to N_a new texts for one prepared example, without duplicates or copies of the original."""
        original = tuple(" ".join(words) for words, _ in prepared)
        seen, out = {original}, []
        for i in range(self.cfg.n_a):
            which = turn(i, len(prepared))
            texts = tuple(" ".join(self.sample(w, c, rng)) if k in which else original[k] for k, (w, c) in enumerate(prepared))
            if texts not in seen:
                seen.add(texts)
                out.append(texts)
        return out
