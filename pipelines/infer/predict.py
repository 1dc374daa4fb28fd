"""`attn predict`: files in, one record per input out, in input order.

Files are decoded in worker threads while the model runs; windows from several files share a
batch. A recording longer than `STREAM_SECONDS` is streamed window by window, so memory stays
bounded whatever its length. A file that cannot be read becomes an error record; the others
are still predicted.
"""

from __future__ import annotations

import logging
import os
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from attn.errors import ConfigError, InputError
from attn.features.audio import SILENT_PEAK
from attn.features.config import AUDIO_EXTENSIONS

from .events import centre_level_db, edge_levels
from .inference import AGGREGATES, aggregate, heard_windows, top_labels, window_level_db
from .loaded import Loaded

STREAM_SECONDS = 120.0
WARN_FRACTION = 10  # a record gets a "warning" below 1/10 of a window of audio
# ... or below half the model's sample rate: the top half of the band the model learned from is
# empty (a digits model at 8 kHz, on 100 FSDD clips at 4 kHz: 69% right, at 2 kHz 28%; the warning
# came only under a tenth). A telephone recording (8 kHz) for a 22.05 kHz model is warned of too.
RATE_FRACTION = 2
POOL = 4  # batches of windows gathered before running them sorted by length


def expand_inputs(inputs: Iterable[str], extensions: tuple[str, ...] = AUDIO_EXTENSIONS, stdin=None) -> list[str]:
    """`expand_paths`, and '-' -> one path per stdin line (the command line's inputs)."""
    out: list[str] = []
    for arg in inputs:
        if arg == "-":
            out += _stdin_paths(stdin if stdin is not None else sys.stdin)
        else:
            out += expand_paths([arg], extensions)
    return out


def _stdin_paths(stream) -> list[str]:
    """One path per line of `stream`. Audio bytes piped in instead (`cat x.wav | attn predict -`:
    every audio format's header holds a NUL byte, no path can) are a ConfigError saying what `-`
    reads, not an internal error on a path with a NUL byte in it."""
    if stream is None:  # started with stdin closed (`<&-`): was an internal error (TypeError)
        raise ConfigError("-: stdin is closed; give the files as arguments, or pipe one path per line")
    try:
        lines = [line.strip() for line in stream if line.strip()]
    except UnicodeDecodeError:
        lines = ["\0"]
    if lines and lines[0].startswith("\ufeff"):  # a list saved by Notepad: its byte-order mark is no path's
        lines[0] = lines[0][1:].strip()
    if any("\0" in line for line in lines):
        parts = [p for line in lines for p in line.split("\0") if p.strip()]
        if parts and all(os.path.exists(p) for p in parts):  # `find -print0 | attn predict -`
            raise ConfigError("stdin holds NUL-separated paths (find -print0?): `-` reads one file path per "
                              "line (find -print, or xargs -0 attn predict)")  # fmt: skip
        raise ConfigError("stdin holds binary data (audio?), not paths: `-` reads one file path per line "
                          "(audio streamed on stdin: attn listen)")  # fmt: skip
    return lines


