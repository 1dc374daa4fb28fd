"""Sound events from a stream of window scores, each written once nothing later can change it:
the events `events.detect_events` finds over the whole score curve, found as the curve grows.

`detect_events` itself runs over a buffer of recent rows (never a second copy of its rules).
A label's event is final once, after it, `gap` rows (its `min_gap`, plus one) of that label's
smoothed score are final (the smoothing filter has all its rows) and below `off`: no later row
can then extend it or merge another event into it. Rows are dropped once every label has such a
quiet stretch, keeping the filter's reach before it, so memory holds the longest event plus a few
hops. Finality is judged on the events without padding (`detect_events` with pad 0), whose
padded twins (same label, same order: padding never drops or reorders an event) are written.
A label whose score never falls (a constant background) is cut at `MAX_EVENT_SECONDS`, with a
warning: the stream is never held whole.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence

import numpy as np

from .events import Event, EventSettings, detect_events, smooth_curves

log = logging.getLogger("attn")

MAX_EVENT_SECONDS = 600.0
EPS = 1e-6  # seconds: times reached by different float sums; event edges lie a whole hop apart


class LiveEvents:
    """Push each window's scores (K,) in time order (`push`), then `close` at the end of the
    stream; both return the events that became final (`Event.record(name)` is the output line).
    Row t stands at `start + t * hop` seconds (a window's centre: `start` = frame_seconds / 2)."""

    def __init__(self, name: str, labels: Sequence[str], hop: float, settings: EventSettings, start: float) -> None:
        self.name, self.labels, self.hop, self.settings, self.start = name, list(labels), hop, settings, start
        # detect_events runs on the smoothed rows kept here, with smoothing off (its first step, done
        # once a row: each new row changes only the last `half` + 1 smoothed rows).
        self.plain = dataclasses.replace(settings, smooth_seconds=0.0)
        self.bare = dataclasses.replace(self.plain, pad=0.0)
        self.half = int(round(settings.smooth_seconds / hop / 2))  # the filter's reach, rows
        # Quiet rows after an event that settle it: a run after more than min_gap / hop quiet rows
        # cannot merge into it (one more for a gap that equals min_gap up to float rounding).
        self.gap = math.floor(settings.min_gap / hop + 1e-6) + 2
        self.rows: list[np.ndarray] = []  # raw scores (K,) from global row `base` on
        self.smoothed: list[np.ndarray] = []  # their smoothed scores (K,), the last `half` not final yet
        self.base = 0
        self.floor = -math.inf  # unpadded ends at or before this belong to events already settled
        # Each label's events do not overlap, and are written in order: the (unpadded) end of the last
        # one written says what is new. A (label, start) key was not enough: once a label that never
        # falls quiet forced a cut, an older event overlapping the buffer's start came back clipped,
        # with a new start, and was written again at every hop (771 lines for 171 events).
        self.done: dict[str, float] = {}
        self.cut_warned = False

    def push(self, scores: np.ndarray, now: float = math.inf) -> list[Event]:
        """`now`: the stream time so far (the newest window's end): an event whose padding reaches
        past it waits, as the stream's end might clip it."""
        self.rows.append(np.asarray(scores, dtype=np.float64))
        n, h = len(self.rows), self.half
        # Rows n-1-h.. change; their filter reaches back to n-1-2h, which the buffer always holds
        # (a trim keeps 2h + gap rows), or to the stream's start, where the whole curve is clipped too.
        lo = max(0, n - 1 - 3 * h)
        fresh = smooth_curves(np.stack(self.rows[lo:]), self.hop, self.settings.smooth, self.settings.smooth_seconds)
        keep = max(0, n - 1 - h)
        self.smoothed = self.smoothed[:keep] + list(fresh[keep - lo :])
        known = n - h  # rows whose smoothed score is final
        if known <= self.gap:
            return []
        quiet = np.stack(self.smoothed[:known]) < self.settings.off  # (known, K)
        settled = [self._settled(quiet[:, k]) for k in range(len(self.labels))]  # rows, per label
        bounds = {lab: self._time(self.base + r) - self.hop / 2 for lab, r in zip(self.labels, settled, strict=True)}
        pad = self.settings.pad
        out = self._emit(lambda ev: ev.end <= bounds[ev.label] + EPS and ev.end + pad <= now + EPS)
        self._trim(self._settled(quiet.all(axis=1)), n)
        return out

    def close(self, duration: float) -> list[Event]:
        """Every remaining event, clipped to the stream's `duration` seconds."""
        return self._emit(lambda ev: True, duration) if self.rows else []

    def kept_from(self) -> float:
        """Seconds: no event written from now on starts (before padding) earlier than this."""
        return max(self.floor, self._time(self.base) - self.hop / 2)

    def _time(self, row: int) -> float:
        return self.start + row * self.hop

    def _settled(self, quiet: np.ndarray) -> int:
        """The first row of the latest run of `gap` quiet rows (events ending before it are final); 0 if none."""
        run = 0
        for r in range(len(quiet) - 1, -1, -1):
            run = run + 1 if quiet[r] else 0
            if run >= self.gap:
                return r
        return 0

    def _emit(self, final, duration: float | None = None) -> list[Event]:
        """The records of the buffer's events that `final` accepts and were not written yet. The
        stream's end (`duration`) clips the last ones (before it, a final event always ends
        before the newest window's centre, so inside the stream)."""
        scores, start = np.stack(self.smoothed), self._time(self.base)
        bare = detect_events(scores, self.hop, self.labels, self.bare, start=start)
        padded = detect_events(scores, self.hop, self.labels, self.plain, start=start)
        out = []
        for lab in self.labels:
            pairs = zip([e for e in bare if e.label == lab], [e for e in padded if e.label == lab], strict=True)
            for b, ev in pairs:
                if b.end <= self.floor + EPS or b.start < self.done.get(lab, -math.inf) - EPS or not final(b):
                    continue
                self.done[lab] = b.end
                if duration is not None:
                    ev = dataclasses.replace(ev, end=min(ev.end, duration))
                if ev.end > ev.start:
                    out.append(ev)
        return sorted(out, key=lambda e: (e.start, e.label))

    def _trim(self, settled: int, n: int) -> None:
        """Drop the rows before every label's quiet stretch (keeping the filter's reach), or, when
        some label never falls quiet, all but MAX_EVENT_SECONDS of rows."""
        cut = settled  # the first row of the latest stretch where every label is quiet, or 0
        if cut == 0 and n * self.hop > MAX_EVENT_SECONDS:
            cut = n - int(MAX_EVENT_SECONDS / self.hop)
            if not self.cut_warned:
                log.warning(f"{self.name}: an event ran longer than {MAX_EVENT_SECONDS:g} s; it is cut there (the "
                            "stream is not held in memory)")  # fmt: skip
                self.cut_warned = True
        drop = cut - self.half
        if drop <= 0:
            return
        self.floor = max(self.floor, self._time(self.base + cut) - self.hop / 2)
        self.rows, self.smoothed = self.rows[drop:], self.smoothed[drop:]
        self.base += drop
