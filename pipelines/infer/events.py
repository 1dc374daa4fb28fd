"""Window score curves -> sound events: smoothing, per-class hysteresis, minimum duration and gap,
padding. Pure numpy, no model and no I/O, so `attn predict --events` (files) and `attn listen
--events` (streams) turn scores into events the same way.

The stable entry point is `detect_events(scores, hop, labels, settings, start=0.0, duration=None,
levels_db=None)`:

- `scores` (T, K): one row per window, in time order, one column per label (probabilities, or
  any score where higher means "more present"); windows are `hop` seconds apart and row t is the
  score *at* time `start + t * hop` (a window's centre: pass `start = frame_seconds / 2`).
- Row t stands for the interval [t_c - hop/2, t_c + hop/2) around its time t_c; an event over
  rows i..j (inclusive) spans [time(i) - hop/2, time(j) + hop/2], then is padded by
  `settings.pad` on each side (negative shrinks; an event never shrinks below one hop), and is
  clipped to [0, duration].

Per label, independently (labels can overlap in time):
0. with `settings.gate_db` and `levels_db` given: `gate_scores` (rows quieter than the
   recording's noise floor + gate_db score 0: "nothing here" for a softmax model),
1. smooth the curve over `smooth_seconds` (a centred median or mean filter, `smooth` = "median" or
   "mean"; 0 or one row: no smoothing),
2. hysteresis: an event opens on a row whose score reaches `on` and stays open while the score
   stays at or above `off` (`off` <= `on`),
3. events of one label separated by a gap shorter than `min_gap` seconds are merged, then events
   shorter than `min_duration` seconds are dropped (gaps first: a word broken by a dip is one
   event, not two short ones that vanish); lengths are measured before padding.
4. `score` of an event is the maximum smoothed score inside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

SMOOTHERS = ("median", "mean")
CLASSIFY = ("windows", "segments")


@dataclass(frozen=True)
class EventSettings:
    """How score curves become events; seconds throughout. `attn train` tunes them on annotated
    validation recordings (infer/events_predict.py) and stores them in the model."""

    smooth: str = "median"
    smooth_seconds: float = 0.3
    on: float = 0.5  # a label's event opens where its smoothed score reaches this
    off: float = 0.3  # ... and closes where it falls below this
    min_duration: float = 0.1
    min_gap: float = 0.1
    pad: float = 0.0  # added to both ends (negative: trimmed)
    gate_db: float | None = None  # "nothing here": windows whose centre is not this many dB above the floor score 0
    # "windows": per-label hysteresis on the window scores; "segments": where anything is (the gated
    # scores' sum, `activity_spans`), each span then labelled by the model as one clip (events_predict.py)
    classify: str = "windows"
    margin: float = 0.0  # "segments": seconds of audio added to each side of a span before it is classified

    def __post_init__(self) -> None:
        numbers = ("smooth_seconds", "on", "off", "min_duration", "min_gap", "pad", "margin")
        for name in (*numbers, *(("gate_db",) if self.gate_db is not None else ())):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"events {name} must be a number, not {value!r}")
        if self.smooth not in SMOOTHERS:
            raise ValueError(f"events smooth must be one of {', '.join(SMOOTHERS)}, not {self.smooth!r}")
        if not 0 <= self.off <= self.on <= 1:
            raise ValueError(f"events thresholds are scores: they need 0 <= off <= on <= 1 (got on={self.on}, "
                             f"off={self.off})")  # fmt: skip
        if self.classify not in CLASSIFY:
            raise ValueError(f"events classify must be one of {', '.join(CLASSIFY)}, not {self.classify!r}")
        if self.classify == "segments" and self.gate_db is None:
            raise ValueError("events classify: segments needs gate_db (what marks where something is); without "
                             "the gate, set classify=windows too")  # fmt: skip
        if self.gate_db is not None and self.gate_db < 0:
            raise ValueError("events gate_db must be >= 0 (dB above the recording's noise floor), or None")
        if self.smooth_seconds < 0 or self.min_duration < 0 or self.min_gap < 0:
            raise ValueError("events smooth_seconds, min_duration and min_gap must be >= 0")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> EventSettings:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass(frozen=True)
class Event:
    label: str
    start: float
    end: float
    score: float

    def record(self, name: str) -> dict:
        """The output record: {input, label, start, end, score}, times to the millisecond."""
        return {"input": name, "label": self.label, "start": round(self.start, 3), "end": round(self.end, 3),
                "score": round(self.score, 4)}  # fmt: skip


TIME_EPS = 1e-9  # seconds: a length or gap equal to a setting up to float rounding counts as equal
FLOOR_QUANTILE = 0.1  # the noise floor: the level that 10% of a recording's window centres stay under


def centre_level_db(window: np.ndarray, length: int, hop: int) -> float:
    """Level (dBFS RMS) of the `hop` samples around the centre of a window's `length` valid samples
    (a (frame,) or (frame, channels) array): what the window's time point sounds like, where the
    window itself (longer) also hears its neighbours."""
    mid = length // 2
    return _level_db(window[max(0, mid - hop // 2) : mid + (hop + 1) // 2])


def _level_db(x: np.ndarray) -> float:
    """Level (dB) of samples (n,) or (n, channels) less their mean: a recording chain's DC offset is
    no sound (an offset of 0.15 put every row at -16.5 dBFS or more, the noise floor with them, and
    the digits hardly rose above it: fsdd_scenes test event F1 with that offset 0.03, now 0.94).
    The mean of a hop (0.1 s) is below 10 Hz, so what is heard keeps its level (without an offset,
    the fsdd_scenes settings and figures came out the same)."""
    x = np.asarray(x, dtype=np.float64)
    if not x.size:
        return -120.0
    x = x - x.mean(axis=0)
    return float(10 * np.log10(np.mean(x * x) + 1e-12))


# The recording's edges. Rows stand at window centres, so the first half window (and the part
# after the last centre) has no row of its own: a sound there was placed at the first centre,
# and with the gate (which hears only a row's centre) it was not found at all. Edge rows fill
# those stretches, one a hop apart: each takes the nearest window's scores (the model's best word
# on that time) and its own level, measured at its own time, so the gate says where in the edge
# something is. Files (events_predict.score_curves) and streams (listen.py) add the same rows.


def lead_rows(frame: int, hop: int) -> int:
    """How many edge rows precede the first window's centre (`frame // 2` samples in; sizes in
    samples): enough for the earliest one's hop to reach the recording's start."""
    return max(0, -(-(frame // 2 - hop // 2) // hop))


def edge_levels(window: np.ndarray, length: int, frame: int, hop: int, side: str) -> list[float]:
    """The levels (dB) of the edge rows of the recording's first (`side` "lead": `lead_rows` of
    them, earliest first) or last window ("tail": as many as start before its `length` valid
    samples end), measured over each row's hop of `window` (frame,)."""
    mid = frame // 2
    if side == "lead":
        centres = [mid - m * hop for m in range(lead_rows(frame, hop), 0, -1)]
    else:
        centres = list(range(mid + hop, length + hop // 2, hop))
    return [_level_db(window[max(0, c - hop // 2) : max(0, min(length, c + (hop + 1) // 2))]) for c in centres]


def with_edges(scores: np.ndarray, levels_db: np.ndarray, lead: list[float],
               tail: list[float]) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Scores (T, K) and levels (T,) with the edge rows around them: (L + T + R, K) and
    (L + T + R,), the first row's scores repeated L times before, the last row's R times after."""
    scores = np.asarray(scores, dtype=np.float64)
    rows = [np.repeat(scores[:1], len(lead), axis=0), scores, np.repeat(scores[-1:], len(tail), axis=0)]
    return np.concatenate(rows), np.concatenate([lead, np.asarray(levels_db, dtype=np.float64), tail])


# Digital silence (zero padding, a muted digital input) is no noise floor: once it was a tenth of
# a recording, the floor sat on it, the whole background rose above floor + gate_db and one event
# ran from there to the end (fsdd_scenes test recordings with 5 s of zeros first: event F1 0.93
# -> 0.0). Levels under SILENCE_DB are left out of the floor. A quiet stretch that is not silent
# (-80 dBFS noise) still is taken for it: the background cannot be told from a quiet stretch by
# level alone (a recording that is mostly sound has its background far under its median).
SILENCE_DB = -100.0


def noise_floor(levels_db) -> float:
    """The noise floor (dB) of window-centre levels: the `FLOOR_QUANTILE` of those above digital
    silence (`SILENCE_DB`), or of all when none is."""
    levels = np.asarray(levels_db, dtype=np.float64)
    sounding = levels[levels > SILENCE_DB]
    return float(np.quantile(sounding if sounding.size else levels, FLOOR_QUANTILE))


def gate_scores(scores: np.ndarray, levels_db: np.ndarray, gate_db: float | None,
                floor: float | None = None) -> np.ndarray:  # fmt: skip
    """The "nothing here" rule for a softmax model (which always names some label): rows (T, K)
    whose centre level (T,) is under the noise floor (default: the whole recording's,
    `noise_floor(levels_db)`; a stream passes its running one) plus `gate_db` score 0 for every
    label. None: scores unchanged."""
    scores = np.asarray(scores, dtype=np.float64)
    if gate_db is None or len(levels_db) == 0:
        return scores
    levels_db = np.asarray(levels_db, dtype=np.float64)
    floor = noise_floor(levels_db) if floor is None else floor
    return scores * (levels_db >= floor + gate_db)[:, None]


def smooth_curves(scores: np.ndarray, hop: float, how: str, seconds: float) -> np.ndarray:
    """Centred median/mean filter over `seconds` (an odd number of rows, at least 1) of each column
    of `scores` (T, K) -> (T, K). The ends use the rows they have (no padding values invented)."""
    scores = np.asarray(scores, dtype=np.float64)
    half = int(round(seconds / hop / 2)) if hop > 0 else 0
    if half <= 0 or len(scores) < 2:
        return scores.copy()
    out = np.empty_like(scores)
    reduce = np.median if how == "median" else np.mean
    for t in range(len(scores)):
        out[t] = reduce(scores[max(0, t - half) : t + half + 1], axis=0)
    return out


def hysteresis_runs(curve: np.ndarray, on: float, off: float) -> list[tuple[int, int]]:
    """Runs of rows (first, last inclusive) of a (T,) curve: each opens on a row >= `on` and
    extends both ways while rows stay >= `off` (so the rising edge above `off` belongs to it)."""
    above_off = curve >= off
    runs: list[tuple[int, int]] = []
    t, n = 0, len(curve)
    while t < n:
        if not above_off[t]:
            t += 1
            continue
        j = t
        while j + 1 < n and above_off[j + 1]:
            j += 1
        if (curve[t : j + 1] >= on).any():  # a stretch above `off` that somewhere reaches `on`
            runs.append((t, j))
        t = j + 1
    return runs


def detect_events(
    scores: np.ndarray,
    hop: float,
    labels: Sequence[str],
    settings: EventSettings,
    start: float = 0.0,
    duration: float | None = None,
    levels_db: np.ndarray | None = None,
) -> list[Event]:
    """Events, sorted by start then label, from window scores (T, K) (see the module docstring);
    `levels_db` (T,): each window's `centre_level_db`, for `settings.gate_db`."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] != len(labels):
        raise ValueError(f"scores must be (windows, {len(labels)}), got {scores.shape}")
    if hop <= 0:
        raise ValueError("hop must be > 0")
    if levels_db is not None:
        scores = gate_scores(scores, levels_db, settings.gate_db)
    smoothed = smooth_curves(scores, hop, settings.smooth, settings.smooth_seconds)
    events: list[Event] = []
    for k, label in enumerate(labels):
        spans: list[list] = []  # [first row, last row, score]
        for i, j in hysteresis_runs(smoothed[:, k], settings.on, settings.off):
            peak = float(smoothed[i : j + 1, k].max())
            # gaps and lengths in whole rows (times `hop`), never as differences of absolute times:
            # a stream's rows (live_events.py) then decide them exactly as the whole recording's do
            if spans and (i - spans[-1][1] - 1) * hop < settings.min_gap - TIME_EPS:
                spans[-1][1], spans[-1][2] = j, max(spans[-1][2], peak)
            else:
                spans.append([i, j, peak])
        for i, j, peak in spans:
            if (j - i + 1) * hop < settings.min_duration - TIME_EPS:
                continue
            s, e = _pad(start + i * hop - hop / 2, start + j * hop + hop / 2, settings.pad, hop)
            s = max(0.0, s)
            if duration is not None:
                e = min(duration, e)
            if e > s:
                events.append(Event(label, s, e, peak))
    events.sort(key=lambda ev: (ev.start, ev.label))
    return events


def _pad(s: float, e: float, pad: float, hop: float) -> tuple[float, float]:
    """Widen (pad > 0) or trim (pad < 0) both ends; a trimmed event keeps at least one hop around
    its middle, so padding never deletes an event (min_duration decides that)."""
    if pad >= 0 or (e - s) + 2 * pad >= hop:
        return s - pad, e + pad
    mid = (s + e) / 2
    return mid - hop / 2, mid + hop / 2


def activity_spans(scores: np.ndarray, hop: float, settings: EventSettings, start: float = 0.0,
                   duration: float | None = None, levels_db: np.ndarray | None = None) -> list[Event]:  # fmt: skip
    """Where anything is: `detect_events` on one curve, the sum over labels of the gated scores
    (T,) (a softmax row sums to 1, so this is the gate, smoothed), with the same thresholds, gap,
    duration and padding. Events labelled "" with score = the curve's peak; the caller labels them."""
    total = gate_scores(scores, levels_db if levels_db is not None else np.zeros(len(scores)), settings.gate_db)
    return detect_events(total.sum(axis=1, keepdims=True), hop, [""], settings, start, duration)
