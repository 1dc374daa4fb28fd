"""Raw PCM streams (what `arecord` and `ffmpeg -f s16le -` write) -> float32 mono samples.

The samples are those soundfile gives for the same audio in a WAV file (16-bit PCM / 32768,
channels averaged in float32), so a live stream and the file it was recorded to are framed and
scored alike. A stream may start with a WAV header (arecord writes one unless `-t raw`): its
format then replaces the flags.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from attn.errors import InputError

ENCODINGS = {"s16le": ("<i2", 32768.0), "f32le": ("<f4", 1.0)}  # numpy dtype, full scale
_WAV_PCM, _WAV_FLOAT, _WAV_EXTENSIBLE = 1, 3, 0xFFFE
_HEADER_LIMIT = 1 << 16  # bytes of RIFF chunks before "data" that a stream may hold


@dataclass(frozen=True)
class PcmFormat:
    encoding: str  # a key of ENCODINGS
    rate: int  # samples per second per channel
    channels: int

    @property
    def frame_bytes(self) -> int:
        """Bytes of one sample of every channel."""
        return np.dtype(ENCODINGS[self.encoding][0]).itemsize * self.channels


class PcmDecoder:
    """Bytes in any chunking -> float32 mono (samples,). A chunk may end inside a sample: the
    rest waits for the next chunk (`pending` bytes), so the chunking never changes the samples."""

    def __init__(self, fmt: PcmFormat, name: str) -> None:
        self.fmt, self.name = fmt, name
        self.dtype, self.scale = ENCODINGS[fmt.encoding]
        self.rest = b""

    @property
    def pending(self) -> int:
        return len(self.rest)

    def decode(self, data: bytes) -> np.ndarray:
        data = self.rest + data if self.rest else data
        whole = len(data) - len(data) % self.fmt.frame_bytes
        self.rest = data[whole:]
        x = np.frombuffer(data[:whole], dtype=self.dtype).astype(np.float32)  # (samples * channels,)
        if self.scale != 1.0:
            x /= np.float32(self.scale)
        elif not np.isfinite(x).all():
            raise InputError(f"{self.name}: the stream contains NaN or infinite sample values")
        else:  # float samples over a million times full scale are no audio either
            from .levels import check_samples

            check_samples(x, self.name)
        x = x.reshape(-1, self.fmt.channels)  # (samples, channels)
        return np.ascontiguousarray(x.mean(axis=1) if self.fmt.channels > 1 else x[:, 0])


# data chunk sizes that mean "until the stream ends": a recorder writing to a pipe cannot know
# the length (arecord writes 0x7FFFFFFF, sox 0x7FFFF000, others 0xFFFFFFFF or 0)
OPEN_SIZES = (0, 0xFFFFFFFF)
OPEN_FROM = 0x7FFFF000


def open_length(size: int) -> bool:
    """Whether a WAV data chunk's declared size is a streaming recorder's placeholder."""
    return size in OPEN_SIZES or size >= OPEN_FROM


def parse_wav_header(head: bytes, name: str) -> tuple[PcmFormat, int, int | None] | None:
    """(format, bytes of header before the samples, bytes of samples the data chunk declares:
    None for a placeholder that means "until the stream ends") of a stream that starts with a
    WAV header in `head`; None when `head` holds no complete header (yet) but may, and an
    InputError for a WAV stream in a sample format attn does not read. `head` must start with
    b"RIFF"."""
    pos, fmt = 12, None
    while pos + 8 <= len(head):
        cid, size = struct.unpack_from("<4sI", head, pos)
        if cid == b"data":
            if fmt is None:
                raise InputError(f"{name}: WAV stream has no 'fmt ' chunk before its samples")
            return fmt, pos + 8, None if open_length(size) else size
        if cid == b"fmt ":
            if pos + 8 + 16 > len(head):
                break
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", head, pos + 8)
            if tag == _WAV_EXTENSIBLE and size >= 40 and pos + 8 + 26 <= len(head):
                tag = struct.unpack_from("<H", head, pos + 8 + 24)[0]  # the sub-format GUID's first field
            encoding = {(_WAV_PCM, 16): "s16le", (_WAV_FLOAT, 32): "f32le"}.get((tag, bits))
            if channels < 1 or rate < 1:
                raise InputError(f"{name}: WAV stream header states {channels} channel(s) at {rate} Hz: no audio")
            if encoding is None:
                raise InputError(f"{name}: WAV stream holds {bits}-bit samples of format {tag}, {channels} channel(s) "
                                 f"at {rate} Hz; attn listen reads 16-bit PCM or 32-bit float")  # fmt: skip
            fmt = PcmFormat(encoding, rate, channels)
        pos += 8 + size + (size & 1)
    if len(head) >= _HEADER_LIMIT:
        raise InputError(f"{name}: WAV stream header is longer than {_HEADER_LIMIT} bytes")
    return None
