"""`attn listen`: a live PCM stream in, one record per window out as soon as the window is whole.

The stream (stdin, a FIFO, or a file read at its own pace) is decoded to the samples soundfile
would give for the same audio in a WAV file, resampled with the streaming soxr resampler that
file decoding uses, framed by `features.audio.iter_windows` and scored by the model's
`window_probs`, exactly as `attn predict --per-frame` frames and scores a file: a recording
streamed gives that command's window records. Memory holds one window plus one read, however
long the stream runs.

A window is emitted when the first sample after it arrives (or the stream ends): only then is it
known not to be the recording's last, shorter one (`iter_windows`). Reads return whatever the
pipe holds, so that wait is one read of the writer (arecord: ~30 ms).
"""

from __future__ import annotations

import logging
import os
import select
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from threading import Event
from typing import Any

import numpy as np

from attn.errors import ConfigError, InputError
from attn.features.pcm import PcmDecoder, PcmFormat, parse_wav_header

from .events import EventSettings, centre_level_db, edge_levels, lead_rows
from .loaded import Loaded
from .predict import RATE_FRACTION, frame_record, input_warning

log = logging.getLogger("attn")

READ_BYTES = 1 << 16  # one read of a pipe: what it holds, up to this
PACE_SECONDS = 0.02  # a file read at its own pace arrives in reads of this much audio
POLL_SECONDS = 0.1  # how often a waiting read looks at the stop flag and the stall clock
DRAIN_BYTES = 1 << 20  # on stop, audio already waiting in the pipe is still scored, up to this


@dataclass(frozen=True)
class ListenOptions:
    fmt: PcmFormat  # the flags' format; a WAV header at the stream's start replaces it
    realtime: bool = False  # release the audio at its own pace (a file), not as fast as it decodes
    stall_seconds: float = 5.0  # warn when no audio arrived for this long (then keep listening)
    top_k: int = 1
    events: EventSettings | None = None  # records are then sound events (live_segments.py), not windows
    events_hop: float = 0.1  # seconds between the windows events are found in (predict --events' hop)
    # A multi-label model's per-class decision thresholds (K,): window records then carry "labels"
    # and "scores", as predict --per-frame's frames of such a model do. None: single-label.
    thresholds: tuple[float, ...] | None = None


