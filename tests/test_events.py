"""Score curves -> events (pipelines/infer/events.py) against answers worked out by hand."""

from __future__ import annotations

import re

import numpy as np
import pytest

from attn.pipelines.infer.events import Event, EventSettings, detect_events, hysteresis_runs, smooth_curves

RAW = EventSettings(smooth="median", smooth_seconds=0.0, on=0.5, off=0.3, min_duration=0.0, min_gap=0.0, pad=0.0)


def _settings(**kw) -> EventSettings:
    return EventSettings(**{**RAW.to_dict(), **kw})


def test_hysteresis_opens_at_on_and_extends_while_above_off():
    # rows 1-4 are >= off (0.3) and row 3 reaches on (0.5): one run 1..4; rows 6-7 never reach on.
    curve = np.array([0.1, 0.35, 0.4, 0.9, 0.3, 0.1, 0.45, 0.4, 0.0])
    assert hysteresis_runs(curve, on=0.5, off=0.3) == [(1, 4)]
    # with off == on it is a plain threshold: only row 3
    assert hysteresis_runs(curve, on=0.5, off=0.5) == [(3, 3)]


def test_event_times_are_window_centres_plus_half_a_hop():
    # hop 0.1 s, first window centred at 0.25 s: rows 1..4 -> [0.25+0.1-0.05, 0.25+0.4+0.05] = [0.30, 0.70]
    curve = np.array([0.1, 0.35, 0.4, 0.9, 0.3, 0.1, 0.45, 0.4, 0.0])
    scores = np.stack([curve, 1 - curve], axis=1)  # label "b" is high where "a" is low
    events = detect_events(scores, 0.1, ["a", "b"], _settings(on=0.85, off=0.55), start=0.25)
    # a: row 3 only (0.9 >= 0.85, neighbours 0.4/0.3 < 0.55) -> [0.50, 0.60]
    # b: 1-curve = [.9,.65,.6,.1,.7,.9,.55,.6,1.0]: rows 0..2 (reach .9) -> [0.20, 0.50];
    #    rows 4..8 (reach .9 and 1.0, all >= .55) -> [0.60, 1.10]
    got = [(e.label, round(e.start, 6), round(e.end, 6), round(e.score, 6)) for e in events]
    assert got == [("b", 0.2, 0.5, 0.9), ("a", 0.5, 0.6, 0.9), ("b", 0.6, 1.1, 1.0)]


def test_min_gap_merges_before_min_duration_drops():
    # hop 0.1, start 0: runs rows 0..1 ([-0.05, 0.15] -> clipped later), 3..3 and 8..8.
    curve = np.array([0.9, 0.9, 0.0, 0.9, 0.0, 0.0, 0.0, 0.0, 0.9, 0.0])
    s = _settings(min_gap=0.15, min_duration=0.25)
    # gap between run 0..1 (ends 0.15) and run 3 (starts 0.25) is 0.10 < 0.15: merged -> [-0.05, 0.35]
    # run 8 alone is 0.1 s long < 0.25: dropped. Start clipped to 0.
    events = detect_events(curve[:, None], 0.1, ["x"], s)
    assert [(round(e.start, 6), round(e.end, 6)) for e in events] == [(0.0, 0.35)]
    # without min_gap the two short pieces (0.2 s and 0.1 s) are both dropped by min_duration
    assert detect_events(curve[:, None], 0.1, ["x"], _settings(min_duration=0.25)) == []


def test_padding_widens_trims_and_clips_to_the_recording():
    curve = np.array([0.0, 0.0, 0.9, 0.9, 0.9, 0.0, 0.0, 0.9])
    # rows 2..4 -> [0.15, 0.45]; row 7 -> [0.65, 0.75], clipped to duration 0.72
    wide = detect_events(curve[:, None], 0.1, ["x"], _settings(pad=0.1), duration=0.72)
    assert [(round(e.start, 6), round(e.end, 6)) for e in wide] == [(0.05, 0.55), (0.55, 0.72)]
    narrow = detect_events(curve[:, None], 0.1, ["x"], _settings(pad=-0.05))
    # [0.15, 0.45] trimmed by 0.05 -> [0.20, 0.40]; the one-row event would vanish: it keeps one hop
    assert [(round(e.start, 6), round(e.end, 6)) for e in narrow] == [(0.2, 0.4), (0.65, 0.75)]


def test_median_smoothing_removes_a_one_row_spike_and_fills_a_one_row_dip():
    curve = np.array([0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0])
    # 0.3 s at hop 0.1 = 3 rows, centred
    sm = smooth_curves(curve[:, None], 0.1, "median", 0.3)[:, 0]
    assert sm.tolist() == [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5]
    mean = smooth_curves(curve[:, None], 0.1, "mean", 0.3)[:, 0]
    assert mean[:4] == pytest.approx([0.0, 1 / 3, 1 / 3, 1 / 3])
    events = detect_events(curve[:, None], 0.1, ["x"], _settings(smooth_seconds=0.3))
    # smoothed rows 5..10 (the last is 0.5 >= on) -> [0.45, 1.05]
    assert events == [Event("x", pytest.approx(0.45), pytest.approx(1.05), 1.0)]


def test_records_and_settings_round_trip():
    e = Event("dog", 1.23456, 2.0, 0.987654)
    assert e.record("a.wav") == {"input": "a.wav", "label": "dog", "start": 1.235, "end": 2.0, "score": 0.9877}
    s = _settings(on=0.7, off=0.2, pad=-0.05)
    assert EventSettings.from_dict(s.to_dict()) == s


@pytest.mark.parametrize("bad,says", [({"on": 0.2, "off": 0.5}, "0 <= off <= on <= 1"), ({"smooth": "max"}, "smooth"),
                                      ({"min_gap": -1.0}, "min_gap"), ({"on": 1.5}, "0 <= off <= on <= 1"),
                                      ({"on": "abc"}, "events on must be a number, not 'abc'"),
                                      ({"gate_db": "loud"}, "events gate_db must be a number")])  # fmt: skip
def test_settings_reject_nonsense(bad, says):
    """`attn listen --event-set on=abc` was a raw TypeError; on=1.5 (no event could ever open) passed."""
    with pytest.raises(ValueError, match=re.escape(says)):
        _settings(**bad)


def test_scores_must_match_the_labels():
    with pytest.raises(ValueError, match=r"\(windows, 2\)"):
        detect_events(np.zeros((4, 3)), 0.1, ["a", "b"], RAW)


def test_span_labelling_batches_by_samples_not_by_count():
    """64 spans a model call, padded to the longest, held up to 64 two-minute spans in the model's
    activations (6.4 GB for a 22-minute recording): calls now hold at most 64 windows' samples."""
    from types import SimpleNamespace

    from attn.pipelines.infer.events_predict import clip_probs

    calls = []

    def window_probs(clips):
        calls.append([len(c) for c in clips])
        return np.full((len(clips), 2), 0.5, dtype=np.float32)

    frame = 800
    features = SimpleNamespace(sample_rate=8000, frame_samples=frame)
    loaded = SimpleNamespace(recipe=SimpleNamespace(features=features), labels=["a", "b"], window_probs=window_probs)
    rng = np.random.default_rng(0)
    pieces = [(np.zeros(int(n), np.float32), 8000) for n in rng.integers(100, 200 * frame, 300)]
    probs = clip_probs(loaded, pieces, "x")
    assert probs.shape == (300, 2) and sum(len(c) for c in calls) == 300
    assert all(sum(c) <= 64 * frame or len(c) == 1 for c in calls) and all(len(c) <= 64 for c in calls)
