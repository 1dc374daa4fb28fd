"""`attn listen` on a live stream: latency (a window's last sample written to the pipe -> its
record read back), the real-time factor, and memory over an hour of stream.

The audio is the fsdd_scenes test recordings (16 kHz speech over noise) end to end, sent as
16-bit PCM at 16 kHz: resampled as it arrives when the model runs at another rate. The model is
the digits CNN the events work trained with recipes/audio.yaml on FSDD when its path is in
$ATTN_DIGITS_MODEL (or /work/helpers/DIGITS_MODEL.txt), else the shipped digits recipe trained
for one epoch here (the same network; speed, not accuracy)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import threading
import time
from pathlib import Path

import numpy as np

from .cases_cli import _model
from .common import attn_cmd, case, data_root

RATE = 16000
CHUNK_SECONDS = 0.02  # the writer's pieces: what a sound card hands over (arecord: a period of ~20-30 ms)


def _digits_model(root) -> tuple[str, str]:
    given = os.environ.get("ATTN_DIGITS_MODEL")
    note = Path("/work/helpers/DIGITS_MODEL.txt")
    if not given and note.exists():
        given = note.read_text().strip()
    if given and Path(given).exists():
        return given, "digits CNN (recipes/audio.yaml on FSDD)"
    return _model("audio", root), "digits CNN, 1 epoch (speed only)"


def _scenes_pcm(root) -> bytes:
    """The fsdd_scenes test recordings end to end, 16-bit PCM at 16 kHz."""
    import soundfile as sf

    files = sorted((root / "fsdd_scenes" / "audio").glob("test-*.flac"))
    parts = []
    for f in files:
        x, sr = sf.read(str(f), dtype="int16", always_2d=True)
        assert sr == RATE, (f, sr)
        parts.append(x[:, 0])
    return np.concatenate(parts).astype("<i2").tobytes()


def _env() -> dict:
    return {**os.environ, "ATTN_THREADS": "1"}


PRIME_SECONDS = 3  # written at once first, so that the timed part starts with the model loaded


def _latency(model: str, pcm: bytes, seconds: float) -> dict:
    """Write `seconds` of audio at its own pace in CHUNK_SECONDS pieces; time each record from
    the write of the piece that held its window's last sample (a window is whole only when the
    next sample arrives: that wait is part of what is measured)."""
    proc = subprocess.Popen([*attn_cmd(), "listen", "-m", model, "--rate", str(RATE), "--threads", "1"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_env())  # fmt: skip
    primed = PRIME_SECONDS * RATE  # samples
    proc.stdin.write(pcm[: 2 * primed])
    proc.stdin.flush()
    proc.stdout.readline()  # the first record: the model is loaded and listening
    arrivals: list[tuple[int, float]] = []  # (samples written so far, when)
    got: list[tuple[dict, float]] = []

    def read() -> None:
        for line in proc.stdout:
            got.append((json.loads(line), time.monotonic()))

    reader = threading.Thread(target=read)
    reader.start()
    step = int(RATE * CHUNK_SECONDS) * 2
    body = pcm[2 * primed : 2 * (primed + int(seconds * RATE))]
    t0 = time.monotonic()
    for i in range(0, len(body), step):
        time.sleep(max(0.0, t0 + i / 2 / RATE - time.monotonic()))
        piece = body[i : i + step]
        proc.stdin.write(piece)
        proc.stdin.flush()
        arrivals.append((primed + (i + len(piece)) // 2, time.monotonic()))
    time.sleep(2.0)  # the last whole windows' records arrive before EOF adds the stream's short last one
    proc.stdin.close()
    reader.join()
    proc.wait()
    ends = np.array([n for n, _ in arrivals])
    frame = max(rec["end"] - rec["start"] for rec, _ in got)
    lat = []
    for rec, t in got:
        last = round(rec["end"] * RATE)  # samples the window needs
        if last <= primed or last >= ends[-1] or rec["end"] - rec["start"] < frame - 1e-3:
            # The primed audio; a window ending at the last sample written (whole only once a next
            # sample arrives, here the end of the stream 2 s later); the short window of the end.
            continue
        k = int(np.searchsorted(ends, last))  # the first write after which `last` samples had arrived
        lat.append(t - arrivals[k][1])
    return {"n": len(lat), "median_ms": 1000 * statistics.median(lat), "p95_ms": 1000 * float(np.percentile(lat, 95)),
            "max_ms": 1000 * max(lat)}  # fmt: skip


def _rtf(model: str, pcm: bytes) -> tuple[float, float, int]:
    """Wall seconds per second of audio, streamed as fast as it is scored, in-process (no
    interpreter start): (real-time factor, audio seconds, windows)."""
    import tempfile

    import torch

    import attn

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    m = attn.load(model)
    try:
        with tempfile.NamedTemporaryFile(suffix=".pcm") as f:
            f.write(pcm)
            f.flush()
            t0 = time.perf_counter()
            n = sum(1 for _ in m.listen(f.name, rate=RATE))
            wall = time.perf_counter() - t0
    finally:
        torch.set_num_threads(before)  # the report's header states torch's default
    seconds = len(pcm) / 2 / RATE
    return wall / seconds, seconds, n


def _memory(model: str, pcm: bytes, minutes: float, events: bool = False) -> tuple[float, int, int, float, float]:
    """Peak RSS (MB, the kernel's high-water mark, read until the process ends) of `attn listen`
    (with `events`: --events) over `minutes` of stream (the scenes repeated), fed as fast as it
    is read: (peak, exit code, records, wall seconds, the high-water mark once a quarter of the
    records were written)."""
    extra = ["--events"] if events else []
    proc = subprocess.Popen([*attn_cmd(), "listen", "-m", model, "--rate", str(RATE), "--threads", "1", *extra],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env=_env())  # fmt: skip
    count, peak, marks = 0, 0.0, []

    def read() -> None:
        nonlocal count
        for _ in proc.stdout:
            count += 1

    def watch() -> None:
        nonlocal peak
        while proc.poll() is None:
            try:
                status = Path(f"/proc/{proc.pid}/status").read_text()
                peak = max(peak, int(status.split("VmHWM:")[1].split()[0]) / 1024)
                marks.append((count, peak))
            except (OSError, IndexError, ValueError):  # the process is ending
                pass
            time.sleep(0.2)

    threads = [threading.Thread(target=read), threading.Thread(target=watch)]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    left = int(minutes * 60 * RATE) * 2
    while left > 0:
        piece = pcm[:left]
        proc.stdin.write(piece)
        left -= len(piece)
    proc.stdin.close()
    code = proc.wait()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    # a quarter of the records written: past start-up (torch, the model), in the steady state
    quarter = next((m for n, m in marks if n >= count / 4), peak)
    return peak, code, count, wall, quarter


def memory_case(name: str, records: str, model: str, pcm: bytes, minutes: float, common: dict,
                events: bool = False) -> dict:  # fmt: skip
    """Peak memory of `minutes` of stream against 1 minute. Two processes' peaks differ by tens of
    MB from run to run (allocator and library start-up: the 60-minute one came out 75 MB lower
    one day and 18 MB higher the next), so flat is judged within the long run: its high-water
    mark may grow by at most 10 MB after its first quarter (what a leak would show)."""
    short, code_short, n_short, _, _ = _memory(model, pcm, 1.0, events=events)
    long, code_long, n_long, wall_long, quarter = _memory(model, pcm, minutes, events=events)
    return case(
        f"{name}: peak memory, {minutes:.0f} min stream vs 1 min",
        f"fsdd_scenes test repeated, {n_long} {records}",
        f"1 min stream ({n_short} {records})",
        long,
        short,
        "MB peak RSS",
        "flat (≤ +10 MB after the first quarter)",
        long - quarter <= 10 and code_long == code_short == 0,
        higher_is_better=False,
        wall_seconds=round(wall_long, 1),
        growth_after_first_quarter_mb=round(long - quarter, 1),
        rtf_with_startup=round(wall_long / (minutes * 60), 4),
        **{**common, "load_avg_after": round(os.getloadavg()[0], 2)},
    )


def listen(quick: bool = False) -> list[dict]:
    root = data_root()
    if root is None or not (root / "fsdd_scenes" / "audio").exists():
        return [{"case": "listen", "error": "skipped: fsdd_scenes not found"}]
    import attn

    model, what = _digits_model(root)
    feats = attn.load(model).recipe.features
    hop_ms = 1000 * feats.hop_seconds
    pcm = _scenes_pcm(root)
    load0 = os.getloadavg()[0]
    lat = _latency(model, pcm, 20.0 if quick else 60.0)
    rtf, seconds, windows = _rtf(model, pcm[: len(pcm) // 4] if quick else pcm)
    minutes = 10.0 if quick else 60.0
    load1 = os.getloadavg()[0]
    common = {"model": what, "model_rate": feats.sample_rate, "frame_s": feats.frame_seconds,
              "hop_s": feats.hop_seconds, "load_avg_before": round(load0, 2), "load_avg_after": round(load1, 2),
              "threads": 1}  # fmt: skip
    stream = f"fsdd_scenes test, 16 kHz s16le, {CHUNK_SECONDS * 1000:.0f} ms writes at real time"
    return [
        case(
            "listen: latency, last sample -> record (p95)",
            f"{stream}, {lat['n']} windows",
            "the hop + 100 ms",
            lat["p95_ms"],
            hop_ms + 100,
            "ms",
            "≤ hop + 100 ms",
            lat["p95_ms"] <= hop_ms + 100,
            higher_is_better=False,
            median_ms=round(lat["median_ms"], 1),
            max_ms=round(lat["max_ms"], 1),
            **common,
        ),  # fmt: skip
        case(
            "listen: real-time factor",
            f"fsdd_scenes test, {seconds:.0f} s, {windows} windows, as fast as scored",
            "real time (1.0)",
            rtf,
            1.0,
            "s per s of audio",
            "≤ 0.1",
            rtf <= 0.1,
            higher_is_better=False,
            **common,
        ),  # fmt: skip
        memory_case("listen", "windows", model, pcm, minutes, common),
    ]
