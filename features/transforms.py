"""Feature front-ends as `nn.Module`s: constants (window, mel bank, DCT) are buffers computed
once, so they move with `.to(device)` and training and prediction run the same code.

The modules take plain values, as torchaudio's transforms do; `Module.from_config(features)`
builds one from a recipe's `features` section. `AudioFrontend` maps a padded batch of waveforms
to features plus valid frame counts:
    forward(wave (B, N), lengths (B,)) -> (feats (B, F, T), frame_lengths (B,))
"""

from __future__ import annotations

import inspect

import torch
import torchaudio
from torch import nn

from . import functional as AF
from .config import AudioFeatures


def config_args(module: type, cfg: AudioFeatures) -> dict:
    """The arguments of `module` that `cfg` (a recipe's `features` section) has a field for."""
    names = inspect.signature(module).parameters
    return {k: getattr(cfg, k) for k in names if k in type(cfg).model_fields}


class FromConfig:
    """`Module.from_config(features, **overrides)`: the module with each argument taken from the
    field of the same name in a recipe's `features` section. The modules themselves take plain
    values, as torchaudio's transforms do."""

    @classmethod
    def from_config(cls, cfg: AudioFeatures, **overrides):
        return cls(**{**config_args(cls, cfg), **overrides})


class LinearSpectrogram(FromConfig, nn.Module):
    """STFT power (or magnitude) spectrogram: (..., time) -> (..., n_fft//2+1, frames).

    Periodic Hann window of `win_length` (default n_fft) centred in the FFT frame, zero padding
    when centred (librosa's default; reflect padding would leak padding into frames).
    `db=True` returns dB with the fixed reference `ref` and floor `amin`.
    """

    def __init__(
        self,
        n_fft: int = 512,
        hop_length: int = 160,
        win_length: int | None = None,
        power: float = 2.0,
        center: bool = True,
        db: bool = True,
        ref: float = 1.0,
        amin: float = 1e-10,
    ) -> None:
        super().__init__()
        win = win_length or n_fft
        if win > n_fft:
            raise ValueError(f"win_length ({win}) must not exceed n_fft ({n_fft})")
        self.n_fft, self.hop_length, self.power, self.center = n_fft, hop_length, power, center
        self.db, self.ref, self.amin = db, ref, amin
        window = torch.hann_window(win, periodic=True)
        left = (n_fft - win) // 2  # torch.stft centres a short window the same way
        self.register_buffer("window", nn.functional.pad(window, (left, n_fft - win - left)), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        spec = AF.spectrogram(wave, self.window, self.n_fft, self.hop_length, self.center, self.power)
        return to_db(spec, self.power, self.ref, self.amin) if self.db else spec


class LogMel(FromConfig, nn.Module):
    """Log-mel spectrogram in dB; equals librosa's melspectrogram + power_to_db(ref, top_db=None).

    Args:
        sample_rate, n_fft, hop_length, n_mels, win_length, f_min, f_max, power, center,
        mel_scale, mel_norm: as in `torchaudio.transforms.MelSpectrogram` (defaults match
        librosa: slaney scale and norm, zero padding when centred).
        ref, amin: fixed dB reference and floor.
    Shapes: (..., time) -> (..., n_mels, frames). Runs on any device.
    Attribute `chunk_bytes`: the CPU chunk size of `functional.mel_spectrogram`; None computes
    in one pass (what a traced or exported graph needs: the same numbers, no shape-specific loop).
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 512,
        hop_length: int = 160,
        n_mels: int = 64,
        win_length: int | None = None,
        f_min: float = 0.0,
        f_max: float | None = None,
        power: float = 2.0,
        center: bool = True,
        mel_scale: str = "slaney",
        mel_norm: str | None = "slaney",
        ref: float = 1.0,
        amin: float = 1e-10,
    ) -> None:
        super().__init__()
        self.ref, self.amin = ref, amin
        self.chunk_bytes: int | None = 1 << 20
        self.spec = LinearSpectrogram(n_fft, hop_length, win_length, power, center, db=False)
        fb = torchaudio.functional.melscale_fbanks(
            n_fft // 2 + 1, f_min, f_max or sample_rate / 2, n_mels, sample_rate, mel_norm, mel_scale
        )
        self.register_buffer("fb", fb.T.contiguous(), persistent=False)  # (n_mels, n_freqs)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        s = self.spec
        mel = AF.mel_spectrogram(wave, s.window, self.fb, s.n_fft, s.hop_length, s.center, s.power, self.chunk_bytes)
        return to_db(mel, s.power, self.ref, self.amin)  # (..., n_mels, frames)


def to_db(spec: torch.Tensor, power: float, ref: float, amin: float) -> torch.Tensor:
    """dB of a power (power 2) or magnitude (power 1) spectrogram, fixed reference and floor."""
    if power == 2.0:
        return AF.power_to_db(spec, ref, amin)
    return AF.amplitude_to_db(spec, ref, amin)


class MFCC(nn.Module):
    """MFCCs from the dB log-mel with an orthonormal DCT-II (librosa's default).

    Unlike `torchaudio.transforms.MFCC` this never clips to the clip's maximum (top_db), so a
    window's coefficients do not depend on the rest of the file. (..., time) -> (..., n_mfcc, frames).
    Args: `n_mfcc`; `melkwargs`, the arguments of the `LogMel` it starts from (as torchaudio's).
    """

    def __init__(self, n_mfcc: int = 20, melkwargs: dict | None = None) -> None:
        super().__init__()
        self.logmel = LogMel(**(melkwargs or {}))
        n_mels = self.logmel.fb.shape[0]
        if n_mfcc > n_mels:
            raise ValueError(f"n_mfcc ({n_mfcc}) must not exceed n_mels ({n_mels})")
        dct = torchaudio.functional.create_dct(n_mfcc, n_mels, norm="ortho")
        self.register_buffer("dct", dct, persistent=False)  # (n_mels, n_mfcc)

    @classmethod
    def from_config(cls, cfg: AudioFeatures) -> MFCC:
        return cls(cfg.n_mfcc, config_args(LogMel, cfg))

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return AF.mfcc_from_db(self.logmel(wave), self.dct)


class AudioFrontend(FromConfig, nn.Module):
    """The audio front-end: a padded waveform batch -> features + valid frame counts.

        forward(wave (B, N), lengths (B,)) -> (feats (B, F, T), frame_lengths (B,))

    `kind`: logmel, mfcc, spectrogram (dB), or waveform (raw samples, F = 1, no transform). The
    other arguments are `LogMel`'s, and `n_mfcc`. `out_dim` is F: n_mels, n_mfcc, n_fft//2+1 or 1.
    `remove_dc`: each window less its mean first (`functional.remove_dc`).
    Always computed in float32, also under autocast: dB of a float16 power spectrum loses the
    small values that carry most of the information. `AudioFrontend.from_config(features)`
    builds the one a recipe describes.
    """

    def __init__(
        self,
        kind: str = "logmel",
        sample_rate: int = 16000,
        n_fft: int = 512,
        hop_length: int = 160,
        n_mels: int = 64,
        win_length: int | None = None,
        f_min: float = 0.0,
        f_max: float | None = None,
        power: float = 2.0,
        center: bool = True,
        mel_scale: str = "slaney",
        mel_norm: str | None = "slaney",
        ref: float = 1.0,
        amin: float = 1e-10,
        n_mfcc: int = 20,
        remove_dc: bool = False,
    ) -> None:
        super().__init__()
        self.kind, self.n_fft, self.hop_length, self.center = kind, n_fft, hop_length, center
        self.remove_dc = remove_dc
        mel = dict(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, win_length=win_length,
                   f_min=f_min, f_max=f_max, power=power, center=center, mel_scale=mel_scale, mel_norm=mel_norm,
                   ref=ref, amin=amin)  # fmt: skip
        if kind == "logmel":
            self.transform: nn.Module = LogMel(**mel)
            self.out_dim = n_mels
        elif kind == "mfcc":
            self.transform = MFCC(n_mfcc, mel)
            self.out_dim = n_mfcc
        elif kind == "spectrogram":
            self.transform = LinearSpectrogram(n_fft, hop_length, win_length, power, center, True, ref, amin)
            self.out_dim = n_fft // 2 + 1
        elif kind == "waveform":  # the backbone sees raw samples
            self.transform = nn.Identity()
            self.out_dim = 1
        else:
            raise ValueError(f"unknown audio features kind {kind!r} (logmel, mfcc, spectrogram or waveform)")

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        if self.kind == "waveform":
            return lengths
        return AF.stft_frames(lengths, self.n_fft, self.hop_length, self.center)

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(wave.device.type, enabled=False):
            wave = wave.float()
            if self.remove_dc:
                wave = AF.remove_dc(wave, lengths)
            if self.kind == "waveform":
                return wave.unsqueeze(1), lengths  # (B, 1, N)
            feats = self.transform(wave)  # (B, F, T)
        return feats, self.frame_lengths(lengths)
