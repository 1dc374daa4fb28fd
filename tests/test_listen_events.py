"""`attn listen --events` with the post-processing stored in the model: a generated recording
streamed gives the events `attn predict --events` finds in the file (the gate's running noise
floor, classify: segments); the running floor and the span audio stay bounded however long the
stream."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from attn.pipelines.data.synthetic import generate_clip

SR = 8000
# (label, onset, offset): past the floor's 10 s warm-up too, so rows are gated with a running floor
PLACED = [("sine", 1.0, 1.5), ("chirp", 3.0, 3.5), ("sine", 5.2, 5.7), ("chirp", 11.0, 11.5), ("sine", 15.3, 15.8)]
STORED = {"hop_seconds": 0.1, "settings": {"classify": "segments", "gate_db": 10.0, "min_duration": 0.1}}


@pytest.fixture(scope="module")
def tuned(trained_model, tmp_path_factory):
    """A copy of the tiny model with event settings stored in it (as `attn train` stores tuned ones),
    and an 18 s recording of quiet noise (-60 dBFS, slowly louder) with its classes at known times."""
    from attn.pipelines.store.artifact import update_header

    d = tmp_path_factory.mktemp("live_events")
    shutil.copytree(trained_model.parent, d / "run")
    model = d / "run" / trained_model.name
    update_header(model, events=STORED)
    rng = np.random.default_rng(3)
    n = 18 * SR
    x = rng.standard_normal(n) * 10 ** (np.linspace(-62, -58, n) / 20)  # the floor drifts by 4 dB
    for label, on, off in PLACED:  # the clips test_events_e2e.py places (the tiny model knows them well)
        clip = generate_clip(label, np.random.default_rng(100 if label == "sine" else 101), off - on, SR)
        x[int(on * SR) : int(on * SR) + clip.size] += clip / np.abs(clip).max() * 0.3
    sf.write(d / "scene.wav", x.astype(np.float32), SR)
    return model, d / "scene.wav"


def test_live_events_with_the_stored_settings_are_the_files_events(tuned):
    import attn

    model, wav = tuned
    offline = list(attn.load(model).events_iter(wav))
    x, _ = sf.read(str(wav), dtype="float32")
    cmd = [sys.executable, "-m", "attn.cli", "listen", "-m", str(model), "--events", "--pcm", "f32le", "--threads", "1"]
    r = subprocess.run(cmd, input=x.astype("<f4").tobytes(), capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    assert b"not the settings" not in r.stderr  # the old warning: tuned settings are now applied live
    live = [json.loads(line) for line in r.stdout.decode().splitlines()]
    assert [e["label"] for e in offline] == [label for label, _, _ in PLACED]
    assert [e["label"] for e in live] == [e["label"] for e in offline]
    for a, b in zip(live, offline, strict=True):  # within one hop (0.1 s): the floors differ a little
        assert abs(a["start"] - b["start"]) <= 0.1 and abs(a["end"] - b["end"]) <= 0.1, (a, b)


def test_sounds_in_a_recordings_first_and_last_half_window_are_found_in_files_and_streams(tuned):
    """Rows stand at window centres (0.25 s in, for this 0.5 s model): a sound in the first 0.2 s
    or after the last centre was placed at a centre, or, with the gate (which hears a row's centre
    only), not found at all. Edge rows (events.py) reach the ends, in a file and a stream alike."""
    import attn

    model, wav = tuned
    rng = np.random.default_rng(5)
    x = rng.standard_normal(3 * SR) * 10 ** (-60 / 20)
    placed = [("sine", 0.0, 0.2), ("sine", 2.8, 3.0)]
    for label, on, off in placed:
        clip = generate_clip(label, np.random.default_rng(100), off - on, SR)
        x[int(on * SR) : int(on * SR) + clip.size] += clip / np.abs(clip).max() * 0.3
    edge = wav.parent / "edges.wav"
    sf.write(edge, x.astype(np.float32), SR)
    offline = list(attn.load(model).events_iter(edge))
    assert [e["label"] for e in offline] == ["sine", "sine"]
    for e, (_, on, off) in zip(offline, placed, strict=True):
        assert abs(e["start"] - on) <= 0.1 and abs(e["end"] - off) <= 0.1, e
    cmd = [sys.executable, "-m", "attn.cli", "listen", "-m", str(model), "--events", "--pcm", "f32le", "--threads", "1"]
    r = subprocess.run(cmd, input=x.astype("<f4").tobytes(), capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    live = [json.loads(line) for line in r.stdout.decode().splitlines()]
    assert [(e["label"], e["start"], e["end"]) for e in live] == [(e["label"], e["start"], e["end"]) for e in offline]


def test_the_running_floor_is_the_quantile_of_the_recent_levels():
    from attn.pipelines.infer.live_segments import RunningFloor

    floor = RunningFloor(hop=0.1, history=60.0, warmup=10.0)
    levels = np.random.default_rng(0).normal(-50, 3, 2000)
    for t, level in enumerate(levels):
        floor.add(level)
        assert floor.ready == (t + 1 >= 100)
    assert len(floor.levels) == 600  # a minute of rows, however long the stream
    assert floor.value() == pytest.approx(np.quantile(levels[-600:], 0.1))


class _Model:
    """A stand-in clip model: "pos" for audio whose mean is positive, else "neg"; counts clip lengths."""

    labels = ["pos", "neg"]
    recipe = SimpleNamespace(features=SimpleNamespace(sample_rate=100, frame_samples=50))

    def __init__(self) -> None:
        self.lengths: list[int] = []

    def window_probs(self, clips):
        self.lengths += [len(c) for c in clips]
        return np.array([[0.9, 0.1] if c.mean() > 0 else [0.1, 0.9] for c in clips], dtype=np.float32)


def test_a_stretch_longer_than_the_cap_is_labelled_in_pieces_in_bounded_memory():
    """70 s of sound (30 s cap): never more than the cap of audio held; one event, its label the
    pieces' weighted mean (here: mostly positive audio), and a short span after it is one clip."""
    from attn.pipelines.infer.events import EventSettings
    from attn.pipelines.infer.live_segments import SEGMENT_CAP_SECONDS, StreamEvents

    model, hop, sr = _Model(), 0.5, 100
    settings = EventSettings(classify="segments", gate_db=6.0, smooth_seconds=0.0, min_duration=0.0)
    live = StreamEvents("s", model, hop, settings, start=0.25)
    audio = np.concatenate([np.full(20 * sr, 1e-3), np.full(70 * sr, 0.5), np.full(20 * sr, 1e-3),
                            np.full(2 * sr, -0.5), np.full(10 * sr, 1e-3)]).astype(np.float32)  # fmt: skip
    blocks = live.tee(iter(np.split(audio, len(audio) // 50)))
    out, held, t = [], 0, 0
    for block in blocks:
        t += len(block)
        if t % 50 == 0 and t >= 50:  # a row per hop: its scores (the model's softmax) and level
            level = 10 * np.log10(np.mean(block.astype(np.float64) ** 2) + 1e-12)
            out += live.push(np.array([0.5, 0.5]), level, now=t / sr)
            held = max(held, live.audio.end - live.audio.begin)
    out += live.close(len(audio) / sr)
    assert held <= SEGMENT_CAP_SECONDS * sr + 50
    assert [e["label"] for e in out] == ["pos", "neg"]
    assert abs(out[0]["start"] - 20) <= hop and abs(out[0]["end"] - 90) <= hop
    assert max(model.lengths) <= SEGMENT_CAP_SECONDS * sr


def test_event_set_values_parse_to_numbers_names_and_off():
    from attn.cli.listen import _event_settings

    got = _event_settings(["on=0.7", "classify=windows", "gate_db=off", "smooth = mean"])
    assert got == {"on": 0.7, "classify": "windows", "gate_db": None, "smooth": "mean"}
