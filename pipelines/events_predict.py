"""Sound events from a clip model: window scores at a fine hop (predict.py's framing), events
(events.py), their evaluation with sed_eval, and the post-processing tuned on annotated
recordings.

Evaluation (DCASE's convention, computed by sed_eval, not here): event-based F1 and error rate
match an estimated event to a reference of the same label when the onsets are within
`ONSET_COLLAR` (200 ms) and the offsets within the larger of 200 ms and half the reference's
length; segment-based F1 compares which labels are active in each 1 s segment.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .events import Event, EventSettings, detect_events
from .events_data import Annotated

log = logging.getLogger("attn")

ONSET_COLLAR = 0.2  # seconds
OFFSET_SHARE = 0.5  # offset collar: max(ONSET_COLLAR, this share of the reference event's length)
SEGMENT_SECONDS = 1.0
DEFAULT_HOP = 0.1
BACKGROUND_PREFIX = "_"  # labels such as "_background" mean "nothing here": never reported as events


@dataclass
class Curves:
    """One recording's window scores: `scores` (W, K) at `hop` seconds, the first window centred
    at `start` seconds; `duration` in seconds; `error` if it could not be read."""

    name: str
    scores: np.ndarray | None
    hop: float
    start: float
    duration: float
    error: str | None = None
    levels_db: np.ndarray | None = None  # (W,) each window's centre level, for the gate


def score_curves(loaded, inputs: Iterable, hop: float = DEFAULT_HOP, batch_size: int = 64) -> Iterator[Curves]:
    """Window scores of each input (files or AudioArrays), in order, through AudioPredictor's framing."""
    from .predict import AudioPredictor

    frame = loaded.recipe.features.frame_seconds
    if hop > frame:
        raise ValueError(f"events hop {hop:g} s is longer than the model's {frame:g} s window")
    predictor = AudioPredictor(loaded, batch_size=batch_size, hop_seconds=hop, keep_scores=True)
    for rec in predictor.predict(list(inputs)):
        if rec.get("error"):
            yield Curves(rec["input"], None, hop, frame / 2, 0.0, rec["error"])
        else:
            yield Curves(rec["input"], rec["scores"], hop, frame / 2, float(rec["duration"]), None, rec["levels_db"])


def curve_events(c: Curves, labels: list[str], settings: EventSettings) -> list[Event]:
    events = detect_events(c.scores, c.hop, labels, settings, start=c.start, duration=c.duration,
                           levels_db=c.levels_db)  # fmt: skip
    return [e for e in events if not e.label.startswith(BACKGROUND_PREFIX)]


def predict_events(loaded, inputs: Iterable, settings: EventSettings | None = None, hop: float | None = None,
                   batch_size: int = 64) -> Iterator[dict[str, Any]]:  # fmt: skip
    """One record per event {input, label, start, end, score}, files in order; a file that cannot
    be read gives its error record {input, error}; a file with no event gives nothing.
    `settings`/`hop` default to those stored in the model (tuned at training), else the defaults."""
    stored = loaded.header.get("events") or {}
    settings = settings or EventSettings.from_dict(stored.get("settings", {}))
    hop = hop or stored.get("hop_seconds", DEFAULT_HOP)
    for c in score_curves(loaded, inputs, hop, batch_size):
        if c.error is not None:
            yield {"input": c.name, "error": c.error}
            continue
        for e in curve_events(c, loaded.labels, settings):
            yield e.record(c.name)


def event_metrics(reference: Annotated, estimated: dict[str, list[Event]], labels: list[str]) -> dict[str, Any]:
    """sed_eval's event-based (collars above) and segment-based (1 s) metrics over all recordings."""
    import sed_eval

    classes = sorted(set(labels) | set(reference.labels))
    ev = sed_eval.sound_event.EventBasedMetrics(
        event_label_list=classes, t_collar=ONSET_COLLAR, percentage_of_length=OFFSET_SHARE,
        evaluate_onset=True, evaluate_offset=True,
    )  # fmt: skip
    seg = sed_eval.sound_event.SegmentBasedMetrics(event_label_list=classes, time_resolution=SEGMENT_SECONDS)
    for name in reference.files:
        ref = [{"event_label": a.label, "onset": a.onset, "offset": a.offset, "file": name}
               for a in reference.events.get(name, [])]  # fmt: skip
        est = [{"event_label": e.label, "onset": e.start, "offset": e.end, "file": name}
               for e in estimated.get(name, [])]  # fmt: skip
        ev.evaluate(reference_event_list=ref, estimated_event_list=est)
        seg.evaluate(reference_event_list=ref, estimated_event_list=est)
    e, s = ev.results_overall_metrics(), seg.results_overall_metrics()
    counts = ev.overall
    return {
        "event_f1": float(e["f_measure"]["f_measure"]),
        "event_precision": float(e["f_measure"]["precision"]),
        "event_recall": float(e["f_measure"]["recall"]),
        "event_error_rate": float(e["error_rate"]["error_rate"]),
        "segment_f1": float(s["f_measure"]["f_measure"]),
        "segment_error_rate": float(s["error_rate"]["error_rate"]),
        "reference_events": int(counts["Nref"]),
        "estimated_events": int(counts["Nsys"]),
        "recordings": len(reference.files),
        "collars": {
            "onset": ONSET_COLLAR,
            "offset": f"max({ONSET_COLLAR}, {OFFSET_SHARE} x length)",
            "segment": SEGMENT_SECONDS,
        },  # fmt: skip
    }


def _nan0(x: float) -> float:
    return 0.0 if x != x else x


# The tuning search: coordinate ascent over these values, from EventSettings' defaults, twice over.
SEARCH = {
    "gate_db": (None, 3.0, 6.0, 10.0, 15.0, 20.0),
    "on": (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    "off": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
    "smooth_seconds": (0.0, 0.2, 0.3, 0.5),
    "smooth": ("median", "mean"),
    "pad": (-0.3, -0.25, -0.2, -0.15, -0.1, -0.05, 0.0, 0.05, 0.1),
    "min_duration": (0.0, 0.1, 0.2, 0.3, 0.5),
    "min_gap": (0.0, 0.1, 0.2, 0.3, 0.5),
}


def tune_settings(curves: list[Curves], reference: Annotated, labels: list[str],
                  rounds: int = 2) -> tuple[EventSettings, dict[str, Any]]:  # fmt: skip
    """The settings with the best event-based F1 (then the lowest error rate) on annotated
    recordings, by coordinate ascent over `SEARCH`; returns them and their metrics."""
    curves = [c for c in curves if c.error is None]

    def score(s: EventSettings) -> tuple[tuple[float, float], dict[str, Any]]:
        m = event_metrics(reference, {c.name: curve_events(c, labels, s) for c in curves}, labels)
        return (_nan0(m["event_f1"]), -m["event_error_rate"]), m

    best = EventSettings()
    best_key, best_m = score(best)
    for _, (name, values) in itertools.product(range(rounds), SEARCH.items()):
        for v in values:
            try:
                cand = replace(best, **{name: v})
            except ValueError:  # off above on
                continue
            key, m = score(cand)
            if key > best_key:
                best, best_key, best_m = cand, key, m
    log.info(f"events: tuned on {len(curves)} recordings: event F1 {best_m['event_f1']:.4f}, "
             f"error rate {best_m['event_error_rate']:.4f} ({best})")  # fmt: skip
    return best, best_m
