"""On-disk cache of decoded audio (`data.cache_dir`), for runs that read the same files again.

Decoding FLAC/MP3 and resampling cost 4-6x a plain WAV read; a training run decodes its whole
dataset before the first step, and a sweep of runs decodes it again each time. The cache keeps
each file's float32 mono signal at the recipe's sample rate as a `.npy` file, keyed by a hash of
the file's bytes and of everything that shapes the decoded signal (sample rate, decoder
version), so an edited file or another sample rate gets a new entry and a stale one is never
read. Features are not cached: they run inside the model, from these exact samples, so cached
and uncached runs see the same numbers.

Entries are written to a temporary name and renamed (a crash never leaves a torn entry; a
damaged one is decoded afresh and replaced). Nothing is ever evicted: delete the folder to
reclaim the space.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from pathlib import Path

import numpy as np

log = logging.getLogger("attn")

# Bump when decoding changes what a file decodes to (mono mix, resampler, its quality).
DECODER_VERSION = "soundfile+soxr-hq/1"


def cache_key(path: str, sample_rate: int) -> str:
    """Hex digest of the file's bytes, the sample rate and the decoder version."""
    h = hashlib.blake2b(digest_size=20)
    h.update(f"{DECODER_VERSION}|{sample_rate}|".encode())
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


_UNWRITABLE: set[str] = set()  # cache folders this process found it cannot write to


class AudioCache:
    """`read(path, sample_rate)`: the decoded signal, from the cache when present."""

    def __init__(self, root: str) -> None:
        self.root = Path(os.path.expanduser(root))
        self.hits = self.misses = self.stored = 0
        self._writable = str(self.root) not in _UNWRITABLE  # said once a process, not once a split
        self._lock = threading.Lock()  # decoding threads may fail to write at the same moment

    def entry(self, path: str, sample_rate: int) -> Path:
        key = cache_key(path, sample_rate)
        return self.root / key[:2] / f"{key}.npy"

    def read(self, path: str, sample_rate: int) -> np.ndarray:
        from attn.features.audio import read_audio

        try:
            entry = self.entry(path, sample_rate)
        except OSError:
            return read_audio(path, sample_rate)  # missing or unreadable: let the decoder say why
        if entry.is_file():
            try:
                clip = np.load(entry, allow_pickle=False)
                if clip.dtype == np.float32 and clip.ndim == 1 and clip.size:
                    self.hits += 1
                    return clip
                raise ValueError(f"holds {clip.dtype} {clip.shape}, not float32 samples")
            except (OSError, ValueError, EOFError) as e:  # damaged entry: decode again and replace it
                log.warning("audio cache: %s is damaged (%s); decoding %s again", entry, e, path)
        clip = read_audio(path, sample_rate)
        self.misses += 1
        self._store(entry, clip)
        return clip

    def _store(self, entry: Path, clip: np.ndarray) -> None:
        if not self._writable:
            return
        tmp = entry.with_name(f"{entry.stem}.{os.getpid()}-{threading.get_ident()}.tmp.npy")
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                np.save(f, clip, allow_pickle=False)
            os.replace(tmp, entry)
            with self._lock:
                self.stored += 1
        except OSError as e:
            # A full or read-only cache only costs speed: warn once, go on uncached.
            with self._lock:
                first, self._writable = self._writable, False
                _UNWRITABLE.add(str(self.root))
            if first:
                log.warning("audio cache: cannot write to %s (%s); continuing without caching", self.root, e)
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
