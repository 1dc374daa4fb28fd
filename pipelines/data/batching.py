"""Clips -> windows -> padded batches. A window is the unit the model sees.

Audio clips are cut into `frame`-sample windows every `hop` samples (the last padded); text
sequences are truncated to `frame` tokens. Batches are padded to their longest window and carry
every window's valid length, so padding never changes a prediction.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from attn.features.functional import window_spans


@dataclass(frozen=True)
class Batch:
    x: torch.Tensor  # (B, N) float32 samples, (B, N) int64 token ids, or (B, N, 1 + K) ids + n-gram ids
    lengths: torch.Tensor  # (B,) int64 valid steps
    y: torch.Tensor  # (B,) int64 label index (-1 when unknown); multi-label: (B, K) float32 multi-hot
    clip: torch.Tensor  # (B,) int64 index of the clip each window came from

    def to(self, device: torch.device, non_blocking: bool = False) -> Batch:
        return Batch(*(t.to(device, non_blocking=non_blocking) for t in (self.x, self.lengths, self.y, self.clip)))

    def pin_memory(self) -> Batch:
        return Batch(*(t.pin_memory() for t in (self.x, self.lengths, self.y, self.clip)))


class WindowSet:
    """Clips (1-D arrays) with labels, viewed as windows.

    Args:
        clips: 1-D numpy arrays (float32 audio, or int64 token ids).
        labels: (n_clips,) label indices, -1 if unknown; multi-label: (n_clips, K) float32 multi-hot.
        frame, hop: window size and step in samples (or tokens).
        truncate: text mode: one window per clip, its first `frame` steps.
    """

    def __init__(self, clips: list[np.ndarray], labels: np.ndarray, frame: int, hop: int, truncate: bool = False):
        self.clips = clips
        labels = np.asarray(labels)
        self.labels = labels.astype(np.float32 if labels.ndim == 2 else np.int64)
        self.frame, self.hop, self.truncate = frame, hop, truncate
        if truncate:
            self.spans = [[(0, min(len(c), frame))] for c in clips]
        else:
            self.spans = [window_spans(len(c), frame, hop) for c in clips]
        self.all_windows = np.array(
            [(ci, s, n) for ci, spans in enumerate(self.spans) for s, n in spans], dtype=np.int64
        ).reshape(-1, 3)

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def multi_label(self) -> bool:
        return self.labels.ndim == 2

    def merged(self, other: WindowSet) -> WindowSet:
        """This set's clips followed by `other`'s (train + val for a refit), framed alike."""
        return WindowSet(self.clips + other.clips, np.concatenate([self.labels, other.labels]), self.frame, self.hop,
                         self.truncate)  # fmt: skip

    @functools.cached_property
    def heard(self) -> np.ndarray | None:
        """(W,) bool: the audio windows that take part in their clip's score (`inference.heard_windows`:
        a clip's quiet windows do not vote); None for text (one window a clip)."""
        if self.truncate or not self.clips or self.clips[0].dtype.kind != "f":
            return None
        from attn.features.levels import heard_windows, window_level_db

        levels = np.array([window_level_db(self.clips[ci][s : s + n]) for ci, s, n in self.all_windows])
        return heard_windows(levels, self.all_windows[:, 0], len(self.clips))

    @property
    def num_windows(self) -> int:
        return len(self.all_windows)

    def random_windows(self, gen: np.random.Generator) -> np.ndarray:
        """One window per clip at a random offset (any sample, not only multiples of hop)."""
        out = np.empty((len(self.clips), 3), dtype=np.int64)
        for ci, c in enumerate(self.clips):
            n = len(c)
            start = int(gen.integers(0, n - self.frame + 1)) if n > self.frame and not self.truncate else 0
            out[ci] = (ci, start, min(self.frame, n - start))
        return out

    def batches(self, windows: np.ndarray, batch_size: int, order: np.ndarray | None = None):
        """Yield `Batch`es over rows of `windows` ((ci, start, length) triples) in `order`."""
        idx = np.arange(len(windows)) if order is None else order
        for b in range(0, len(idx), batch_size):
            yield self.collate(windows[idx[b : b + batch_size]])

    def collate(self, rows: np.ndarray) -> Batch:
        x = pad_rows([self.clips[ci][s : s + n] for ci, s, n in rows])
        return Batch(
            torch.from_numpy(x),
            torch.from_numpy(rows[:, 2].copy()),
            torch.from_numpy(self.labels[rows[:, 0]]),
            torch.from_numpy(rows[:, 0].copy()),
        )


def pad_rows(parts: list[np.ndarray]) -> np.ndarray:
    """Zero-padded stack: (n,) arrays -> (B, N); (n, k) arrays (token ids with n-gram ids) ->
    (B, N, K), N and K the largest n and k. Zero is <pad> and the padding n-gram bucket."""
    width = max(len(p) for p in parts)
    extra = (max(p.shape[1] for p in parts),) if parts[0].ndim == 2 else ()
    x = np.zeros((len(parts), width, *extra), dtype=parts[0].dtype)
    for r, p in enumerate(parts):
        x[(r, slice(0, len(p)), *(slice(0, s) for s in p.shape[1:]))] = p
    return x


def length_bucketed(order: np.ndarray, lengths: np.ndarray, batch_size: int, gen: np.random.Generator,
                    pool: int = 50) -> np.ndarray:  # fmt: skip
    """`order` regrouped so each batch holds examples of similar length (less padding, the same
    examples per epoch): runs of `pool` batches are sorted by length, cut into batches, and the
    batches shuffled. (B, T) attention and convolutions cost in proportion to the longest row."""
    chunk = batch_size * pool
    batches = []
    for c in range(0, len(order), chunk):
        part = order[c : c + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[b : b + batch_size] for b in range(0, len(part), batch_size)]
    full = [b for b in batches if len(b) == batch_size]
    rest = [b for b in batches if len(b) < batch_size]  # last: the caller cuts batches every batch_size
    return np.concatenate([full[i] for i in gen.permutation(len(full))] + rest) if batches else order
