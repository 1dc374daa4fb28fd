"""`attn listen`: a live PCM stream gives the window records `attn predict --per-frame` gives the
same audio as a file; Ctrl-C and the end of the stream keep every complete window; memory stays
flat however long the stream; bad streams get one clear line. Every command runs in a real
subprocess, fed through a pipe or a FIFO."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import soundfile as sf
from test_long_audio import PEAK_RSS

from helpers import tone, write_wav

SR = 8000  # the session's tiny model: 0.5 s windows every 0.25 s at 8 kHz


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a runner started in the background ignores SIGINT


def _cmd(*args) -> list[str]:
    return [sys.executable, "-m", "attn.cli", *map(str, args), "--threads", "1"]


def _env() -> dict:
    e = {**os.environ, "ATTN_THREADS": "1"}
    e.pop("ATTN_DEBUG", None)
    return e


def listen(model, *args, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run(_cmd("listen", "-m", model, *args), input=stdin, capture_output=True, env=_env(),
                          timeout=300)  # fmt: skip


def lines(stdout: bytes) -> list[dict]:
    return [json.loads(line) for line in stdout.decode().splitlines()]


def per_frame(model, wav) -> list[dict]:
    r = subprocess.run(_cmd("predict", "-m", model, wav, "--per-frame"), capture_output=True, text=True, env=_env(),
                       timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["frames"]


def assert_same_windows(streamed: list[dict], frames: list[dict]) -> None:
    assert [(r["start"], r["end"]) for r in streamed] == [(f["start"], f["end"]) for f in frames]
    assert [r["label"] for r in streamed] == [f["label"] for f in frames]
    assert max(abs(r["score"] - f["score"]) for r, f in zip(streamed, frames, strict=True)) <= 1e-5


def scene(seconds: float, sr: int, channels: int = 1) -> np.ndarray:
    """A tone, then noise, then a chirp: the windows' labels change along the stream. (n,) or (n, channels)."""
    third = seconds / 3
    rng = np.random.default_rng(1)
    t = np.arange(int(third * sr)) / sr
    chirp = (0.3 * np.sin(2 * np.pi * (300 + 1500 * t / third) * t)).astype(np.float32)
    x = np.concatenate([tone(440, third, sr), (0.2 * rng.standard_normal(len(t))).astype(np.float32), chirp])
    return x if channels == 1 else np.stack([x * (0.5 + 0.5 * c) for c in range(channels)], axis=1)


def raw(wav, dtype: str = "int16") -> bytes:
    """A WAV file's samples as the raw PCM arecord -t raw or ffmpeg -f s16le write."""
    x, _ = sf.read(str(wav), dtype=dtype, always_2d=True)
    return x.astype("<i2" if dtype == "int16" else "<f4").tobytes()


@pytest.fixture(scope="module")
def wav(tmp_path_factory):
    return write_wav(tmp_path_factory.mktemp("listen") / "scene.wav", scene(4.1, SR), SR, subtype="PCM_16")


def test_a_raw_stream_gives_the_windows_of_predict_per_frame(trained_model, wav):
    r = listen(trained_model, stdin=raw(wav))
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
    streamed = lines(r.stdout)
    assert {rec["input"] for rec in streamed} == {"stdin"}
    frames = per_frame(trained_model, wav)
    assert len({f["label"] for f in frames}) > 1  # the comparison covers more than one label
    assert_same_windows(streamed, frames)
    # arecord's default output: the same samples behind a WAV header, whose format is used.
    assert_same_windows(lines(listen(trained_model, stdin=wav.read_bytes()).stdout), frames)


