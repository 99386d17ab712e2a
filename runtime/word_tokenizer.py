"""The BiLSTM student's word-level tokenizer, in plain Python so that devices run it without torch or transformers.

Lower-cases (optionally), splits into runs of word characters and single punctuation marks, maps words to ids from a
vocabulary built on the training text. Ids 0, 1 and 2 are [PAD], [UNK] and [MASK]; a literal `[MASK]` in a text (a
word masked by augmentation) maps to id 2.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

PAD, UNK, MASK = "[PAD]", "[UNK]", "[MASK]"
SPECIALS = (PAD, UNK, MASK)
PAD_ID, UNK_ID = 0, 1
VOCAB_FILE = "word_vocab.json"
_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)


class WordTokenizer:
    def __init__(self, vocab: list[str], *, lowercase: bool = True, max_length: int = 64) -> None:
        if list(vocab[: len(SPECIALS)]) != list(SPECIALS):
            raise ValueError(f"a word vocabulary starts with {SPECIALS}, found {vocab[:3]}")
        self.vocab = list(vocab)
        self.index = {word: i for i, word in enumerate(self.vocab)}
        self.lowercase = lowercase
        self.max_length = max_length

    def __len__(self) -> int:
        return len(self.vocab)

    def split(self, text: str) -> list[str]:
        """Words; a literal [MASK] (masked words of augmented text) stays one token."""
        words: list[str] = []
        for i, part in enumerate(text.split(MASK)):
            if i:
                words.append(MASK)
            words += _TOKEN.findall(part.lower() if self.lowercase else part)
        return words

    def encode(self, text: str) -> list[int]:
        """Word ids of a text, truncated to max_length; an empty text is one [UNK] (an LSTM needs a step)."""
        ids = [self.index.get(word, UNK_ID) for word in self.split(text)[: self.max_length]]
        return ids or [UNK_ID]

    @classmethod
    def build(
        cls,
        texts: Iterable[str],
        *,
        min_freq: int = 1,
        max_vocab: int | None = None,
        lowercase: bool = True,
        max_length: int = 64,
        extra_words: Iterable[str] = (),
    ) -> WordTokenizer:
        """A vocabulary of the words seen at least `min_freq` times, most frequent first (ties alphabetical), then
        `extra_words` the texts lack (e.g. pretrained-embedding words, for words first seen at test time)."""
        probe = cls(list(SPECIALS), lowercase=lowercase, max_length=max_length)
        counts = Counter(word for text in texts for word in probe.split(text))
        words = sorted((w for w, c in counts.items() if c >= min_freq and w not in SPECIALS), key=lambda w: (-counts[w], w))
        vocab = [*SPECIALS, *words[:max_vocab]]
        known = set(vocab)
        vocab += [w for w in dict.fromkeys(extra_words) if w not in known]
        return cls(vocab, lowercase=lowercase, max_length=max_length)

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / VOCAB_FILE
        payload = {"type": "word", "lowercase": self.lowercase, "max_length": self.max_length, "vocab": self.vocab}
        path.write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: Path) -> WordTokenizer:
        payload = json.loads((directory / VOCAB_FILE).read_text(encoding="utf-8"))
        return cls(payload["vocab"], lowercase=payload["lowercase"], max_length=payload["max_length"])
