"""Sample levels, pure numpy (no torch: an exported model predicts without it).

- `check_samples`: NaN, infinity and samples over a million times full scale are no recording.
- `window_level_db`, `heard_windows`: a recording's quiet windows do not vote in its score.
"""

from __future__ import annotations

import numpy as np

from attn.errors import InputError

# Samples over a million times full scale are no recording (a float file with broken values):
# their powers overflow float32 in the STFT, and the model's scores came out NaN ("score": NaN,
# invalid JSON) or confidently wrong (1e10: a "2" at 0.98). NaN and infinity are refused alike.
MAX_SAMPLE = 1e6


def check_samples(x: np.ndarray, name: str) -> None:
    """An InputError naming `name` if `x` holds NaN, infinity or samples beyond MAX_SAMPLE."""
    if not np.isfinite(x).all():
        raise InputError(f"{name}: contains NaN or infinite sample values")
    peak = float(np.abs(x).max()) if x.size else 0.0
    if peak > MAX_SAMPLE:
        raise InputError(f"{name}: holds samples of {peak:.3g}, over a million times full scale (1): not audio "
                         "as recorded (a float file with broken values?)")  # fmt: skip


# A recording's quiet windows do not vote. A model names some label for every window, silence
# too (a digits model called digital silence "6" at 0.41), so a short sound padded with silence
# was outvoted by it: one 0.99 window of speech and five of silence averaged to the silence's
# label (FSDD test clips with 2 s of silence before them: 49% right; 5 s: 12%). A window more than
# QUIET_DB below its recording's loudest takes no part in the recording's score, unless every
# window is that quiet. Music and continuous sound rarely fall 20 dB within a recording; a
# recording of one window (most clips) is never affected.
QUIET_DB = 20.0


def window_level_db(x: np.ndarray) -> float:
    """Level (dB, RMS less the mean: a DC offset is no sound) of a window's valid samples (n,)."""
    x = np.asarray(x, dtype=np.float64)
    if not x.size:
        return -120.0
    x = x - x.mean()
    return float(10 * np.log10(np.mean(x * x) + 1e-12))


def heard_windows(levels_db: np.ndarray, clip: np.ndarray, n_clips: int) -> np.ndarray:
    """(W,) True for the windows that take part in their clip's score: those within `QUIET_DB`
    of the clip's loudest window. `levels_db` (W,) each window's `window_level_db`."""
    levels_db = np.asarray(levels_db, dtype=np.float64)
    loudest = np.full(n_clips, -np.inf)
    np.maximum.at(loudest, clip, levels_db)
    return levels_db >= loudest[clip] - QUIET_DB
