"""Labelled items -> WindowSets the trainer can batch, for audio and text alike."""

from __future__ import annotations

import logging
import time
from typing import Any

from attn.errors import InputError
from attn.features.config import TextFeatures

from .config import Recipe

log = logging.getLogger("attn")


def load_sets(recipe: Recipe, splits: dict[str, list], labels: list[str], tokenizer=None):
    """({split: WindowSet}, facts for the summary, tokenizer or None).

    Audio: decode every file (a file that fails is skipped and counted). Text: fit the tokenizer
    on the training texts (unless one is given, e.g. when resuming), encode and cut to max_len.
    """
    if isinstance(recipe.features, TextFeatures):
        return _text_sets(recipe.features, splits, labels, tokenizer)
    return (*_audio_sets(recipe, splits, labels), None)


def _audio_sets(recipe: Recipe, splits, labels):
    from .batching import WindowSet
    from .sources import load_clips

    index = {lab: i for i, lab in enumerate(labels)}
    sets, counts, failed = {}, {}, []
    f = recipe.features
    for split, items in splits.items():
        t0 = time.perf_counter()
        loaded = load_clips(items, recipe.data, f.sample_rate)
        for err in loaded.errors:
            log.warning("skipped: %s", err)
        failed += loaded.errors
        y = [index[it.label] for it in loaded.items]
        sets[split] = WindowSet(loaded.clips, y, f.frame_samples, f.hop_samples)
        counts[split] = len(loaded.items)
        if items:
            log.info("%s: %d clips, %d windows (%.1fs)", split, len(loaded.items), sets[split].num_windows,
                     time.perf_counter() - t0)  # fmt: skip
    if not len(sets["train"]):
        raise InputError(f"data: no training example could be loaded ({failed[0] if failed else 'empty'})")
    return sets, {"clips": counts, "skipped_files": len(failed)}


def _text_sets(f: TextFeatures, splits, labels, tok) -> tuple[dict[str, Any], dict[str, Any], Any]:
    from .batching import WindowSet
    from .text import encode_texts, fit_tokenizer

    index = {lab: i for i, lab in enumerate(labels)}
    if tok is None:
        tok = fit_tokenizer(f, [it.source for it in splits["train"]])
    sets, counts, cut = {}, {}, {}
    max_len = f.tokenizer.max_len
    for split, items in splits.items():
        ids, n_cut = encode_texts(tok, [it.source for it in items], max_len)
        sets[split] = WindowSet(ids, [index[it.label] for it in items], max_len, max_len, truncate=True)
        counts[split], cut[split] = len(items), n_cut
        if items:
            log.info("%s: %d texts%s", split, len(items),
                     f", {n_cut} cut to max_len={max_len} tokens" if n_cut else "")  # fmt: skip
    return sets, {"texts": counts, "truncated": cut, "vocab_size": tok.vocab_size}, tok
