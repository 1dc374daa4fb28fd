"""Pure DSP functions: tensors or ints in, tensors or ints out; no state, no I/O.

Shapes follow torchaudio: signals are (..., time), spectrograms (..., freq, frames).
"""

from __future__ import annotations

import math

import torch


def spectrogram(
    wave: torch.Tensor, window: torch.Tensor, n_fft: int, hop_length: int, center: bool, power: float
) -> torch.Tensor:
    """|STFT|^power of (..., time) -> (..., n_fft//2+1, frames); zero padding when centred.

    Power 2 is computed as re^2 + im^2, not |z|^2: no square root, ~1.7x faster on CPU than
    `abs().pow(2)` (measured here), and the same numbers to float32 rounding.
    """
    shape = wave.shape
    flat = wave.reshape(-1, shape[-1])
    if center:
        flat = torch.nn.functional.pad(flat, (n_fft // 2, n_fft // 2))
    spec = torch.stft(flat, n_fft, hop_length, win_length=window.shape[0], window=window, center=False,
                      return_complex=True)  # fmt: skip
    spec = spec.reshape(*shape[:-1], *spec.shape[-2:])
    if power == 2.0:
        return spec.real.square() + spec.imag.square()
    return spec.abs() if power == 1.0 else spec.abs().pow(power)


def power_to_db(spec: torch.Tensor, ref: float = 1.0, amin: float = 1e-10) -> torch.Tensor:
    """10*log10(max(spec, amin) / ref), like `librosa.power_to_db(ref=ref, top_db=None)`.

    The reference and floor are fixed numbers, never the input's maximum: a window cut from a
    longer recording gets the same values as in the whole recording.
    """
    return 10.0 * torch.log10(spec.clamp_min(amin)) - 10.0 * math.log10(max(amin, ref))


def amplitude_to_db(spec: torch.Tensor, ref: float = 1.0, amin: float = 1e-5) -> torch.Tensor:
    """20*log10(max(spec, amin) / ref), like `librosa.amplitude_to_db(top_db=None)`."""
    return 20.0 * torch.log10(spec.clamp_min(amin)) - 20.0 * math.log10(max(amin, ref))


def stft_frames(num_samples: torch.Tensor, n_fft: int, hop_length: int, center: bool) -> torch.Tensor:
    """Number of STFT frames computed from a signal of `num_samples` samples.

    With center=True and zero (constant) padding, frame t of a signal padded with zeros equals
    frame t of the unpadded signal for every t below this count, which is what lets a padded
    batch give the same features as one clip alone.
    """
    if center:
        return torch.div(num_samples, hop_length, rounding_mode="floor") + 1
    return (torch.div(num_samples - n_fft, hop_length, rounding_mode="floor") + 1).clamp_min(0)


def mfcc_from_db(db: torch.Tensor, dct: torch.Tensor) -> torch.Tensor:
    """(..., n_mels, frames) dB -> (..., n_mfcc, frames) with a (n_mels, n_mfcc) DCT matrix."""
    return torch.matmul(db.transpose(-1, -2), dct).transpose(-1, -2)


def window_spans(num_samples: int, frame: int, hop: int) -> list[tuple[int, int]]:
    """Cut a signal into windows: [(start, valid_length)], the last one padded.

    A signal no longer than `frame` is one window of its own length. Otherwise windows start every
    `hop` samples until one reaches the end; the last may be short (its tail is padding).
    """
    if num_samples <= 0:
        return []
    if num_samples <= frame:
        return [(0, num_samples)]
    # Windows follow while the previous one ends before the signal does; with hop > frame the
    # gaps are skipped and a window must still start inside the signal.
    count = min(1 + math.ceil((num_samples - frame) / hop), math.ceil(num_samples / hop))
    return [(i * hop, min(frame, num_samples - i * hop)) for i in range(count)]
