"""Test helpers: generated audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


def tone(freq: float, seconds: float, sr: int, amp: float = 0.3, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(seed)
    return (amp * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def write_wav(path: Path, audio: np.ndarray, sr: int, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, sr, **kw)
    return path


def assert_padded_batch_equals_single_items(model, x, lens, tag) -> None:
    """Every registered model's promise: an item's logits are the same alone and inside a padded
    batch. Three training-mode passes first move batch-norm statistics off their initial values."""
    import torch

    model.train()
    for _ in range(3):
        model(x, lens)
    model.eval()
    with torch.no_grad():
        together = model(x, lens)
        for i, n in enumerate(lens.tolist()):
            alone = model(x[i : i + 1, :n], lens[i : i + 1])
            assert torch.allclose(together[i], alone[0], atol=1e-5), (tag, n)
