"""The events post-processing stored in a model (`attn train` tunes it), on a live stream: what
`events_predict.curve_events` does to a whole recording's window scores, done as the windows
arrive, in bounded memory. `StreamEvents` takes each window's scores and centre level (and the
stream's audio, for `classify: segments`) and returns the events that became final.

- The noise-floor gate (`gate_db`). A file's floor is the `FLOOR_QUANTILE` of all its window-centre
  levels; a stream has no end to wait for, so `RunningFloor` keeps the levels of the last
  `FLOOR_HISTORY_SECONDS` (a fixed ring) and each row is gated with the floor of the levels
  received so far. Rows wait until `FLOOR_WARMUP_SECONDS` of levels are known (a stream that ends
  sooner is gated with the floor of all of it: the file's floor). Past the warm-up a row is gated
  as it comes, with the floor of the history before it (and itself), not of the whole recording:
  the live events can differ from the file's where the floor drifts (README, "Live streams").
- `classify: segments`. Where anything is (the sum of the gated scores, `events.activity_spans`'s
  curve) becomes spans through `LiveEvents`; each span, once final, is labelled by the model from
  its audio (plus `margin` each side) as one clip, as a file's span is. `SpanAudio` holds the
  audio from the earliest time a span still to be written could need. A stretch still open after
  `SEGMENT_CAP_SECONDS` is not held whole: its oldest `SEGMENT_CAP_SECONDS` of audio is labelled
  then as a piece (K probabilities kept) and dropped, and a span longer than the cap is labelled
  by the mean of its pieces' probabilities, weighted by their overlap with it (a span within the
  cap: one clip, exactly as a file's).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

import numpy as np

from .events import Event, EventSettings, gate_scores, noise_floor
from .events_predict import BACKGROUND_PREFIX, clip_probs
from .live_events import LiveEvents

FLOOR_HISTORY_SECONDS = 600.0  # the running floor is the quantile of this much recent stream
FLOOR_WARMUP_SECONDS = 10.0  # rows wait for this much stream before the first floor is trusted
SEGMENT_CAP_SECONDS = 30.0  # audio held for one span; longer stretches are labelled in pieces


class RunningFloor:
    """The noise floor of the last `history` seconds of window-centre levels (a ring of floats)."""

    def __init__(self, hop: float, history: float = FLOOR_HISTORY_SECONDS, warmup: float = FLOOR_WARMUP_SECONDS):
        self.levels = np.zeros(max(1, round(history / hop)))
        self.warmup = min(len(self.levels), max(1, round(warmup / hop)))
        self.n = 0

    def add(self, level: float) -> None:
        self.levels[self.n % len(self.levels)] = level
        self.n += 1

    @property
    def ready(self) -> bool:
        return self.n >= self.warmup

    def value(self) -> float:
        return noise_floor(self.levels[: min(self.n, len(self.levels))])


class SpanAudio:
    """The stream's audio at the model's rate, from the earliest second a span could still need."""

    def __init__(self, loaded, name: str, cap: float = SEGMENT_CAP_SECONDS) -> None:
        self.loaded, self.name = loaded, name
        self.sr = loaded.recipe.features.sample_rate
        self.cap = max(1, round(cap * self.sr))
        self.blocks: deque[np.ndarray] = deque()
        self.begin = self.end = 0  # samples: the first held, and all received
        self.pieces: list[tuple[float, float, np.ndarray]] = []  # (start s, end s, probs (K,)) labelled early

    def append(self, block: np.ndarray) -> None:
        self.blocks.append(block)
        self.end += len(block)

    def release(self, needed_from: float) -> None:
        """Forget the audio before `needed_from` seconds (no span to come reaches it); label the
        oldest cap's worth of what is still needed as a piece while more than the cap is held."""
        keep = max(0, int(needed_from * self.sr))
        self.pieces = [p for p in self.pieces if p[1] * self.sr > keep]
        self._drop(keep)
        while self.end - self.begin > self.cap:
            a = self.begin
            probs = clip_probs(self.loaded, [(self._slice(a, a + self.cap), self.sr)], self.name)[0]
            self.pieces.append((a / self.sr, (a + self.cap) / self.sr, probs))
            self._drop(a + self.cap)

    def label(self, span: Event, margin: float) -> Event:
        """The span labelled by the model: its audio plus `margin` each side as one clip (and its
        pieces, if it outgrew the cap): label = the best class, score = its probability."""
        a, b = max(0.0, span.start - margin), span.end + margin
        parts, weights = [], []
        for p0, p1, probs in self.pieces:
            if min(p1, b) > max(p0, a):
                parts.append(probs)
                weights.append(min(p1, b) - max(p0, a))
        x = self._slice(max(int(a * self.sr), self.begin), int(b * self.sr))
        if x.size or not parts:
            parts.append(clip_probs(self.loaded, [(x if x.size else np.zeros(1, np.float32), self.sr)], self.name)[0])
            weights.append(max(x.size, 1) / self.sr)
        p = np.average(np.stack(parts), axis=0, weights=weights)
        return Event(self.loaded.labels[int(p.argmax())], span.start, span.end, float(p.max()))

    def _slice(self, a: int, b: int) -> np.ndarray:
        """Samples [a, b) of the stream (clipped to what is held)."""
        out, pos = [], self.begin
        for block in self.blocks:
            lo, hi = max(a, pos), min(b, pos + len(block))
            if hi > lo:
                out.append(block[lo - pos : hi - pos])
            pos += len(block)
            if pos >= b:
                break
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    def _drop(self, keep: int) -> None:
        while self.blocks and self.begin < keep:
            block = self.blocks[0]
            if self.begin + len(block) <= keep:
                self.blocks.popleft()
                self.begin += len(block)
            else:
                self.blocks[0] = block[keep - self.begin :]
                self.begin = keep


