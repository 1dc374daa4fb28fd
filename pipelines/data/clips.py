"""Loading audio for a run: decode the items `sources` lists (threads, the optional audio cache,
synthetic clips) and read a background-noise folder for augmentation."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attn.errors import ConfigError, InputError

from ..recipe.config import DataConfig
from .folders import audio_files
from .items import Item

log = logging.getLogger("attn")


@dataclass
class LoadedClips:
    items: list[Item]  # the items that loaded
    clips: list[np.ndarray]  # float32 mono at the recipe's sample rate, one per item
    errors: list[str]  # one message per item that failed


def load_clips(items: list[Item], cfg: DataConfig, sample_rate: int, workers: int | None = None) -> LoadedClips:
    """Decode every item (threads: libsndfile and soxr release the GIL). A file that fails is
    reported in `errors` and left out; the others still load."""
    from attn.features.audio import read_audio

    if cfg.synthetic is not None and all(it.where == "synthetic" for it in items):
        from .synthetic import generate_clip

        kinds = list(cfg.synthetic.classes)
        clips = []
        for it in items:
            kind, idx = it.source.split("/")[1], int(it.source.split("/")[2])
            rng = np.random.default_rng([cfg.synthetic.seed, kinds.index(kind), idx])
            clips.append(generate_clip(kind, rng, cfg.synthetic.seconds, sample_rate))
        return LoadedClips(list(items), clips, [])

    read = read_audio
    cache = None
    if cfg.cache_dir:
        from .audio_cache import AudioCache

        cache = AudioCache(cfg.cache_dir)
        read = cache.read

    def one(it: Item):
        try:
            return read(it.source, sample_rate), None
        except InputError as e:
            return None, str(e)

    workers = workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(one, items))
    if cache is not None and items:
        log.info("audio cache %s: %d read, %d decoded, %d stored", cache.root, cache.hits, cache.misses, cache.stored)
    kept, clips, errors = [], [], []
    for it, (clip, err) in zip(items, results, strict=True):
        if err is not None:
            errors.append(err)
        else:
            kept.append(it)
            clips.append(clip)
    return LoadedClips(kept, clips, errors)


def load_background(folder: str, extensions: tuple[str, ...], sample_rate: int, length: int,
                    max_segments: int = 2000) -> np.ndarray:  # fmt: skip
    """`train.augment.background`: every audio file under `folder` (recursively) as segments of
    `length` samples at `sample_rate`, (M, length) float32. A long recording gives consecutive
    segments (at most `max_segments` in all, taken evenly); a short one is repeated to fill one.
    A file that cannot be read is skipped with a warning; a folder with nothing usable is a
    recipe error."""
    from attn.features.audio import read_audio

    base = Path(folder)
    if not base.is_dir():
        raise ConfigError(f"train.augment.background: {folder}: folder not found")
    segments: list[np.ndarray] = []
    for f in audio_files(base, extensions):
        try:
            clip = read_audio(str(f), sample_rate)
        except InputError as e:
            log.warning("background skipped: %s", e)
            continue
        if len(clip) < length:
            clip = np.tile(clip, -(-length // len(clip)))
        segments += [clip[i : i + length] for i in range(0, len(clip) - length + 1, length)]
    if not segments:
        exts = ", ".join(sorted({e.lower() for e in extensions}))
        raise ConfigError(f"train.augment.background: {folder}: no readable audio ({exts})")
    if len(segments) > max_segments:
        keep = np.linspace(0, len(segments) - 1, max_segments).round().astype(int)
        segments = [segments[i] for i in keep]
    log.info("background: %d segments of %.2fs from %s", len(segments), length / sample_rate, folder)
    return np.stack(segments).astype(np.float32)
