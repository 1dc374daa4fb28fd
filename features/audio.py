"""Audio decoding: soundfile -> mono -> resample (soxr), streamed in blocks.

Training and prediction read files through the same `stream_audio`, so a window cut from a long
recording while streaming holds exactly the samples the whole-file decode would give.
Every failure is an `InputError` whose message starts with the file name.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from attn.errors import InputError

from .levels import check_samples

# Below one 16-bit step nothing is recorded: channels that cancel in the mono mix leave half a step
# of rounding, a constant offset nothing once removed (predict warns on such a file, training too)
SILENT_PEAK = 2.0**-15
BLOCK_SECONDS = 30.0
# Containers whose header states the exact sample count, so a short read means truncation.
_EXACT_LENGTH_FORMATS = {"WAV", "WAVEX", "FLAC", "AIFF", "AU", "W64", "RF64", "CAF"}


@dataclass(frozen=True)
class AudioInfo:
    path: str
    sample_rate: int
    channels: int
    frames: int
    format: str

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def _soundfile():
    import soundfile

    return soundfile


def _fail(path: str, problem: str) -> InputError:
    return InputError(f"{path}: {problem}")


def _open(path: str, name: str | None = None):
    """soundfile's SoundFile for `path`; errors name `name` (the input as the user gave it, when
    `path` is its spooled copy)."""
    sf = _soundfile()
    name = name or path
    if not os.path.exists(path):
        if os.path.islink(path):
            raise _fail(name, f"broken symbolic link (to {os.readlink(path)})")
        raise _fail(name, "file not found")
    if os.path.isdir(path):
        raise _fail(name, "is a directory, not an audio file")
    kind = _special(path)
    if kind in ("pipe", "socket"):  # `attn predict` and `attn features` spool them first
        raise _fail(name, f"is a {kind}, which only attn predict and attn features read; save it to a file")
    if kind is not None:
        raise _fail(name, f"not a regular file (a {kind}); give a file, a pipe or a FIFO")
    if os.path.getsize(path) == 0:
        raise _fail(name, "file is empty (0 bytes)")
    if not os.access(path, os.R_OK):  # libsndfile says only "System error"
        raise _fail(name, "cannot read (permission denied)")
    try:
        # As bytes: a name that is not UTF-8 (os.fsdecode keeps its bytes as surrogates) cannot
        # be encoded back by soundfile, which then called a readable file unreadable.
        return sf.SoundFile(os.fsencode(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        reason = str(e).split(":")[-1].strip().rstrip(".") or "unknown reason"
        raise _fail(name, f"not a readable audio file ({reason})") from None
    except OSError as e:
        raise _fail(name, f"cannot open ({e.strerror or e})") from None


def _special(path: str) -> str | None:
    """What `path` is when not a regular file: "pipe" (also `<(...)` and a FIFO), "socket",
    "character device", "block device"; None for a regular file."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    for test, kind in ((stat.S_ISFIFO, "pipe"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device")):  # fmt: skip
        if test(mode):
            return kind
    return None


def is_stream(path: str) -> bool:
    """Whether `path` is a pipe, a FIFO or a socket: readable once, front to back, never seekable."""
    return _special(path) in ("pipe", "socket")


SPOOL_LIMIT = 4 << 30  # bytes; a pipe that never ends must not fill the disk


def spool(path: str, limit: int = SPOOL_LIMIT) -> str:
    """Copy a pipe or FIFO (`attn predict <(sox ...)`) to a temporary file and return its path, so
    it can be decoded like any file (soundfile seeks; a pipe can be read only once). The caller
    removes the file. Errors are InputErrors naming `path`."""
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix="attn-pipe-", suffix=os.path.splitext(path)[1])
    try:
        with open(path, "rb") as src, os.fdopen(fd, "wb") as dst:
            copied = 0
            while block := src.read(1 << 20):
                copied += len(block)
                if copied > limit:
                    raise _fail(path, f"the pipe holds more than {limit >> 20} MiB; save it to a file first")
                dst.write(block)
        if copied == 0:
            raise _fail(path, "the pipe is empty (0 bytes read)")
    except OSError as e:
        os.unlink(tmp)
        raise _fail(path, f"cannot read ({e.strerror or e})") from None
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


@contextmanager
def seekable(path: str) -> Iterator[str]:
    """`path` itself, or for a pipe or FIFO its `spool`ed copy, removed afterwards."""
    if not is_stream(path):
        yield path
        return
    tmp = spool(path)
    try:
        yield tmp
    finally:
        os.unlink(tmp)


def _wav_missing_bytes(path: str) -> int:
    """Bytes a RIFF/WAV header promises in its data chunk but the file lacks (0 if complete).

    libsndfile quietly shortens a truncated WAV to what is there; a cut-off download should be
    reported, not classified as if it were the whole recording.
    """
    import struct

    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return 0
            pos = 12
            while pos + 8 <= size:
                f.seek(pos)
                cid, clen = struct.unpack("<4sI", f.read(8))
                if cid == b"data":
                    from .pcm import open_length

                    if open_length(clen):  # streamed writers leave the size open (arecord, sox: 0x7FFF...)
                        return 0
                    return max(0, pos + 8 + clen - size)
                pos += 8 + clen + (clen & 1)
    except OSError:
        return 0
    return 0