class StreamEvents:
    """Push each window's scores (K,) and centre level (dB) in time order, then `close` at the
    stream's end; both return the event records {input, label, start, end, score} that became
    final. With `classify: segments`, `tee` must pass the stream's audio (model rate) on its way
    to the framing. Row t stands at `start + t * hop` seconds (the window's centre)."""

    def __init__(self, name: str, loaded, hop: float, settings: EventSettings, start: float) -> None:
        self.name, self.settings = name, settings
        self.floor = RunningFloor(hop) if settings.gate_db is not None else None
        self.held: list[tuple[np.ndarray, float]] = []  # rows waiting for the floor's warm-up
        self.audio = SpanAudio(loaded, name) if settings.classify == "segments" else None
        labels = [""] if self.audio is not None else list(loaded.labels)
        self.events = LiveEvents(name, labels, hop, settings, start)
        # a span is labelled once the audio past its end (margin) has arrived: it waits that much longer
        self.wait = settings.margin if self.audio is not None else 0.0

    def tee(self, blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        for block in blocks:
            if self.audio is not None:
                self.audio.append(block)
            yield block

    def push(self, scores: np.ndarray, level: float, now: float) -> list[dict]:
        """`now`: the stream time so far (the newest window's end)."""
        self.held.append((np.asarray(scores, dtype=np.float64), level))
        if self.floor is not None:
            self.floor.add(level)
            if not self.floor.ready:
                return []
        return self._run(now)

    def close(self, duration: float) -> list[dict]:
        return self._run(duration) + self._finish(self.events.close(duration))

    def _run(self, now: float) -> list[dict]:
        """The held rows, gated with the floor so far, through the events."""
        if not self.held:
            return []
        rows = np.stack([s for s, _ in self.held])  # (R, K)
        if self.floor is not None:
            levels = np.array([lv for _, lv in self.held])
            rows = gate_scores(rows, levels, self.settings.gate_db, self.floor.value())
        self.held = []
        if self.audio is not None:
            rows = rows.sum(axis=1, keepdims=True)  # (R, 1): where anything is, as activity_spans
        out = [e for row in rows for e in self.events.push(row, now=now - self.wait)]
        return self._finish(out)

    def _finish(self, events: list[Event]) -> list[dict]:
        if self.audio is not None:
            events = [self.audio.label(e, self.settings.margin) for e in events]
            self.audio.release(self.events.kept_from() - max(0.0, self.settings.pad) - self.settings.margin)
        return [e.record(self.name) for e in events if not e.label.startswith(BACKGROUND_PREFIX)]