class Listener:
    """Score a PCM stream with a loaded model (`artifact.load_model`'s or `exported.load_exported`'s)."""

    def __init__(self, loaded: Loaded, options: ListenOptions, stop: Event | None = None) -> None:
        self.loaded, self.options = loaded, options
        self.cfg = loaded.recipe.features
        self.labels = list(loaded.labels)
        self.stop = stop or Event()
        self.stats = {"samples": 0, "windows": 0, "trailing_bytes": 0}  # for the caller's summary

    def listen(self, source: str = "-") -> Iterator[dict[str, Any]]:
        """One record per window, in stream order: {"input", "start", "end", "label", "score"}
        (+ "top_k"; + "similarity" for a model with a novelty check; a multi-label model's:
        {"input", "start", "end", "labels", "scores"}), times in seconds of stream; with
        `options.events`, one per sound event instead ({"input", "label", "start", "end",
        "score"}), once no later window can change it. `source`: "-" (stdin), a FIFO or a file."""
        from attn.features.audio import iter_windows

        name = "stdin" if source == "-" else source
        fd = _stdin() if source == "-" else _open(source)
        sr, frame, hop = self.cfg.sample_rate, self.cfg.frame_samples, self.cfg.hop_samples
        live = None
        end = 0
        try:
            chunks = _reads(fd, name, self.options, self.stop)
            blocks = self._samples(chunks, name)
            if self.options.events is not None:  # rows at the windows' centres, as predict --events scores them
                from .live_segments import StreamEvents

                hop = max(1, round(self.options.events_hop * sr))
                first = (frame / 2 - lead_rows(frame, hop) * hop) / sr  # edge rows before the first centre (events.py)
                live = StreamEvents(name, self.loaded, hop / sr, self.options.events, start=first)
                blocks = live.tee(blocks)
            last = None  # the latest window (samples, length, scores): its tail's edge rows end the stream
            novelty = getattr(self.loaded, "novelty", None) if live is None else None  # train.abstain.novelty
            for start, window, n in iter_windows(blocks, frame, hop):
                one = [window[:n]]  # the same list twice: an exported model runs its graph once for both
                probs = np.asarray(self.loaded.window_probs(one)[0])  # (K,)
                self.stats["windows"] += 1
                end = start + n
                if live is None:
                    rec = self._record(name, start, n, probs)
                    if novelty is not None:  # the window's similarity to the training clips, as predict's
                        vector = np.asarray(self.loaded.window_embeddings(one))  # (1, D)
                        rec["similarity"] = round(float(novelty.similarity(vector)[0]), 6)
                    yield rec
                else:
                    edge = edge_levels(window, n, frame, hop, "lead") if start == 0 else []
                    for level in [*edge, centre_level_db(window, n, hop)]:
                        yield from live.push(probs, level, now=end / sr)
                    last = (window, n, probs)
            if live is not None:
                for level in edge_levels(last[0], last[1], frame, hop, "tail") if last else []:
                    yield from live.push(last[2], level, now=end / sr)
                yield from live.close(end / sr)
        finally:
            if fd != 0:
                os.close(fd)

    def _record(self, name: str, start: int, n: int, probs: np.ndarray) -> dict[str, Any]:
        from .inference import top_labels

        if self.options.thresholds is not None:
            from .multilabel import tag_record

            sr = self.cfg.sample_rate
            th = np.asarray(self.options.thresholds, dtype=float)
            return {"input": name, "start": round(start / sr, 3), "end": round((start + n) / sr, 3),
                    **tag_record(probs, self.labels, th)}  # fmt: skip
        rec = {"input": name, **frame_record(start, n, probs, self.labels, self.cfg.sample_rate)}
        if self.options.top_k > 1:
            rec["top_k"] = top_labels(probs, self.labels, min(self.options.top_k, len(self.labels)))
        return rec

    def _samples(self, chunks: Iterator[bytes], name: str) -> Iterator[np.ndarray]:
        """Byte chunks -> float32 mono blocks at the model's rate (samples,)."""
        fmt, head = self.options.fmt, b""
        for chunk in chunks:
            head += chunk
            if len(head) >= 4:
                break
        container = _encoded(head)
        if container:
            raise InputError(f"{name}: {container} data: attn listen reads raw PCM or WAV (decode it first, e.g. "
                             "ffmpeg -i IN -f wav -; attn predict reads such files whole)")  # fmt: skip
        if head[:4] == b"RIFF":
            while (found := parse_wav_header(head, name)) is None:
                more = next(chunks, None)
                if more is None:
                    raise InputError(f"{name}: the stream ended inside its WAV header ({len(head)} bytes)")
                head += more
            fmt, skip, length = found
            head = head[skip:]
            self._check_header(name, fmt)
            if length is not None:  # what follows the samples (a LIST or id3 chunk) is not audio
                chunks, head = _first_bytes(chunks, head, length, name)
        decoder = PcmDecoder(fmt, name)
        resampler = self._resampler(fmt, name)
        began = time.monotonic()
        for chunk in _prepend(head, chunks):
            x = decoder.decode(chunk)
            self.stats["samples"] += len(x)
            if self.options.realtime:  # released when the audio it holds would have been played
                time.sleep(max(0.0, began + self.stats["samples"] / fmt.rate - time.monotonic()))
            if resampler is not None:
                x = resampler.resample_chunk(x, last=False)
            if x.size:
                yield x
        if resampler is not None:
            tail = resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
            if tail.size:
                yield np.ascontiguousarray(tail, dtype=np.float32)
        if decoder.pending:
            self.stats["trailing_bytes"] = decoder.pending
            log.warning(f"{name}: the stream ended inside a sample: {decoder.pending} trailing byte(s) dropped "
                        f"(one sample of every channel is {fmt.frame_bytes} bytes of {fmt.encoding}); "
                        "every whole sample was scored")  # fmt: skip
        if self.stats["samples"] == 0 and not self.stop.is_set():  # stopped before any audio: nothing to say
            raise InputError(f"{name}: the stream holds no audio samples")
        short = input_warning(self.stats["samples"] / fmt.rate, 0, self.cfg)  # the length note only, as predict's
        if short and self.stats["samples"]:
            log.warning(f"{name}: {short}")

    def _check_header(self, name: str, fmt: PcmFormat) -> None:
        flags = self.options.fmt
        if fmt != flags:
            log.info(f"{name}: WAV header: {fmt.encoding}, {fmt.rate} Hz, {fmt.channels} channel(s) "
                     "(it replaces --pcm/--rate/--channels)")  # fmt: skip

    def _resampler(self, fmt: PcmFormat, name: str):
        sr = self.cfg.sample_rate
        if fmt.rate == sr:
            return None
        if fmt.rate * RATE_FRACTION < sr:
            log.warning(f"{name}: the stream is at {fmt.rate} Hz, under half the model's {sr} Hz: it holds "
                        f"nothing above {fmt.rate / 2:g} Hz, so its predictions deserve little trust")  # fmt: skip
        else:
            log.warning(f"{name}: the stream is at {fmt.rate} Hz, the model at {sr} Hz: resampling as it "
                        "arrives (as attn predict resamples a file)")  # fmt: skip
        import soxr

        return soxr.ResampleStream(fmt.rate, sr, 1, dtype="float32", quality="HQ")


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest


ENCODED = {b"fLaC": "FLAC", b"OggS": "Ogg", b"ID3": "MP3", b"FORM": "AIFF", b".snd": "AU", b"caff": "CAF",
           b"RF64": "RF64", b"riff": "Wave64"}  # fmt: skip


def _first_bytes(chunks: Iterator[bytes], head: bytes, n: int, name: str = "stream") -> tuple[Iterator[bytes], bytes]:
    """(the rest of the stream after `head`, `head`), together `n` bytes long at most. Bytes past
    `n` that do not start a RIFF chunk (LIST, id3: not audio) are audio the header's length left
    out: said once, as the stream then ended without a word (its producer got SIGPIPE)."""

    def said(after: bytes) -> None:
        after = after[n % 2 :]  # an odd-sized chunk is followed by a pad byte
        if len(after) >= 4 and not all(32 <= c < 127 for c in after[:4]):
            log.warning(f"{name}: audio continues past the {n} bytes of data its WAV header declares; the rest is "
                        "ignored (a header written before the length was known? put 0 or 0xFFFFFFFF there, or "
                        "stream raw PCM with --pcm)")  # fmt: skip

    def rest() -> Iterator[bytes]:
        left = n - len(head)
        if left < 0:
            said(head[n:])
        for chunk in chunks:
            if left <= 0:
                if left == 0:
                    said(chunk)
                return
            yield chunk[:left]
            if len(chunk) > left:
                said(chunk[left:])
            left -= len(chunk)

    return rest(), head[:n]


def _encoded(head: bytes) -> str | None:
    """The container format a stream's first bytes name, when it is one listen does not decode
    (raw PCM has no header: these would be scored as noise, with confident labels)."""
    for magic, name in ENCODED.items():
        if head.startswith(magic):
            return name
    return None  # (an MP3 without an ID3 tag starts with a frame sync a PCM sample may also hold)


def _stdin() -> int:
    """File descriptor 0, or a ConfigError when the process started with it closed (`<&-`): the
    first read was an internal error (OSError: Bad file descriptor)."""
    try:
        os.fstat(0)
    except OSError:
        raise ConfigError("-: stdin is closed; pipe the audio in, or give a FIFO or a file") from None
    return 0


def _open(path: str) -> int:
    """A FIFO or a file, opened for reading (a FIFO's open waits for its writer)."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise InputError(f"{path}: cannot open ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{path}: is a directory; give a PCM or WAV stream: -, a FIFO or a file")
    try:
        return os.open(path, os.O_RDONLY)
    except OSError as e:
        raise InputError(f"{path}: cannot open ({e.strerror or e})") from None


def _reads(fd: int, name: str, options: ListenOptions, stop: Event) -> Iterator[bytes]:
    """Chunks of the stream as they arrive, until it ends or `stop` is set (then what already
    waits in the pipe is still read). A wait longer than `options.stall_seconds` logs one
    warning; the stream may resume. A regular file is read in `PACE_SECONDS` pieces (see
    `options.realtime`)."""
    regular = stat.S_ISREG(os.fstat(fd).st_mode)
    size = READ_BYTES
    if regular:
        size = max(options.fmt.frame_bytes, int(options.fmt.rate * PACE_SECONDS) * options.fmt.frame_bytes)
    last, stalled = time.monotonic(), False
    while not stop.is_set():
        if not regular and not select.select([fd], [], [], POLL_SECONDS)[0]:
            waited = time.monotonic() - last
            if not stalled and waited >= options.stall_seconds:
                stalled = True
                log.warning(f"{name}: no audio for {waited:.0f} s: the stream stalled; still listening "
                            "(every window so far was written)")  # fmt: skip
            continue
        data = _read(fd, size, name)
        if not data:
            return
        if stalled:
            log.info(f"{name}: audio resumed after {time.monotonic() - last:.1f} s")
            stalled = False
        last = time.monotonic()
        yield data
    if regular:  # a file's rest has not "arrived": stop where the clock stopped
        return
    drained = 0
    while drained < DRAIN_BYTES and select.select([fd], [], [], 0)[0]:
        data = _read(fd, size, name)
        if not data:
            return
        drained += len(data)
        yield data


def _read(fd: int, size: int, name: str) -> bytes:
    try:
        return os.read(fd, size)
    except OSError as e:
        raise InputError(f"{name}: cannot read ({e.strerror or e})") from None