def expand_paths(paths: Iterable[str], extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> list[str]:
    """Files as given; directories -> their audio files (recursive, sorted). Paths that do not
    exist are kept: they become error records, in order."""
    from ..data.folders import audio_files, unread_audio, unread_note

    out: list[str] = []
    for arg in paths:
        if os.path.isdir(arg):
            unreadable: list[str] = []
            found = sorted(str(p) for p in audio_files(arg, extensions, unreadable))  # as text: predict's order
            if not found and not unreadable:
                out.append(arg)  # reported as "no audio files" below
            elif counts := unread_audio(arg, extensions):  # beside readable ones they were passed over unsaid
                logging.getLogger("attn").warning(f"{arg}: {unread_note(counts)}")
            out += found + unreadable  # a folder that cannot be read: an error record, not passed over
        else:
            out.append(arg)
    return out


@dataclass(frozen=True)
class AudioArray:
    """A recording in memory: `samples` (samples,) or (samples, channels) float at `sample_rate`;
    `name` is what its record calls it (the "input" field)."""

    name: str
    samples: np.ndarray
    sample_rate: int


@dataclass
class _File:
    index: int
    path: str
    error: str | None = None
    seconds: float = 0.0
    rate: int = 0  # the input's own sample rate, and its samples at that rate (for the warnings)
    samples: int = 0
    local: str | None = None  # a pipe's spooled copy (features.audio.spool), removed once predicted
    windows: list[tuple[int, np.ndarray, int]] | None = None  # (start, samples, length)
    stream: bool = False
    probs: list[np.ndarray] = field(default_factory=list)
    spans: list[tuple[int, int]] = field(default_factory=list)
    levels: list[float] = field(default_factory=list)  # keep_scores: each window's centre level (dB)
    loudness: list[float] = field(default_factory=list)  # each window's level (dB): its quiet ones do not vote
    lead: list[float] = field(default_factory=list)  # keep_scores: edge rows' levels before the first centre
    last: tuple[int, np.ndarray, int] | None = None  # keep_scores: the latest window (start, samples, length)
    vectors: list[np.ndarray] = field(default_factory=list)  # a novelty check's window embeddings (D,)
    peak: float = 0.0  # the largest sample magnitude seen (0: a silent file)
    short: str | None = None  # decoding gave well under what the header states
    pending: int = 0
    similarity: float | None = None


class AudioPredictor:
    """Predict audio files (or `AudioArray`s) with a loaded model: `artifact.load_model`'s, or an
    exported ONNX file's (`exported.load_exported`, no torch)."""

    def __init__(
        self,
        loaded: Loaded,
        batch_size: int = 64,
        aggregate_how: str = "mean",
        top_k: int = 1,
        per_frame: bool = False,
        workers: int = 2,
        hop_seconds: float | None = None,
        keep_scores: bool = False,
        threshold: float | None = None,
    ) -> None:
        """`hop_seconds`: frame at this hop instead of the model's (events want a hop finer than
        the window); `keep_scores`: a record also holds "scores", its windows' outputs (W, K)
        float32 in time order, "levels_db" (W,), each window's `events.centre_level_db`, and
        "edge_levels_db", the levels of the edge rows around them (`events.edge_levels`)
        (infer/events_predict.py turns them into events); `threshold`: a multi-label model's
        decision threshold for every class (default: the per-class ones it stores)."""
        from .multilabel import VOTE_MULTI, model_thresholds

        if aggregate_how not in AGGREGATES:
            raise ConfigError(f"aggregate {aggregate_how!r}: use one of {', '.join(AGGREGATES)}")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:  # "2" from a caller: a TypeError
            raise ConfigError(f"top_k {top_k!r}: give a whole number of labels, 1 or more")
        self.thresholds = model_thresholds(loaded, threshold)  # multi-label models only
        if self.thresholds is not None and aggregate_how == "vote":
            raise ConfigError(VOTE_MULTI)
        self.loaded = loaded
        self.cfg = loaded.recipe.features
        if hop_seconds is not None:
            self.cfg = self.cfg.model_copy(update={"hop_seconds": float(hop_seconds)})
        self.keep_scores = keep_scores
        self.novelty = getattr(loaded, "novelty", None)  # train.abstain.novelty: records get "similarity"
        self.labels = loaded.labels
        self.batch_size = batch_size
        self.how = aggregate_how
        self.top_k = max(1, min(top_k, len(self.labels)))
        self.per_frame = per_frame
        self.workers = workers

    # decoding (worker threads) ------------------------------------------------------------------
    def _read(self, index: int, path: str | AudioArray) -> _File:
        from attn.features.audio import audio_info, from_array, is_stream, iter_windows, spool

        if isinstance(path, AudioArray):
            f = _File(index, path.name)
            try:
                x = from_array(path.samples, path.sample_rate, self.cfg.sample_rate, path.name)
                f.seconds = len(path.samples) / path.sample_rate
                f.rate, f.samples = int(path.sample_rate), len(path.samples)
                f.windows = list(iter_windows(iter([x]), self.cfg.frame_samples, self.cfg.hop_samples))
            except InputError as e:
                f.error = str(e)
            return f
        f = _File(index, path)
        try:
            if os.path.isdir(path):
                from ..data.folders import unread_audio, unread_note

                if not os.access(path, os.R_OK | os.X_OK):
                    raise InputError(f"{path}: cannot read folder (permission denied)")

                unread = unread_note(unread_audio(path, AUDIO_EXTENSIONS))  # e.g. a folder of .m4a recordings
                raise InputError(f"{path}: directory contains no audio files" + (f" ({unread})" if unread else ""))
            if is_stream(path):  # `<(cat x.wav)`, a FIFO: read once, into a file soundfile can seek in
                f.local = spool(path)
            info = audio_info(f.local or path, path)
            f.seconds, f.rate, f.samples = info.seconds, info.sample_rate, info.frames
            if info.seconds > STREAM_SECONDS:
                f.stream = True
                return f
            f.windows = list(iter_windows(self._blocks(f), self.cfg.frame_samples, self.cfg.hop_samples))
            self._check_length(f, max((start + n for start, _, n in f.windows), default=0))
        except InputError as e:
            f.error = str(e)
        return f

    def _check_length(self, f: _File, decoded_samples: int) -> None:
        """MP3 and Ogg headers only estimate the length (WAV and FLAC state it exactly, and
        decoding refuses them when cut short): a damaged or cut-off file decodes to less. The
        record then says so, and its duration is what was heard (a long file's too, streamed)."""
        decoded = decoded_samples / self.cfg.sample_rate
        if f.seconds - decoded > max(0.5, 0.05 * f.seconds):
            f.short = (f"decoded {decoded:.2f} s of the {f.seconds:.2f} s its header states: the file may be cut "
                       "off or damaged")  # fmt: skip
            f.seconds = decoded

    def _blocks(self, f: _File) -> Iterator[np.ndarray]:
        from attn.features.audio import stream_audio

        return stream_audio(f.local or f.path, self.cfg.sample_rate, name=f.path)

    # model ----------------------------------------------------------------------------------------
    def _run(self, rows: list[tuple[_File, int, np.ndarray, int]]) -> None:
        windows = [w[:n] for _, _, w, n in rows]
        probs = self.loaded.window_probs(windows)  # (B, K)
        vectors = self.loaded.window_embeddings(windows) if self.novelty is not None else [None] * len(rows)  # (B, D)
        for (f, start, w, n), p, v in zip(rows, probs, vectors, strict=True):
            f.probs.append(p)
            if f.peak < SILENT_PEAK and n:
                f.peak = max(f.peak, heard_peak(w, n, self.cfg))
            if v is not None:
                f.vectors.append(v)
            if self.keep_scores:
                f.levels.append(centre_level_db(w, n, self.cfg.hop_samples))
                if start == 0:
                    f.lead = edge_levels(w, n, self.cfg.frame_samples, self.cfg.hop_samples, "lead")
                if f.last is None or start > f.last[0]:
                    f.last = (start, w, n)
            f.loudness.append(window_level_db(w[:n]))
            f.spans.append((start, n))
            f.pending -= 1

    def _flush(self, batch: list, final: bool = False) -> list:
        """Once `POOL` batches' worth of windows wait (or at the end), run them sorted by length:
        clips of similar length share a batch, so little compute goes to padding (FSDD clips
        are 0.14-2.3 s; one long clip would otherwise pad its whole batch)."""
        if not batch or (len(batch) < self.batch_size * POOL and not final):
            return batch
        batch.sort(key=lambda row: row[3])
        for i in range(0, len(batch), self.batch_size):
            self._run(batch[i : i + self.batch_size])
        return []

    def predict(self, paths: list[str | AudioArray]) -> Iterator[dict[str, Any]]:
        """Yield one record per path (or array), in order."""
        from attn.features.audio import iter_windows

        lookahead = max(4, 2 * self.workers)
        batch: list[tuple[_File, int, np.ndarray, int]] = []
        done: deque[_File] = deque()
        futures: deque = deque()
        try:
            with ThreadPoolExecutor(self.workers) as pool:
                it = iter(enumerate(paths))

                def fill() -> None:
                    while len(futures) < lookahead:
                        nxt = next(it, None)
                        if nxt is None:
                            return
                        futures.append(pool.submit(self._read, *nxt))

                fill()
                while futures:
                    f = futures.popleft().result()
                    fill()
                    done.append(f)
                    if f.error is None and f.stream:
                        try:
                            end = 0
                            for start, w, n in iter_windows(self._blocks(f), self.cfg.frame_samples,
                                                            self.cfg.hop_samples):  # fmt: skip
                                f.pending += 1
                                end = start + n
                                batch.append((f, start, w, n))
                                batch = self._flush(batch)
                            self._check_length(f, end)
                        except InputError as e:
                            f.error = str(e)
                    elif f.error is None:
                        for start, w, n in f.windows or []:
                            f.pending += 1
                            batch.append((f, start, w, n))
                        f.windows = None
                        batch = self._flush(batch)
                    # Emit, in input order, every file whose windows have all been through the model.
                    while done and (done[0].error is not None or done[0].pending == 0):
                        yield self._record(done.popleft())
                self._flush(batch, final=True)
                while done:
                    yield self._record(done.popleft())
        finally:  # also when the caller stops early (a closed pipe downstream): no spooled copy stays
            for f in [*done, *(fut.result() for fut in futures if fut.done() and fut.exception() is None)]:
                unspool(f)

    def _record(self, f: _File) -> dict[str, Any]:
        unspool(f)
        if f.error is not None:
            return {"input": f.path, "error": f.error}
        if not f.probs:
            return {"input": f.path, "error": f"{f.path}: no audio windows"}
        order = sorted(range(len(f.spans)), key=lambda i: f.spans[i][0])  # windows ran sorted by length
        f.spans = [f.spans[i] for i in order]
        f.levels = [f.levels[i] for i in order] if f.levels else []
        f.loudness = [f.loudness[i] for i in order]
        if f.vectors:  # the clip's embedding: the mean of its heard windows' (as the bank's and `attn embed`'s)
            vecs = np.stack([f.vectors[i] for i in order])[heard_in_file(f)]  # (W', D), W' >= 1
            f.similarity = float(self.novelty.similarity(vecs.mean(0)[None])[0])
        return self._file_record(f, np.stack([f.probs[i] for i in order]))

    def _file_record(self, f: _File, probs: np.ndarray) -> dict[str, Any]:
        """The record of a file whose windows' outputs `probs` (W, K) are in time order (`f.spans`)."""
        if self.thresholds is not None:
            return self._tag_record(f, probs)
        scores = aggregate(probs, np.zeros(len(probs), dtype=np.int64), 1, self.how, heard=heard_in_file(f))[0]
        top = top_labels(scores, self.labels, self.top_k)
        rec: dict[str, Any] = {"input": f.path, **top[0], "duration": _seconds(f.seconds), "windows": len(probs)}
        if f.similarity is not None:
            rec["similarity"] = round(f.similarity, 6)
        warning = self._warning(f)
        if warning:
            rec["warning"] = warning
        if self.top_k > 1:
            rec["top_k"] = top
        if self.keep_scores:
            rec.update(self._kept(f, probs))
        if self.per_frame:
            sr = self.cfg.sample_rate
            rec["frames"] = _quiet_marked(f, [frame_record(s, n, p, self.labels, sr)
                                              for (s, n), p in zip(f.spans, probs, strict=True)])  # fmt: skip
        return rec

    def _tag_record(self, f: _File, probs: np.ndarray) -> dict[str, Any]:
        """A multi-label model's record: the labels above threshold and every class's score (the
        windows' probabilities averaged; per frame, each window's labels)."""
        from .multilabel import tag_record

        heard = probs[heard_in_file(f)]  # a recording's quiet windows do not vote (inference.QUIET_DB)
        scores = heard.max(0) if self.how == "max" else heard.mean(0)  # sigmoids: each label on its own
        rec = {"input": f.path, **tag_record(scores, self.labels, self.thresholds), "duration": _seconds(f.seconds),
               "windows": len(probs)}  # fmt: skip
        warning = self._warning(f)
        if warning:
            rec["warning"] = warning
        if self.keep_scores:
            rec.update(self._kept(f, probs))
        if self.per_frame:
            sr = self.cfg.sample_rate
            rec["frames"] = _quiet_marked(f, [{"start": round(s / sr, 3), "end": round((s + n) / sr, 3),
                                               **tag_record(p, self.labels, self.thresholds)}
                                              for (s, n), p in zip(f.spans, probs, strict=True)])  # fmt: skip
        return rec

    def _kept(self, f: _File, probs: np.ndarray) -> dict[str, Any]:
        """For events (events_predict.score_curves): the windows' outputs (W, K) and centre levels
        (W,), and the levels of the edge rows before the first and after the last window's centre
        (`events.edge_levels`)."""
        tail = edge_levels(f.last[1], f.last[2], self.cfg.frame_samples, self.cfg.hop_samples, "tail") if f.last else []
        return {"scores": probs, "levels_db": np.asarray(f.levels), "edge_levels_db": (f.lead, tail)}

    def _warning(self, f: _File) -> str | None:
        notes = [w for w in (f.short, input_warning(f.seconds, f.rate, self.cfg, f.peak)) if w]
        return "; ".join(notes) or None


def frame_record(start: int, length: int, probs: np.ndarray, labels: list[str], sample_rate: int) -> dict[str, Any]:
    """One window's record (`--per-frame`'s "frames" items, `attn listen`'s lines): its span in
    seconds from the recording's start, its best label and that label's probability (K,)."""
    return {
        "start": round(start / sample_rate, 3),
        "end": round((start + length) / sample_rate, 3),
        "label": labels[int(probs.argmax())],
        "score": round(float(probs.max()), 6),
    }


def _seconds(s: float) -> float:
    """A duration for a record: to the millisecond, or 3 significant digits under one (a
    one-sample file was 0.0 s while its warning said 6.25e-05 s)."""
    return round(s, 3) if s >= 0.001 or s == 0 else float(f"{s:.3g}")


def _quiet_marked(f: _File, frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`--per-frame` records, the windows that took no part in the file's score marked
    "quiet": true (so the file's score is the mean of the others')."""
    heard = heard_in_file(f)
    return [fr if h else {**fr, "quiet": True} for fr, h in zip(frames, heard, strict=True)]


def heard_in_file(f: _File) -> np.ndarray:
    """(W,) the windows of a file (time order) that take part in its score."""
    return heard_windows(np.asarray(f.loudness), np.zeros(len(f.loudness), dtype=np.int64), 1)


def heard_peak(window: np.ndarray, length: int, cfg) -> float:
    """The largest sample magnitude of a window's `length` valid samples as the model hears them:
    the mono mix, less its mean when the features remove the DC offset (for `input_warning`)."""
    x = window[:length]
    if getattr(cfg, "remove_dc", False):
        x = x - x.mean()
    return float(np.abs(x).max()) if len(x) else 0.0


def input_warning(seconds: float, rate: int, cfg, peak: float | None = None) -> str | None:
    """Why a prediction (or explanation) deserves little trust though it ran: the input holds
    under a tenth of a window of audio (the model sees mostly padding), was recorded at under
    half the model's sample rate (upsampled, it has nothing in the top of the band the model
    knows), or is silent (`peak` under SILENT_PEAK; None: not known). `rate` 0: unknown."""
    silent = peak is not None and peak < SILENT_PEAK and seconds
    notes = (["silent: no sample reaches one 16-bit step (1/32768) once mixed to mono, less any DC offset, so the "
              "label says nothing about it"] if silent else [])  # fmt: skip
    if seconds < cfg.frame_seconds / WARN_FRACTION:
        notes.append(f"{seconds:g} s of audio, under a tenth of the model's {cfg.frame_seconds:g} s window: "
                     "the prediction rests mostly on padding")  # fmt: skip
    if rate and rate * RATE_FRACTION < cfg.sample_rate:
        notes.append(f"recorded at {rate} Hz, under half the model's {cfg.sample_rate} Hz: it holds nothing "
                     f"above {rate / 2:g} Hz, where the model learned up to {cfg.sample_rate / 2:g} Hz")  # fmt: skip
    return "; ".join(notes) or None


def unspool(f: _File) -> None:
    if f.local is not None:
        try:
            os.unlink(f.local)
        except OSError:
            pass
        f.local = None
