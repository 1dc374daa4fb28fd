"""Hashed n-grams for word tokens (fastText's subword information, Bojanowski et al. 2017).

A word w is written "<w>" and cut into its character n-grams of lengths lo..hi; with
`word_ngrams: 2` the pair (previous word, w) is added. Each n-gram string goes to one of
`buckets` shared rows by CRC-32 of its UTF-8 bytes (zlib.crc32: fixed by the standard, unlike
Python's hash(), which is salted per process), so the ids depend on the recipe alone and an
artifact reproduces them exactly. Bucket ids start at 1; 0 pads.

    encode_rows(words, word_ids) -> (T, 1 + K) int64: column 0 the word id, then up to K bucket
    ids (K = the most any word of this text has; shorter rows padded with 0)
"""

from __future__ import annotations

import zlib

import numpy as np

HASH = "crc32"  # stored in the tokenizer state; a model hashed otherwise is refused
MAX_WORD = 256  # characters of a word cut into n-grams; real words are far shorter
_PAIR = "\x1f"  # separates the two words of a word bigram: no n-gram of a single word contains it


def char_ngrams(word: str, lo: int, hi: int) -> list[str]:
    """Character n-grams of "<word>", lengths lo..hi; "<" and ">" alone are not n-grams."""
    w = f"<{word}>"
    return [w[i : i + n] for n in range(lo, hi + 1) for i in range(len(w) - n + 1) if w[i : i + n] not in ("<", ">")]


def bucket(gram: str, buckets: int) -> int:
    """1 + crc32(gram) mod buckets: the same in every process and on every platform."""
    return 1 + zlib.crc32(gram.encode("utf-8")) % buckets


class NgramHasher:
    """Bucket ids of one word's n-grams, cached per word (a corpus repeats its words)."""

    def __init__(self, char_range: tuple[int, int] | None, word_ngrams: int, buckets: int) -> None:
        self.char_range, self.word_ngrams, self.buckets = char_range, word_ngrams, buckets
        self._cache: dict[str, list[int]] = {}

    def word(self, w: str) -> list[int]:
        ids = self._cache.get(w)
        if ids is None:
            # A "word" past MAX_WORD characters (a hash, base64, a run of letters) is hashed by its first
            # MAX_WORD: its n-grams were ~4 per character, 80 million strings for one 20 MB token.
            grams = char_ngrams(w[:MAX_WORD], *self.char_range) if self.char_range else []
            ids = self._cache[w] = [bucket(g, self.buckets) for g in grams]
            if len(self._cache) > 200_000:  # bound memory on endless prediction streams
                self._cache.clear()
        return ids

    def encode_rows(self, words: list[str], word_ids: list[int]) -> np.ndarray:
        """(T, 1 + K) int64 rows for one text's words (see the module docstring)."""
        rows = []
        for t, (w, i) in enumerate(zip(words, word_ids, strict=True)):
            grams = list(self.word(w))
            if self.word_ngrams > 1:
                grams.append(bucket((words[t - 1] if t else "<s>") + _PAIR + w, self.buckets))
            rows.append([i, *grams])
        k = max((len(r) for r in rows), default=1)
        out = np.zeros((len(rows), k), dtype=np.int64)
        for t, r in enumerate(rows):
            out[t, : len(r)] = r
        return out
