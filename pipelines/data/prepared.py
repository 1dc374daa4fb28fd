"""What training needs before a model exists, as typed objects.

prepare_data(recipe) -> PreparedData   the labelled items of each split, the ordered labels
                                       (cheap: lists files or rows, decodes nothing)
load_datasets(recipe, prepared) -> Datasets
                                       each split as a WindowSet the trainer batches: audio
                                       decoded, text tokenized (the tokenizer fitted on the
                                       training split unless `prepared` carries one)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from attn.errors import ConfigError, InputError
from attn.features.config import TextFeatures

from ..recipe.config import Recipe
from .batching import WindowSet
from .dedupe import warn_cross_split_copies
from .items import label_index
from .sources import SPLITS, Item, collect_labels, list_items, split_items

log = logging.getLogger("attn")


@dataclass(frozen=True)
class PreparedData:
    """The recipe's data before loading: items per split, labels in model order, and (text) the
    tokenizer when one is already fitted (a resumed run's, or an ensemble's first member's)."""

    splits: dict[str, list[Item]]  # "train", "val", "test"
    labels: tuple[str, ...]
    tokenizer: Any = None

    def with_tokenizer(self, tokenizer) -> PreparedData:
        return replace(self, tokenizer=tokenizer)


@dataclass(frozen=True)
class Datasets:
    """The splits as WindowSets, the labels their targets index, the tokenizer (text) and facts
    for the run summary (`info`: examples per split, skipped files or cut texts, ...)."""

    train: WindowSet
    val: WindowSet
    test: WindowSet
    labels: tuple[str, ...]
    info: dict[str, Any]
    tokenizer: Any = None
    # The items each split's WindowSet holds, in its order (audio: the files that decoded), so
    # the report can name the examples training scored without listing or decoding them again.
    items: dict[str, list[Item]] = field(default_factory=dict)

    def split(self, name: str) -> WindowSet:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}")
        return getattr(self, name)

    @property
    def eval_split(self) -> str | None:
        """Where final metrics are reported: the test split, else validation, else nowhere."""
        return "test" if len(self.test) else ("val" if len(self.val) else None)


def prepare_data(recipe: Recipe) -> PreparedData:
    """List and split the recipe's items and collect the labels; recipe and data errors surface
    here, before any run directory exists."""
    if recipe.train.pretrain_epochs:
        if recipe.modality != "text":
            raise ConfigError("train.pretrain_epochs is for text models (masked-token pretraining)")
        if not recipe.model.family.token_outputs:
            raise ConfigError(f"train.pretrain_epochs needs per-token outputs; model {recipe.model.name!r} has none")
    splits = split_items(list_items(recipe.data, recipe.modality), recipe.data)
    warn_cross_split_copies(splits, recipe.modality)
    labels = collect_labels(splits)
    if len(labels) < 2:
        raise InputError(f"data: need at least 2 classes to train, found {len(labels)} ({', '.join(labels)})")
    return PreparedData(splits, tuple(labels))


def load_datasets(recipe: Recipe, prepared: PreparedData) -> Datasets:
    """Audio: decode every file (a file that fails is skipped and counted). Text: fit the
    tokenizer on the training texts (unless `prepared` has one), encode and cut to max_len."""
    if isinstance(recipe.features, TextFeatures):
        sets, info, tok = _text_sets(recipe.features, prepared)
        items = prepared.splits
    else:
        (sets, info, items), tok = _audio_sets(recipe, prepared), None
    return Datasets(sets["train"], sets["val"], sets["test"], prepared.labels, info, tok, items)


def targets(items: list[Item], labels) -> np.ndarray:
    """Training targets: label indices (N,) int64, or with label sets (data.multi_label) multi-hot
    rows (N, K) float32."""
    if any(it.labels is not None for it in items):
        from .labelsets import multi_hot

        return multi_hot([it.labels for it in items], list(labels))
    index = label_index(labels)
    return np.array([index[it.label] for it in items], dtype=np.int64)


def _audio_sets(recipe: Recipe, prepared: PreparedData):
    """(WindowSet per split, facts, the items each holds)."""
    from .clips import load_clips

    sets, counts, failed, kept = {}, {}, [], {}
    f = recipe.features
    for split, items in prepared.splits.items():
        t0 = time.perf_counter()
        loaded = load_clips(items, recipe.data, f.sample_rate)
        for err in loaded.errors:
            log.warning("skipped: %s", err)
        failed += loaded.errors
        y = targets(loaded.items, prepared.labels)
        sets[split] = WindowSet(loaded.clips, y, f.frame_samples, f.hop_samples)
        counts[split], kept[split] = len(loaded.items), loaded.items
        if split == "train":
            _warn_silent(loaded.items, loaded.clips)
        if items:
            log.info("%s: %d clips, %d windows (%.1fs)", split, len(loaded.items), sets[split].num_windows,
                     time.perf_counter() - t0)  # fmt: skip
    if not len(sets["train"]):
        raise InputError(f"data: no training example could be loaded ({failed[0] if failed else 'empty'})")
    y = np.asarray(sets["train"].labels)
    if failed and y.ndim == 1:  # single-label: a class whose every training file was skipped
        lost = [lab for k, lab in enumerate(prepared.labels) if not (y == k).any()]
        if lost:
            log.warning("data: class(es) %s have no training clip left (every file skipped): the model keeps "
                        "them as labels but will never predict them", ", ".join(map(repr, lost)))  # fmt: skip
    return sets, {"clips": counts, "skipped_files": len(failed)}, kept


def _warn_silent(items: list[Item], clips: list[np.ndarray]) -> None:
    """Training clips with nothing in them (all zeros, or stereo channels that cancel in the mono
    mix) teach the model that silence is their label; predict flags such a file, training did not."""
    from attn.features.audio import SILENT_PEAK

    silent = [it for it, c in zip(items, clips, strict=True) if not len(c) or np.abs(c - c.mean()).max() < SILENT_PEAK]
    if silent:
        log.warning("data: %d training clip(s) are silent (nothing above one 16-bit step once any DC offset is "
                    "removed; e.g. %s): each teaches the model that silence is its label", len(silent),
                    silent[0].where or silent[0].source)  # fmt: skip


def _text_sets(f: TextFeatures, prepared: PreparedData) -> tuple[dict[str, WindowSet], dict[str, Any], Any]:
    from .text import encode_texts, fit_tokenizer

    tok = prepared.tokenizer
    if tok is None:
        tok = fit_tokenizer(f, [it.source for it in prepared.splits["train"]])
    sets, counts, cut = {}, {}, {}
    max_len = f.tokenizer.max_len
    for split, items in prepared.splits.items():
        ids, n_cut = encode_texts(tok, [it.source for it in items], max_len)
        sets[split] = WindowSet(ids, targets(items, prepared.labels), max_len, max_len, truncate=True)
        counts[split], cut[split] = len(items), n_cut
        if items:
            log.info("%s: %d texts%s", split, len(items),
                     f", {n_cut} cut to max_len={max_len} tokens" if n_cut else "")  # fmt: skip
    return sets, {"texts": counts, "truncated": cut, "vocab_size": tok.vocab_size}, tok