def test_windows_below_the_min_score_are_unknown_flag_or_stored(trained_model, wav, tmp_path):
    """A live classifier should not name a class for every window it is unsure of: below the
    min score a window is `unknown` (its best label kept), as predict answers for a clip; the
    model's stored min score (train.abstain) applies without the flag."""
    from attn.pipelines.store.artifact import update_header
    from attn.pipelines.store.container import read_container

    plain = lines(listen(trained_model, stdin=raw(wav)).stdout)
    cut = float(np.median([r["score"] for r in plain]))
    flagged = lines(listen(trained_model, "--min-score", cut, stdin=raw(wav)).stdout)
    assert [(r["start"], r["score"]) for r in flagged] == [(r["start"], r["score"]) for r in plain]
    for p, f in zip(plain, flagged, strict=True):
        if p["score"] < cut:
            assert f["label"] == "unknown" and f["best_label"] == p["label"]
        else:
            assert f["label"] == p["label"] and "best_label" not in f
    assert any(f["label"] == "unknown" for f in flagged) and any(f["label"] != "unknown" for f in flagged)
    stored = tmp_path / "abstains.attn"
    cal = read_container(trained_model).header.get("calibration") or {}
    update_header(trained_model, dest=stored, calibration={**cal, "min_score": cut})
    assert lines(listen(stored, stdin=raw(wav)).stdout) == flagged
    frames = per_frame(stored, wav)  # predict --per-frame's windows abstain alike
    assert [f["label"] for f in frames] == [r["label"] for r in flagged]
    r = listen(trained_model, "--min-score", "1.5", stdin=raw(wav))
    assert r.returncode == 2 and b"--min-score" in r.stderr


@pytest.mark.parametrize("rate,channels,subtype", [(16000, 2, "PCM_16"), (22050, 1, "FLOAT")])
def test_another_rate_channels_or_float_samples_match_predict_on_that_file(trained_model, tmp_path, rate, channels,
                                                                           subtype):  # fmt: skip
    """The stream is resampled as it arrives (soxr's streaming resampler, the one file decoding
    uses): window by window it matches the file resampled whole, within 1e-5."""
    wav = write_wav(tmp_path / "x.wav", scene(3.0, rate, channels), rate, subtype=subtype)
    pcm = "s16le" if subtype == "PCM_16" else "f32le"
    data = raw(wav, "int16" if pcm == "s16le" else "float32")
    r = listen(trained_model, "--pcm", pcm, "--rate", rate, "--channels", channels, stdin=data)
    assert r.returncode == 0, r.stderr
    assert f"the stream is at {rate} Hz, the model at {SR} Hz: resampling" in r.stderr.decode()
    assert_same_windows(lines(r.stdout), per_frame(trained_model, wav))


def test_a_fifo_and_a_file_at_its_own_pace(trained_model, wav, tmp_path):
    frames = per_frame(trained_model, wav)
    fifo = tmp_path / "mic"
    os.mkfifo(fifo)
    data = raw(wav)

    def writer() -> None:
        with open(fifo, "wb") as f:
            for i in range(0, len(data), 4000):
                f.write(data[i : i + 4000])
                f.flush()

    t = threading.Thread(target=writer)
    t.start()
    r = listen(trained_model, fifo)
    t.join()
    assert r.returncode == 0, r.stderr
    assert_same_windows(lines(r.stdout), frames)
    # --realtime: a 4.1 s recording takes at least 4.1 s to replay, window by window.
    t0 = time.monotonic()
    r = listen(trained_model, wav, "--realtime")
    assert r.returncode == 0 and time.monotonic() - t0 >= 4.1
    assert_same_windows(lines(r.stdout), frames)


def _first_line(proc: subprocess.Popen) -> bytes:
    """The first stdout line, read a byte at a time: `proc.stdout.readline()` may buffer later lines
    too, which `communicate` (reading the descriptor itself) would then never see."""
    line = b""
    while not line.endswith(b"\n"):
        byte = os.read(proc.stdout.fileno(), 1)
        assert byte, "the stream ended before its first record"
        line += byte
    return line


def test_ctrl_c_scores_what_arrived_and_exits_130(trained_model, tmp_path):
    """Two seconds are written and the pipe left open (a microphone still recording); after the
    first record, Ctrl-C: every window of those two seconds is written, then exit 130."""
    wav = write_wav(tmp_path / "two.wav", scene(2.0, SR), SR, subtype="PCM_16")
    proc = subprocess.Popen(_cmd("listen", "-m", trained_model), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=_env(), preexec_fn=_default_sigint)  # fmt: skip
    proc.stdin.write(raw(wav))
    proc.stdin.flush()
    first = json.loads(_first_line(proc))
    assert first["start"] == 0.0
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    err = err.decode()
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("interrupted: ")
    assert_same_windows([first, *lines(out)], per_frame(trained_model, wav))


