"""The BiLSTM student's word-level tokenizer, in plain Python so that devices run it without torch or transformers.

Lower-cases (optionally), splits into runs of word characters and single punctuation marks, maps words to ids from a
vocabulary built on the training text. Ids 0, 1 and 2 are [PAD], [UNK] and [MASK]; a literal `[MASK]` in a text (a
word masked by augmentation) maps to id 2.

`save` writes the vocabulary (`word_vocab.json`, what the runtime reads) and the same tokenizer as a `tokenizers`
WordLevel `tokenizer.json`, so that any `tokenizers` or transformers user encodes text as the model was trained:
`Tokenizer.from_file(".../tokenizer.json").encode(text).ids`. The copy gives the runtime's ids but in two cases
(`tests/unit/test_hf_layout.py` measures them on fuzzed text): a text without a word is [UNK] here and no id there
(`tokenizers` cannot emit a token for nothing), and where Rust's lowercasing (the `Lowercase` normalizer, a newer
Unicode than this Python's) changes a character that `str.lower()` leaves (letters added to Unicode after it).
"""

from __future__ import annotations

import functools
import json
import re
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokenizers import Tokenizer

PAD, UNK, MASK = "[PAD]", "[UNK]", "[MASK]"
SPECIALS = (PAD, UNK, MASK)
PAD_ID, UNK_ID = 0, 1
VOCAB_FILE = "word_vocab.json"
TOKENIZER_JSON = "tokenizer.json"
_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)
# Python's lower() of a capital sigma at a word's end is the final sigma (Unicode's Final_Sigma context); the
# `Lowercase` normalizer maps each character alone, so a Replace before it does the same.
_FINAL_SIGMA = r"(?<=\p{Cased}\p{Case_Ignorable}*)\x{03A3}(?!\p{Case_Ignorable}*\p{Cased})"


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
        """Write word_vocab.json (returned: what `load` and the runtime read) and its `tokenizers` copy, tokenizer.json."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / VOCAB_FILE
        payload = {"type": "word", "lowercase": self.lowercase, "max_length": self.max_length, "vocab": self.vocab}
        path.write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")
        self.as_tokenizers().save(str(directory / TOKENIZER_JSON), pretty=True)
        return path

    def as_tokenizers(self) -> Tokenizer:
        """This tokenizer as a `tokenizers` WordLevel tokenizer: [MASK] matched whole before anything else (as
        `split` does), lowercasing (with the final sigma), the same split into words and punctuation marks, unknown
        words [UNK], truncation at max_length."""
        from tokenizers import (
            AddedToken,
            Regex,
            Tokenizer,
            models,
            normalizers,
            pre_tokenizers,
        )

        tokenizer = Tokenizer(models.WordLevel(vocab=dict(self.index), unk_token=UNK))
        if self.lowercase:
            tokenizer.normalizer = normalizers.Sequence([normalizers.Replace(Regex(_FINAL_SIGMA), "\u03c2"), normalizers.Lowercase()])
        # The pattern's matches are the tokens; what lies between them (whitespace) is dropped.
        tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(_python_token_pattern()), behavior="removed", invert=True)
        tokenizer.add_special_tokens([AddedToken(MASK, normalized=False, special=True)])
        tokenizer.enable_truncation(self.max_length)
        return tokenizer

    @classmethod
    def load(cls, directory: Path) -> WordTokenizer:
        """The vocabulary `save` wrote in `directory`; a file that is not one is a BundleError naming it."""
        from edgekd.errors import BundleError

        path = directory / VOCAB_FILE
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BundleError(f"{path}: missing; the BiLSTM's word vocabulary is written by `edgekd distill`") from None
        except OSError as exc:
            raise BundleError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
        except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, nested past the recursion limit
            raise BundleError(f"{path}: not a word vocabulary, not valid UTF-8 JSON ({str(exc)[:200]}); re-create the bundle "
                              "with `edgekd distill`") from None
        problem = _payload_problem(payload)
        if problem:
            raise BundleError(f"{path}: not a word vocabulary: {problem}; re-create the bundle with `edgekd distill`")
        return cls(payload["vocab"], lowercase=payload["lowercase"], max_length=payload["max_length"])


@functools.cache
def _python_token_pattern() -> str:
    """`_TOKEN` for the `tokenizers` library's regex engine (Oniguruma), with Python's own classes spelt out: its
    `\\w` and `\\s` follow another Unicode version than this Python's (and `\\w` there takes combining marks)."""

    def ranges(pattern: str) -> str:
        spans = []
        for segment in (range(0xD800), range(0xE000, sys.maxunicode + 1)):  # no surrogates: a str holds none
            text = "".join(map(chr, segment))
            spans += [(segment.start + m.start(), segment.start + m.end() - 1) for m in re.finditer(pattern, text)]
        return "".join(f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in spans)

    word, space = ranges(r"\w+"), ranges(r"\s+")
    return f"[{word}]+|[^{word}{space}]"


def _payload_problem(payload: object) -> str | None:
    """What `save`'s JSON would have and this lacks, or None."""
    if not isinstance(payload, dict):
        return f"expected a JSON object with vocab, lowercase and max_length, found {type(payload).__name__}"
    missing = [key for key in ("vocab", "lowercase", "max_length") if key not in payload]
    if missing:
        return f"{', '.join(missing)} missing (it has {sorted(payload)[:10]})"
    vocab, lowercase, max_length = payload["vocab"], payload["lowercase"], payload["max_length"]
    if not isinstance(vocab, list) or not all(isinstance(word, str) for word in vocab):
        return "vocab is not a list of strings"
    if vocab[: len(SPECIALS)] != list(SPECIALS):
        return f"vocab starts with {vocab[: len(SPECIALS)]!r:.200}, not {list(SPECIALS)}"
    if len(set(vocab)) != len(vocab):
        return f"vocab has {len(vocab) - len(set(vocab))} duplicate word(s); each word has one id"
    if not isinstance(lowercase, bool):
        return f"lowercase is {lowercase!r:.50}, not true or false"
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        return f"max_length is {max_length!r:.50}, not a positive integer"
    return None
