"""Text data: fit the tokenizer on the training split, encode and truncate, keep its state."""

from __future__ import annotations

import logging
import re
from typing import Any

import numpy as np

from attn.errors import ConfigError
from attn.features.config import TextFeatures
from attn.features.tokenizers import cut_to

from ..recipe.config import Recipe

log = logging.getLogger("attn")


def fit_tokenizer(features: TextFeatures, train_texts: list[str]):
    """The tokenizer training builds: fitted on the training texts only."""
    if features.encoder is not None:
        from .encoders import encoder_tokenizer

        tok = encoder_tokenizer(features)
        log.info("tokenizer: the encoder's own, %d tokens in the vocabulary", tok.vocab_size)
        return tok
    from attn.features.tokenizers import make_tokenizer

    tok = make_tokenizer(features.tokenizer).fit(train_texts)
    cfg = features.tokenizer
    if getattr(tok, "trained_vocab_size", cfg.vocab_size) != cfg.vocab_size:
        log.warning("subword vocabulary shrunk to %d pieces: the training texts cannot support %d",
                    tok.trained_vocab_size, cfg.vocab_size)  # fmt: skip
    log.info("tokenizer: %s level, %d tokens in the vocabulary", cfg.level, tok.vocab_size)
    if cfg.level == "word":
        _warn_unspaced(train_texts)
    if cfg.level in ("char", "word") and tok.vocab_size <= 2:  # <pad> and <unk> only
        log.warning("tokenizer: no token occurs min_freq (%d) times in the training texts, so every token is "
                    "<unk> and the model sees only text lengths; lower features.tokenizer.min_freq",
                    cfg.min_freq)  # fmt: skip
    return tok


# Scripts written without spaces between words: Thai, Lao, Khmer, Myanmar; Japanese kana; CJK
# ideographs. A word-level tokenizer splits on spaces and punctuation, so a sentence is one token.
UNSPACED = re.compile(r"[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]{4}")


def _warn_unspaced(texts: list[str]) -> None:
    sample = texts[:2000]
    share = sum(1 for t in sample if UNSPACED.search(t)) / max(1, len(sample))
    if share >= 0.3:
        log.warning("tokenizer: %.0f%% of the training texts are in a script written without spaces (Chinese, "
                    "Japanese, Thai, ...): at level word a run of it is one token; use level: char or subword",
                    100 * share)  # fmt: skip


def encode_texts(tok, texts: list[str], max_len: int) -> tuple[list[np.ndarray], int]:
    """Token id arrays (int64, (T,) or (T, 1 + K) with hashed n-grams), each cut to `max_len`
    tokens, and how many texts were cut."""
    out, cut = [], 0
    for t in texts:
        ids, n = tok.encode_cut(t, max_len)
        cut += n > max_len
        out.append(model_ids(ids, max_len, tok))
    return out, cut


def model_ids(ids: np.ndarray, max_len: int, tok) -> np.ndarray:
    """What the model sees of a text's ids ((T,) or (T, 1 + K)): cut to `max_len` (a pretrained
    encoder's end token kept: `cut_to`); an all-space text becomes one <unk>. Training and
    prediction both go through here."""
    if not len(ids):  # one <unk>; with n-grams, one empty n-gram column (0: none) as any word's rows have
        out = np.zeros((1, *((2,) if ids.ndim == 2 else ())), dtype=np.int64)
        out.flat[0] = 1
        return out
    return cut_to(ids, max_len, tok.end_token)


def tokenizer_state(tok) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header part, tensor part) for the artifact."""
    import torch

    header, blob = tok.state()
    tensors = {"tokenizer_model": torch.frombuffer(bytearray(blob), dtype=torch.uint8)} if blob else {}
    return header, tensors


def tokenizer_from_artifact(recipe: Recipe, header: dict[str, Any], tensors: dict[str, Any]):
    from attn.features.encoder_tokenizer import restore_tokenizer

    assert isinstance(recipe.features, TextFeatures)
    state = header.get("tokenizer")
    if state is None:
        raise ConfigError("text model without tokenizer state")
    blob = tensors.get("tokenizer_model")
    return restore_tokenizer(recipe.features.tokenizer, state, None if blob is None else blob.numpy().tobytes())


def apply_vectors(model, tok, features: TextFeatures) -> dict[str, Any]:
    """Initialise embeddings from `features.tokenizer.vectors`; returns coverage facts."""
    from attn.features.tokenizers import load_vectors

    path = features.tokenizer.vectors
    rows, _ = load_vectors(path, tok, features.embed_dim)
    model.frontend.load_vectors(rows)
    known = tok.vocab_size - 2
    cover = {"vectors": path, "covered": len(rows), "vocabulary": known,
             "coverage": round(len(rows) / known, 4) if known else 0.0}  # fmt: skip
    log.info("word vectors: %d of %d vocabulary tokens initialised (%.1f%%) from %s", len(rows), known,
             100 * cover["coverage"], path)  # fmt: skip
    return cover
