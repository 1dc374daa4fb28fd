"""attn listen"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Annotated, Literal

import typer

from .common import (
    DeviceOpt,
    MinScoreOpt,
    MinSimilarityOpt,
    ModelOpt,
    QuietOpt,
    State,
    ThreadsOpt,
    ThresholdOpt,
    err,
    fail,
    handle_errors,
    interrupted_code,
    is_tty,
    set_threads,
    setup_logging,
    stopped_by,
)

EPILOG = """\
Examples:

  arecord -q -f S16_LE -r 16000 -c 1 - | attn listen -m runs/digits/model.attn

  ffmpeg -loglevel error -i talk.mp3 -f s16le -ac 1 -ar 16000 - | attn listen -m model.attn

  mkfifo /tmp/mic; attn listen /tmp/mic --pcm f32le --rate 48000 --channels 2

  attn listen recording.wav --realtime         # a file, released at its own pace

  arecord -q -f S16_LE -r 16000 - | attn listen --events     # sound events as they end

  attn listen day.pcm --events --event-set gate_db=10         # override one stored setting

  arecord -q -f S16_LE -r 16000 - | attn listen --min-score 0.8   # `unknown` below 0.8

Input: raw PCM (--pcm, --rate, --channels; the rate defaults to the model's, another is
resampled as it arrives), or a stream that starts with a WAV header (arecord's default),
whose format is then used. Output: one JSON line per window as soon as the window is whole,
{"input", "start", "end", "label", "score"}, times in seconds of stream: the records
`attn predict --per-frame` gives the same audio saved to a file. A window whose top score is
below the min score (--min-score, else the one stored by train.abstain) is `unknown`, its best
label in best_label; a multi-label model's windows give {"input", "start", "end", "labels",
"scores"}, the classes at or above their thresholds. With --events: one line per
sound event {"input", "label", "start", "end", "score"} once no later window can change it,
with the post-processing stored in the model (`attn info` shows it; tuned by attn train or
attn tune-events), as attn predict --events finds a file's: its hop, smoothing, hysteresis,
gap, duration, padding, the noise-floor gate (a running floor: the last 10 minutes, after a
10 s warm-up) and classify: segments (spans of up to 30 s labelled as one clip; longer ones in
30 s pieces). Ctrl-C or the end of the
stream scores what has arrived and stops: exit 130 or 0.
"""


@handle_errors
def listen_cmd(
    source: Annotated[str, typer.Argument(help="- (stdin), a FIFO, or a file.")] = "-",
    model: ModelOpt = None,
    pcm: Annotated[Literal["s16le", "f32le"], typer.Option(help="Raw sample format.")] = "s16le",
    rate: Annotated[
        int | None, typer.Option(min=1, help="Samples per second. Default: the model's.", show_default=False)
    ] = None,
    channels: Annotated[int, typer.Option(min=1, help="Interleaved channels (averaged).")] = 1,
    realtime: Annotated[
        bool, typer.Option("--realtime", help="Release a file's audio at its own pace (a replayed recording).")
    ] = False,
    stall: Annotated[
        float, typer.Option(min=0.1, help="Warn when no audio arrived for this many seconds (then keep listening).")
    ] = 5.0,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Also report the k best labels.")] = 1,
    min_score: MinScoreOpt = None,
    min_similarity: MinSimilarityOpt = None,
    threshold: ThresholdOpt = None,
    events: Annotated[
        bool, typer.Option("--events", help="One record per sound event (label, start, end), not per window.")
    ] = False,
    event_set: Annotated[
        list[str] | None,
        typer.Option(
            "--event-set",
            help="An event setting KEY=VALUE overriding the model's stored one (on, off, smooth, smooth_seconds, "
            "min_duration, min_gap, pad, gate_db, classify, margin; gate_db=off with classify=windows for no "
            "noise-floor gate; repeatable; implies --events).",
            show_default=False,
        ),
    ] = None,
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Classify a live audio stream (raw PCM or WAV on stdin or a FIFO) window by window."""
    import attn
    from attn.api import check_min_score, check_min_similarity

    check_min_score(min_score)  # before the model loads
    check_min_similarity(min_similarity)
    if source == "-" and is_tty(sys.stdin):
        raise fail("no stream on stdin (it is a terminal): pipe audio in, e.g. arecord -q -f S16_LE -r 16000 - | "
                   "attn listen, or give a FIFO or a file")  # fmt: skip
    setup_logging(quiet)
    m = attn.load(model, device)
    if m.modality != "audio":
        raise fail(f"{m.path}: attn listen needs an audio model; this is a text model")
    if not m.exported:
        set_threads(threads)
    settings = _event_settings(event_set or [])
    stop = threading.Event()
    records = m.listen(source, pcm=pcm, rate=rate, channels=channels, realtime=realtime, stall_seconds=stall,
                       top_k=top_k, events=settings if (events or settings) else False, stop=stop,
                       min_score=min_score, threshold=threshold, min_similarity=min_similarity)  # fmt: skip
    from . import render

    previous = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)

    def on_signal(signum, frame) -> None:
        """The first Ctrl-C (or a SIGTERM) ends the stream: what arrived is still scored and
        written; a second Ctrl-C interrupts."""
        State.terminated = State.terminated or signum == signal.SIGTERM
        stop.set()
        signal.signal(signal.SIGINT, previous[0])

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        seen = render.write_jsonl(records)
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])
    if stop.is_set():
        what = "sound event(s)" if (events or settings) else "window(s)"
        err(f"{stopped_by()}: the stream's {len(seen)} {what} so far were written")
        raise typer.Exit(interrupted_code())


def _event_settings(items: list[str]) -> dict:
    """--event-set on=0.7 --event-set smooth=mean -> {"on": 0.7, "smooth": "mean"};
    `none`/`off` -> None (gate_db=off: no noise-floor gate, with classify=windows)."""
    out: dict = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise fail(f"--event-set {item!r}: expected KEY=VALUE, e.g. on=0.7")
        if value.strip().lower() in ("none", "off", "null"):
            out[key.strip()] = None
            continue
        try:
            out[key.strip()] = float(value)
        except ValueError:
            out[key.strip()] = value.strip()
    return out