def audio_info(path: str, name: str | None = None) -> AudioInfo:
    with _open(path, name) as f:
        return AudioInfo(name or path, f.samplerate, f.channels, f.frames, f.format)


def stream_audio(
    path: str, sample_rate: int, block_seconds: float = BLOCK_SECONDS, name: str | None = None
) -> Iterator[np.ndarray]:
    """Yield the file as float32 mono blocks at `sample_rate` (memory bounded by the block).
    `name`: what errors call the file (default `path`; see `spool`)."""
    sf = _soundfile()
    f = _open(path, name)
    path, local = name or path, path
    with f:
        if f.samplerate <= 0:
            raise _fail(path, "invalid sample rate in header")
        resampler = None
        if f.samplerate != sample_rate:
            import soxr

            resampler = soxr.ResampleStream(f.samplerate, sample_rate, 1, dtype="float32", quality="HQ")
        block = max(1, int(block_seconds * f.samplerate))
        read = 0
        while True:
            try:
                data = f.read(block, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as e:
                # blocks are read whole: the damage is somewhere in this one
                sr = f.samplerate
                where = f"in its first {block / sr:g} s" if not read else \
                    f"between {read / sr:.1f} s and {(read + block) / sr:.1f} s"  # fmt: skip
                raise _fail(path, f"decoding failed {where} ({e})") from None
            n = data.shape[0]
            last = n < block
            if n:
                check_samples(data, path)
                read += n
                mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
            else:
                mono = np.zeros(0, dtype=np.float32)
            if resampler is not None:
                mono = resampler.resample_chunk(np.ascontiguousarray(mono, dtype=np.float32), last=last)
            if mono.size:
                yield np.ascontiguousarray(mono, dtype=np.float32)
            if last:
                break
        if read == 0:
            raise _fail(path, "contains no audio samples")
        if f.format in _EXACT_LENGTH_FORMATS and 0 < f.frames and read < f.frames:
            raise _fail(path, f"truncated: header declares {f.frames} samples, file holds {read}")
        if f.format in ("WAV", "WAVEX"):
            missing = _wav_missing_bytes(local)
            if missing:
                raise _fail(path, f"truncated: {missing} bytes of audio data missing from the end")


MAX_CHANNELS = 64  # more than this many columns (and fewer rows) is an array the wrong way round


def from_array(samples: np.ndarray, rate: int, sample_rate: int, name: str = "array") -> np.ndarray:
    """An in-memory signal as `stream_audio` gives a file: float32 mono at `sample_rate`, (samples,).

    `samples` is (samples,) or (samples, channels), soundfile's layout, at `rate` Hz; channels are
    averaged and the rate converted by the same resampler. Failures are InputErrors naming `name`.
    """
    x = np.asarray(samples)
    if x.ndim not in (1, 2) or not x.size:
        raise _fail(name, f"expected (samples,) or (samples, channels) audio, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise _fail(name, f"expected float samples in [-1, 1], got {x.dtype}")
    if x.ndim == 2 and x.shape[1] > MAX_CHANNELS and x.shape[0] < x.shape[1]:  # torchaudio.load's layout
        raise _fail(name, f"shape {x.shape} looks like (channels, samples); attn takes (samples, channels): "
                          "pass the array transposed (x.T)")  # fmt: skip
    if int(rate) <= 0:
        raise _fail(name, f"invalid sample rate {rate}")
    x = x.astype(np.float32, copy=False)
    check_samples(x, name)
    mono = x.mean(axis=1, dtype=np.float32) if x.ndim == 2 and x.shape[1] > 1 else x.reshape(len(x), -1)[:, 0]
    if int(rate) != sample_rate:
        import soxr

        resampler = soxr.ResampleStream(int(rate), sample_rate, 1, dtype="float32", quality="HQ")
        mono = resampler.resample_chunk(np.ascontiguousarray(mono), last=True)
    return np.ascontiguousarray(mono, dtype=np.float32)


def read_audio(path: str, sample_rate: int) -> np.ndarray:
    """The whole file as float32 mono at `sample_rate`, shape (samples,)."""
    blocks = list(stream_audio(path, sample_rate))
    return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)


def iter_windows(blocks: Iterator[np.ndarray], frame: int, hop: int) -> Iterator[tuple[int, np.ndarray, int]]:
    """Streamed framing: yield (start, window (frame,) zero-padded, valid_length).

    Gives exactly `window_spans` over the concatenated blocks while holding at most one frame
    plus one block in memory.
    """
    buf = np.zeros(0, dtype=np.float32)
    offset = 0  # stream position of buf[0]
    start = 0  # next window to emit
    for block in blocks:
        buf = np.concatenate([buf, block]) if buf.size else block
        # A full window is final once the stream runs past its end (so another one follows).
        while start + frame < offset + buf.size:
            i = start - offset
            yield start, buf[i : i + frame].copy(), frame
            start += hop
        drop = min(start - offset, buf.size)
        buf, offset = buf[drop:], offset + drop
    total = offset + buf.size
    if start < total:
        length = min(frame, total - start)
        win = np.zeros(frame, dtype=np.float32)
        win[:length] = buf[start - offset : start - offset + length]
        yield start, win, length
