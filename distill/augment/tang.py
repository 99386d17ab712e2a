"""Tang et al. (2019), "Distilling Task-Specific Knowledge from BERT into Simple Neural Networks", section 3.3.

For each word draw x ~ U(0, 1): x < p_mask replaces it with [MASK]; p_mask <= x < p_mask + p_pos replaces it with a
word of the same part of speech, drawn from the corpus's unigram distribution of that tag; otherwise it stays. Then,
with probability p_ng, only an n-gram of the result is kept, n uniform in 1..5. Each example gives n_iter samples
(duplicates and copies of the original dropped). Sentence pairs cycle: the first sentence, the second, both. The
paper's defaults: p_mask = p_pos = 0.1, p_ng = 0.25, n_iter = 20.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np

from edgekd.config import AugmentConfig

from .pos import Tagged

MASK = "[MASK]"
SPECIAL = {"[PAD]", "[UNK]", "[MASK]", "[CLS]", "[SEP]"}


# The longest n-gram kept by n-gram sampling (the paper's n in 1..5).
MAX_NGRAM = 5


def turn(iteration: int, columns: int) -> set[int]:
    """Which sentences an augmentation pass changes: the one sentence; for pairs the first, the second, both, in turn."""
    return {0} if columns == 1 else [{0}, {1}, {0, 1}][iteration % 3]


class PosUnigrams:
    """Per part-of-speech tag, the corpus's words and their unigram probabilities (renormalised within the tag)."""

    def __init__(self, corpus: Sequence[Tagged]) -> None:
        counts: dict[str, Counter[str]] = defaultdict(Counter)
        for sentence in corpus:
            for word, tag in sentence:
                if word not in SPECIAL:
                    counts[tag][word] += 1
        self.words = {tag: np.asarray(list(c)) for tag, c in counts.items()}
        self.cumulative = {tag: np.cumsum(np.fromiter(c.values(), float)) / sum(c.values()) for tag, c in counts.items()}

    def sample(self, tag: str, rng: np.random.Generator) -> str | None:
        if tag not in self.words:
            return None
        index = int(np.searchsorted(self.cumulative[tag], rng.random(), side="right"))
        return str(self.words[tag][min(index, len(self.words[tag]) - 1)])


class TangAugmenter:
    """Tang et al.'s augmentation with the settings of an `AugmentConfig` of method `tang` (p_mask, p_pos, p_ng, n_iter)."""

    def __init__(self, unigrams: PosUnigrams, cfg: AugmentConfig) -> None:
        assert cfg.method == "tang", f"a tang augmenter given a {cfg.method} config"
        self.unigrams, self.cfg = unigrams, cfg

    def words(self, sentence: Tagged, rng: np.random.Generator) -> list[str]:
        """One pass over a tagged sentence: masking and POS replacement per word, then n-gram sampling."""
        s = self.cfg
        out = []
        for word, tag in sentence:
            x = rng.random()
            if word in SPECIAL:
                out.append(word)
            elif x < s.p_mask:
                out.append(MASK)
            elif x < s.p_mask + s.p_pos:
                out.append(self.unigrams.sample(tag, rng) or word)
            else:
                out.append(word)
        if out and rng.random() < s.p_ng:
            n = min(int(rng.integers(1, MAX_NGRAM + 1)), len(out))
            start = int(rng.integers(0, len(out) - n + 1))
            out = out[start:start + n]
        return out

    def augment(self, example: Sequence[Tagged], rng: np.random.Generator) -> list[tuple[str, ...]]:
        """Up to n_iter new texts for one example (one tagged sentence, or two for a pair), without duplicates."""
        original = tuple(" ".join(w for w, _ in sentence) for sentence in example)
        seen = {original}
        out = []
        for i in range(self.cfg.n_iter):
            which = turn(i, len(example))
            texts = tuple(" ".join(self.words(s, rng)) if k in which else original[k] for k, s in enumerate(example))
            if texts not in seen and all(t.strip() for t in texts):
                seen.add(texts)
                out.append(texts)
        return out
