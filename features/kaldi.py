"""Kaldi-compatible log-mel filter banks for a batch: what `torchaudio.compliance.kaldi.fbank`
computes one waveform at a time, with the settings AST's feature extractor uses (25 ms Hanning
windows every 10 ms, edges snipped, DC offset removed, pre-emphasis 0.97, power spectrum of a
512-point FFT at 16 kHz, Kaldi's mel banks from 20 Hz to Nyquist, natural log floored at float32
epsilon, no dither).

    kaldi_fbank(wave (B, N), lengths (B,), rate, bins) -> (fbank (B, T, bins), frames (B,))

One batched pass, no loop over clips (so `attn export` can trace it). Frame t of clip i reads
samples [160 t, 160 t + 400) only, so the frames inside a clip's valid samples are exactly the
ones the clip alone gives; frames past them are zero, as AST's extractor pads. A clip shorter
than one window is zero-padded to one (torchaudio refuses it).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

FRAME_SECONDS, SHIFT_SECONDS = 0.025, 0.010
PREEMPHASIS = 0.97
LOW_HZ = 20.0


def window_sizes(rate: int) -> tuple[int, int, int]:
    """(window, shift, FFT size) in samples at `rate`: 400, 160, 512 at 16 kHz."""
    size, shift = int(rate * FRAME_SECONDS), int(rate * SHIFT_SECONDS)
    return size, shift, 1 << math.ceil(math.log2(size))


def frame_counts(lengths: torch.Tensor, rate: int) -> torch.Tensor:
    """(B,) Kaldi frames (edges snipped) of clips of `lengths` samples; at least 1."""
    size, shift, _ = window_sizes(rate)
    return (1 + torch.div(lengths.clamp_min(size) - size, shift, rounding_mode="floor")).long()


def mel_matrix(rate: int, bins: int) -> torch.Tensor:
    """(n_fft // 2 + 1, bins): Kaldi's triangular mel banks over the power spectrum's bins."""
    from torchaudio.compliance.kaldi import get_mel_banks

    _, _, n_fft = window_sizes(rate)
    banks, _ = get_mel_banks(bins, n_fft, float(rate), LOW_HZ, 0.0, 100.0, -500.0, 1.0)  # (bins, n_fft // 2)
    return F.pad(banks, (0, 1)).T.contiguous()  # Nyquist gets no weight, as in torchaudio


def kaldi_fbank(wave: torch.Tensor, lengths: torch.Tensor, rate: int, bins: int,
                mel: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """See the module doc. `mel`: `mel_matrix(rate, bins)` on wave's device, when the caller keeps one."""
    size, shift, n_fft = window_sizes(rate)
    n = wave.shape[1]
    valid = torch.arange(n, device=wave.device)[None, :] < lengths[:, None]  # (B, N)
    # zeros past the end: a clip shorter than a window gets one, and one traced graph serves every N
    x = F.pad(wave.float() * valid, (0, size))
    frames = x.unfold(1, size, shift)  # (B, T, size), T = 1 + N // shift; past each clip's count: zeroed below
    frames = frames - frames.mean(dim=2, keepdim=True)  # remove the DC offset
    prev = torch.cat([frames[:, :, :1], frames[:, :, :-1]], dim=2)  # x[t-1], x[-1] = x[0]
    frames = frames - PREEMPHASIS * prev
    frames = frames * torch.hann_window(size, periodic=False, device=wave.device, dtype=frames.dtype)
    power = torch.fft.rfft(frames, n=n_fft).abs().pow(2.0)  # (B, T, n_fft // 2 + 1)
    m = mel_matrix(rate, bins).to(power.device) if mel is None else mel
    fb = torch.clamp_min(power @ m, torch.finfo(torch.float32).eps).log()  # (B, T, bins)
    count = frame_counts(lengths, rate)
    keep = torch.arange(fb.shape[1], device=fb.device)[None, :] < count[:, None]  # (B, T)
    return fb * keep[:, :, None], count
