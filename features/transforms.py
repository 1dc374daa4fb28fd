"""Feature front-ends as `nn.Module`s: constants (window, mel bank, DCT) are buffers computed
once, so they move with `.to(device)` and training and prediction run the same code.

Every front-end maps a padded batch of waveforms to features plus valid frame counts:
    forward(wave (B, N), lengths (B,)) -> (feats (B, F, T), frame_lengths (B,))
"""

from __future__ import annotations

import torch
import torchaudio
from torch import nn

from attn.pipelines.config import AudioFeatures

from . import functional as AF


class LinearSpectrogram(nn.Module):
    """STFT power (or magnitude) spectrogram: (..., time) -> (..., n_fft//2+1, frames).

    Periodic Hann window of `win_length` (default n_fft) centred in the FFT frame, zero padding
    when centred (librosa's default; reflect padding would leak padding into frames).
    `db=True` returns dB with the fixed reference and floor of the recipe.
    """

    def __init__(self, cfg: AudioFeatures, db: bool = True) -> None:
        super().__init__()
        self.cfg, self.db = cfg, db
        win = cfg.win_length or cfg.n_fft
        window = torch.hann_window(win, periodic=True)
        left = (cfg.n_fft - win) // 2  # torch.stft centres a short window the same way
        self.register_buffer("window", nn.functional.pad(window, (left, cfg.n_fft - win - left)), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        spec = AF.spectrogram(wave, self.window, c.n_fft, c.hop_length, c.center, c.power)
        return _to_db(spec, c) if self.db else spec


class LogMel(nn.Module):
    """Log-mel spectrogram in dB; equals librosa's melspectrogram + power_to_db(ref, top_db=None).

    Args:
        sample_rate, n_fft, win_length, hop_length, n_mels, f_min, f_max, power, center,
        mel_scale, mel_norm: as in `torchaudio.transforms.MelSpectrogram` (defaults match
        librosa: slaney scale and norm, zero padding when centred).
        ref, amin: fixed dB reference and floor.
    Shapes: (..., time) -> (..., n_mels, frames). Runs on any device.
    """

    def __init__(self, cfg: AudioFeatures) -> None:
        super().__init__()
        self.cfg = cfg
        self.spec = LinearSpectrogram(cfg, db=False)
        fb = torchaudio.functional.melscale_fbanks(
            cfg.n_fft // 2 + 1, cfg.f_min, cfg.f_max or cfg.sample_rate / 2, cfg.n_mels, cfg.sample_rate,
            cfg.mel_norm, cfg.mel_scale,
        )  # fmt: skip
        self.register_buffer("fb", fb.T.contiguous(), persistent=False)  # (n_mels, n_freqs)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        c, window = self.cfg, self.spec.window
        mel = AF.mel_spectrogram(wave, window, self.fb, c.n_fft, c.hop_length, c.center, c.power)
        return _to_db(mel, c)  # (..., n_mels, frames)


def _to_db(spec: torch.Tensor, cfg: AudioFeatures) -> torch.Tensor:
    if cfg.power == 2.0:
        return AF.power_to_db(spec, cfg.ref, cfg.amin)
    return AF.amplitude_to_db(spec, cfg.ref, cfg.amin)


class MFCC(nn.Module):
    """MFCCs from the dB log-mel with an orthonormal DCT-II (librosa's default).

    Unlike `torchaudio.transforms.MFCC` this never clips to the clip's maximum (top_db), so a
    window's coefficients do not depend on the rest of the file. (..., time) -> (..., n_mfcc, frames).
    """

    def __init__(self, cfg: AudioFeatures) -> None:
        super().__init__()
        self.logmel = LogMel(cfg)
        dct = torchaudio.functional.create_dct(cfg.n_mfcc, cfg.n_mels, norm="ortho")
        self.register_buffer("dct", dct, persistent=False)  # (n_mels, n_mfcc)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return AF.mfcc_from_db(self.logmel(wave), self.dct)


class AudioFrontend(nn.Module):
    """The recipe's `features` section as a module: waveform batch -> features + frame counts.

    `out_dim` is the feature size per frame (n_mels, n_mfcc, n_fft//2+1, or 1 for raw waveform).
    Always computed in float32, also under autocast: dB of a float16 power spectrum loses the
    small values that carry most of the information.
    """

    def __init__(self, cfg: AudioFeatures) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.kind == "logmel":
            self.transform: nn.Module = LogMel(cfg)
            self.out_dim = cfg.n_mels
        elif cfg.kind == "mfcc":
            self.transform = MFCC(cfg)
            self.out_dim = cfg.n_mfcc
        elif cfg.kind == "spectrogram":
            self.transform = LinearSpectrogram(cfg)
            self.out_dim = cfg.n_fft // 2 + 1
        else:  # waveform: the backbone sees raw samples
            self.transform = nn.Identity()
            self.out_dim = 1

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        if self.cfg.kind == "waveform":
            return lengths
        return AF.stft_frames(lengths, self.cfg.n_fft, self.cfg.hop_length, self.cfg.center)

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(wave.device.type, enabled=False):
            wave = wave.float()
            if self.cfg.kind == "waveform":
                return wave.unsqueeze(1), lengths  # (B, 1, N)
            feats = self.transform(wave)  # (B, F, T)
        return feats, self.frame_lengths(lengths)
