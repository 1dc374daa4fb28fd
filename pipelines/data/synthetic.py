"""The built-in synthetic dataset: labelled test signals generated from a seed, no files needed.

Classes: sine, square, sawtooth, noise_burst, chirp, am_tone; each clip has a random pitch,
level, phase and background noise, so telling them apart takes a real (if small) model.
"""

from __future__ import annotations

import numpy as np

from ..recipe.config import SYNTH_LOWEST_PITCH


def generate_clip(kind: str, rng: np.random.Generator, seconds: float, sr: int) -> np.ndarray:
    """One clip of class `kind`, float32 (samples,), peak well below 1."""
    n = max(1, round(seconds * sr))
    t = np.arange(n) / sr
    f0 = float(np.exp(rng.uniform(np.log(SYNTH_LOWEST_PITCH), np.log(min(1760.0, sr / 8)))))  # recipes keep sr >= 880
    phase = rng.uniform(0, 2 * np.pi)
    cycles = f0 * t + phase / (2 * np.pi)
    if kind == "sine":
        x = np.sin(2 * np.pi * cycles)
    elif kind == "square":
        x = np.sign(np.sin(2 * np.pi * cycles)) * 0.7
    elif kind == "sawtooth":
        x = (2.0 * (cycles % 1.0) - 1.0) * 0.8
    elif kind == "noise_burst":
        x = np.zeros(n)
        for _ in range(int(rng.integers(1, 5))):
            width = int(rng.uniform(0.05, 0.25) * sr)
            start = int(rng.integers(0, max(1, n - width)))
            seg = rng.standard_normal(min(width, n - start))
            x[start : start + seg.size] += seg * np.hanning(seg.size) * 0.5
    elif kind == "chirp":
        f1 = float(np.exp(rng.uniform(np.log(110.0), np.log(sr / 4))))
        if abs(np.log(f1 / f0)) < 0.7:  # make the sweep audible: at least ~2x in frequency
            f1 = f0 * (4.0 if f1 >= f0 else 0.25)
            f1 = float(np.clip(f1, 60.0, sr / 2.5))
        k = np.log(f1 / f0) / seconds
        x = np.sin(phase + 2 * np.pi * f0 * (np.expm1(k * t) / k if abs(k) > 1e-9 else t))
    elif kind == "am_tone":
        rate = rng.uniform(3.0, 12.0)
        depth = rng.uniform(0.6, 1.0)
        x = np.sin(2 * np.pi * cycles) * (1 - depth * 0.5 * (1 + np.sin(2 * np.pi * rate * t)))
    else:
        raise ValueError(f"unknown synthetic class {kind!r}")
    level = 10 ** (rng.uniform(-30.0, -3.0) / 20)
    x = x / max(1e-9, float(np.abs(x).max())) * level
    snr_db = rng.uniform(10.0, 40.0)
    noise = rng.standard_normal(n) * level * 10 ** (-snr_db / 20)
    return (x + noise).astype(np.float32)
