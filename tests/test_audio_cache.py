"""The on-disk audio cache: same samples as decoding, invalidated by content and sample rate,
robust to damaged entries and to a cache it cannot write."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from attn.features.config import AudioFeatures
from attn.features.transforms import LogMel
from attn.pipelines.data import clips as clips_mod
from attn.pipelines.data import sources as data_mod
from attn.pipelines.data.audio_cache import AudioCache
from attn.pipelines.recipe.load import load_recipe
from helpers import tone, write_wav


@pytest.fixture
def folder(tmp_path):
    # FLAC at 11.025 kHz, read at 8 kHz: the decode + resample the cache exists to skip.
    for i, (label, f) in enumerate([("low", 220.0), ("low", 247.0), ("high", 1760.0), ("high", 1975.0)]):
        write_wav(tmp_path / "audio" / label / f"{i}.flac", tone(f, 0.7 + 0.1 * i, 11025, seed=i), 11025)
    return tmp_path / "audio"


def _recipe(tmp_path, folder, cache):
    p = tmp_path / "r.yaml"
    p.write_text(f"data: {{root: {folder}, cache_dir: {cache}}}\nfeatures: {{sample_rate: 8000}}\n")
    return load_recipe(p).data


def _load(cfg):
    items = data_mod.list_items(cfg, "audio")
    return items, clips_mod.load_clips(items, cfg, 8000)


def test_cached_clips_and_features_equal_decoded_ones(tmp_path, folder, monkeypatch):
    cfg = _recipe(tmp_path, folder, tmp_path / "cache")
    items, fresh = _load(cfg.model_copy(update={"cache_dir": None}))
    _, first = _load(cfg)  # decodes and stores
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == len(items) == 4

    # The second run must not decode at all.
    import attn.features.audio as audio

    monkeypatch.setattr(audio, "read_audio", lambda *a: pytest.fail("decoded although cached"))
    _, second = _load(cfg)
    logmel = LogMel.from_config(AudioFeatures(sample_rate=8000, n_fft=256, hop_length=80, n_mels=32))
    for a, b, c in zip(fresh.clips, first.clips, second.clips, strict=True):
        assert a.dtype == c.dtype == np.float32
        assert np.array_equal(a, b) and np.array_equal(a, c)
        assert torch.equal(logmel(torch.from_numpy(a)), logmel(torch.from_numpy(c)))


def test_edited_file_or_other_sample_rate_gets_a_new_entry(tmp_path, folder):
    cache = AudioCache(str(tmp_path / "cache"))
    f = str(next(folder.rglob("*.flac")))
    old = cache.read(f, 8000)
    assert cache.read(f, 16000).size > old.size  # another rate: its own entry, not the 8 kHz one
    write_wav(Path(f), tone(330.0, 0.5, 11025), 11025)  # the same file, edited
    new = cache.read(f, 8000)
    assert new.size != old.size
    assert (cache.hits, cache.misses) == (0, 3)
    assert np.array_equal(cache.read(f, 8000), new) and cache.hits == 1


def test_damaged_entry_is_decoded_again_and_replaced(tmp_path, folder):
    cache = AudioCache(str(tmp_path / "cache"))
    f = str(next(folder.rglob("*.flac")))
    good = cache.read(f, 8000)
    entry = cache.entry(f, 8000)
    entry.write_bytes(entry.read_bytes()[:40])  # torn write from some other tool
    assert np.array_equal(cache.read(f, 8000), good)
    assert np.array_equal(np.load(entry), good)


def test_unwritable_cache_costs_speed_not_the_run(tmp_path, folder, caplog):
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    cfg = _recipe(tmp_path, folder, blocker)
    items, loaded = _load(cfg)
    assert len(loaded.clips) == len(items) and not loaded.errors
    _load(cfg)  # the next split: not said again (it was, once per split), and nothing is said to be stored
    assert sum("cannot write" in r.message for r in caplog.records) == 1
    assert not any("decoded and stored" in r.message or ("stored" in r.message and not r.message.endswith(" 0 stored"))
                   for r in caplog.records if r.message.startswith("audio cache ")), caplog.text  # fmt: skip


def test_bad_file_is_reported_the_same_with_a_cache(tmp_path, folder):
    (folder / "low" / "bad.wav").write_bytes(b"not audio at all")
    cfg = _recipe(tmp_path, folder, tmp_path / "cache")
    _, loaded = _load(cfg)
    assert len(loaded.clips) == 4
    assert len(loaded.errors) == 1 and "bad.wav" in loaded.errors[0] and "not a readable audio file" in loaded.errors[0]