def test_a_stop_set_before_any_audio_ends_quietly(trained_model, wav):
    """`Model.listen(stop=ev)` with ev already set: no records, no 'the stream holds no audio'."""
    import attn

    stop = threading.Event()
    stop.set()
    assert list(attn.load(trained_model).listen(str(wav), realtime=True, stop=stop)) == []


def test_a_stall_warns_once_and_the_stream_goes_on(trained_model, wav):
    data = raw(wav)
    proc = subprocess.Popen(_cmd("listen", "-m", trained_model, "--stall", "0.5"), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())  # fmt: skip
    proc.stdin.write(data[: len(data) // 2])
    proc.stdin.flush()
    first = json.loads(_first_line(proc))  # listening: now the writer stalls
    time.sleep(2)
    out, err = proc.communicate(data[len(data) // 2 :], timeout=120)
    assert proc.returncode == 0, err
    warnings = [line for line in err.decode().splitlines() if "stalled" in line]
    assert len(warnings) == 1 and warnings[0].startswith("attn: warning: stdin: no audio for "), err
    assert_same_windows([first, *lines(out)], per_frame(trained_model, wav))


def test_a_stream_cut_inside_a_sample_keeps_every_whole_sample(trained_model, tmp_path):
    wav = write_wav(tmp_path / "stereo.wav", scene(2.0, SR, channels=2), SR, subtype="PCM_16")
    r = listen(trained_model, "--channels", "2", stdin=raw(wav) + b"\x01\x02\x03")  # 4-byte stereo frames
    assert r.returncode == 0
    err = r.stderr.decode().strip()
    assert err.count("\n") == 0 and "ended inside a sample: 3 trailing byte(s) dropped" in err, err
    assert_same_windows(lines(r.stdout), per_frame(trained_model, wav))


# A WAV header for 24-bit PCM, mono at 8 kHz: fmt chunk (tag 1, 1 channel, rate, bytes/s, align 3, 24 bits).
WAV24_HEADER = b"RIFF\x24\x00\x00\x00WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, SR, 3 * SR, 3, 24) + b"data\0\0\0\0"


@pytest.mark.parametrize(
    "args,stdin,code,words",
    [
        ((), b"", 1, "stdin: the stream holds no audio samples"),
        ((), WAV24_HEADER, 1, "WAV stream holds 24-bit samples"),
        (("--pcm", "s24le"), b"\x00\x00", 2, "s24le"),
        (("/nonexistent/mic",), b"", 1, "/nonexistent/mic: cannot open"),
        # an encoded file is no PCM: it was scored as noise, with confident labels
        ((), b"fLaC\0\0\0\x22" + bytes(4000), 1, "stdin: FLAC data: attn listen reads raw PCM or WAV"),
        ((), b"ID3\x04\0\0\0\0\0\0" + bytes(4000), 1, "stdin: MP3 data: attn listen reads raw PCM or WAV"),
    ],
)
def test_bad_streams_get_one_line(trained_model, args, stdin, code, words):
    r = listen(trained_model, *args, stdin=stdin)
    err = r.stderr.decode().strip()
    assert r.returncode == code and "Traceback" not in err and words in err, err
    if code == 1:
        assert err.count("\n") == 0 and err.startswith("error: "), err


def test_a_wav_streams_data_chunk_ends_its_audio_and_a_placeholder_length_is_open(trained_model, wav, tmp_path):
    """Bytes after the data chunk (a tagger's LIST chunk) were scored as samples; arecord's and
    sox's "length unknown" sizes (0x7FFFFFFF, 0x7FFFF000) were refused by predict as truncated;
    an RF64 stream was read as raw PCM."""
    data = wav.read_bytes()
    at = data.index(b"data")
    frames = per_frame(trained_model, wav)
    tagged = data + b"LIST" + struct.pack("<I", 4000) + bytes(range(256)) * 15 + bytes(160)
    assert_same_windows(lines(listen(trained_model, stdin=tagged).stdout), frames)
    for size in (0x7FFFFFFF, 0x7FFFF000):
        open_wav = tmp_path / f"open-{size:x}.wav"
        open_wav.write_bytes(data[: at + 4] + struct.pack("<I", size) + data[at + 8 :])
        assert_same_windows(lines(listen(trained_model, stdin=open_wav.read_bytes()).stdout), frames)
        assert_same_windows(per_frame(trained_model, open_wav), frames)
    r = listen(trained_model, stdin=b"RF64" + data[4:])
    assert r.returncode == 1 and "stdin: RF64 data: attn listen reads raw PCM or WAV" in r.stderr.decode()
    # a LIST chunk after the data is no audio (said nothing above); audio past a declared length that
    # is too short ended the stream without a word
    assert "continues past" not in listen(trained_model, stdin=tagged).stderr.decode()
    (size,) = struct.unpack("<I", data[at + 4 : at + 8])
    short = data[: at + 4] + struct.pack("<I", size // 2 - size // 2 % 2) + data[at + 8 :]
    r = listen(trained_model, stdin=short)
    assert r.returncode == 0 and "audio continues past the" in r.stderr.decode() and lines(r.stdout)


def test_a_stream_shorter_than_a_tenth_of_a_window_is_scored_with_predicts_warning(trained_model):
    """One sample was scored with a confident label and nothing said (predict warns for a file)."""
    r = listen(trained_model, stdin=np.zeros(1, "<i2").tobytes())
    assert r.returncode == 0 and len(lines(r.stdout)) == 1
    assert "stdin: 0.000125 s of audio, under a tenth of the model's 0.5 s window" in r.stderr.decode()
    full = listen(trained_model, stdin=np.full(SR, 1000, "<i2").tobytes())
    assert full.returncode == 0 and "under a tenth" not in full.stderr.decode()


def _stream_minutes(model, minutes: int) -> tuple[int, dict]:
    """Feed `minutes` of generated audio through a pipe (never all in memory here either)."""
    proc = subprocess.Popen([sys.executable, "-c", PEAK_RSS, "listen", "-m", str(model), "--threads", "1"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_env())  # fmt: skip
    count = 0

    def read() -> None:
        nonlocal count
        for _ in proc.stdout:
            count += 1

    reader = threading.Thread(target=read)
    reader.start()
    block = tone(440, 10.0, SR)
    pcm = (block * 32767).astype("<i2").tobytes()
    for _ in range(minutes * 6):
        proc.stdin.write(pcm)
    proc.stdin.close()
    proc.wait(timeout=600)
    reader.join()
    return count, json.loads(proc.stderr.read().decode().strip().splitlines()[-1])


def test_a_long_stream_runs_in_flat_memory(trained_model):
    short_n, short = _stream_minutes(trained_model, 1)
    long_n, long = _stream_minutes(trained_model, 5)
    assert short["code"] == long["code"] == 0
    assert (short_n, long_n) == (239, 1199)  # 0.5 s windows every 0.25 s
    # Holding the windows (16 kB each) would add 19 MB; the bench streams an hour (BENCHMARKS.md).
    assert long["rss_mb"] - short["rss_mb"] < 10, (short, long)


def _curves(rng, rows: int, labels: int) -> np.ndarray:
    """Score curves that switch every few rows, with noise: events of every length and gap."""
    steps = rng.random((rows // 4 + 1, labels))
    return np.clip(np.repeat(steps, 4, axis=0)[:rows] + 0.1 * rng.standard_normal((rows, labels)), 0, 1)


def test_live_events_are_the_events_of_the_whole_curve():
    """Row by row, each event written once: the events detect_events finds over the whole curve
    (hops exact in binary, as a model's are: 0.125, 0.25, 0.375 s)."""
    from attn.pipelines.infer.events import EventSettings, detect_events
    from attn.pipelines.infer.live_events import LiveEvents

    rng = np.random.default_rng(0)
    for trial in range(120):
        hop = float(rng.choice([0.125, 0.25, 0.375]))
        x = _curves(rng, int(rng.integers(5, 200)), int(rng.integers(1, 4)))
        pick = lambda *values: rng.choice(values).item()  # noqa: E731
        settings = EventSettings(
            smooth=pick("median", "mean"),
            smooth_seconds=pick(0, 1),
            on=0.6,
            off=pick(0.3, 0.6),
            min_duration=pick(0, 1),
            min_gap=pick(0, 0.25, 0.8),
            pad=pick(0, 0.2, -0.5),
        )
        labels = [f"c{k}" for k in range(x.shape[1])]
        start, duration = 0.375, 0.375 + len(x) * hop
        want = [e.record("s") for e in detect_events(x, hop, labels, settings, start=start, duration=duration)]
        live = LiveEvents("s", labels, hop, settings, start)
        got = [e for t, row in enumerate(x) for e in live.push(row, now=start + (t + 1) * hop)] + live.close(duration)
        got = [e.record("s") for e in got]
        assert sorted(got, key=str) == sorted(want, key=str), (trial, settings)


def test_live_events_hold_a_bounded_buffer():
    """An hour of hops with events coming and going: the buffer never grows past a few events' rows;
    a label that never falls quiet is cut at MAX_EVENT_SECONDS."""
    from attn.pipelines.infer.events import EventSettings
    from attn.pipelines.infer.live_events import MAX_EVENT_SECONDS, LiveEvents

    hop, rng = 0.25, np.random.default_rng(1)
    live = LiveEvents("s", ["a", "b"], hop, EventSettings(), start=0.5)
    longest, written = 0, 0
    for t in range(int(3600 / hop)):
        row = np.array([1.0 if (t // 40) % 2 else 0.0, rng.random() * 0.2])
        written += len(live.push(row))
        longest = max(longest, len(live.rows))
    assert written == 3600 / hop / 80 - 1 and longest < 60  # one event every 20 s; the last one waits
    always = LiveEvents("s", ["a"], hop, EventSettings(), start=0.5)
    for _ in range(int(2 * MAX_EVENT_SECONDS / hop)):
        always.push(np.array([1.0]))
    assert len(always.rows) <= MAX_EVENT_SECONDS / hop + 1


def test_a_label_that_never_falls_quiet_does_not_make_the_others_write_their_events_again():
    """Past MAX_EVENT_SECONDS the buffer is cut at every hop; an event overlapping its start came
    back with a clipped start and was written again each time (771 lines for 171 events)."""
    from attn.pipelines.infer.events import EventSettings, detect_events
    from attn.pipelines.infer.live_events import MAX_EVENT_SECONDS, LiveEvents

    hop, start = 0.25, 0.5
    n = int(1.5 * MAX_EVENT_SECONDS / hop)
    x = np.zeros((n, 2))
    x[:, 0] = 1.0  # always on
    for t0 in range(0, n - 40, 80):  # "b": a 10 s event every 20 s
        x[t0 : t0 + 40, 1] = 1.0
    live = LiveEvents("s", ["a", "b"], hop, EventSettings(), start)
    got = [e for t, row in enumerate(x) for e in live.push(row, now=start + (t + 1) * hop)]
    got += live.close(start + n * hop)
    want = [e for e in detect_events(x, hop, ["a", "b"], EventSettings(), start=start) if e.label == "b"]
    assert [(e.start, e.end) for e in got if e.label == "b"] == [(e.start, e.end) for e in want]


def test_listen_events_are_the_events_of_the_recordings_windows(trained_model, wav):
    """`attn listen --events` on a stream: the events of the recording's window scores at
    predict --events' hop (0.1 s; predict's framing and model call, in-process), with the same
    settings."""
    import attn
    from attn.features.audio import iter_windows, read_audio
    from attn.pipelines.infer.events import EventSettings, detect_events, edge_levels, with_edges

    r = listen(trained_model, "--events", "--event-set", "on=0.6", "--event-set", "min_gap=0.25", stdin=raw(wav))
    assert r.returncode == 0, r.stderr
    m = attn.load(trained_model)
    f = m.recipe.features
    hop = round(0.1 * SR)
    windows = list(iter_windows(iter([read_audio(str(wav), SR)]), f.frame_samples, hop))
    probs = m.loaded.window_probs([w[:n] for _, w, n in windows])
    end = (windows[-1][0] + windows[-1][2]) / SR
    # the edge rows (the first and last windows' scores) reach the stream's ends
    lead = edge_levels(windows[0][1], windows[0][2], f.frame_samples, hop, "lead")
    tail = edge_levels(windows[-1][1], windows[-1][2], f.frame_samples, hop, "tail")
    scores, _ = with_edges(probs, np.zeros(len(probs)), lead, tail)
    want = detect_events(scores, 0.1, m.labels, EventSettings(on=0.6, min_gap=0.25),
                         start=f.frame_seconds / 2 - len(lead) * 0.1, duration=end)  # fmt: skip
    assert want and lines(r.stdout) == [e.record("stdin") for e in want]
    assert want[0].start == 0 and want[-1].end == end  # the tone from 0 s, the chirp to the end
