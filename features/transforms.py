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
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg.sample_rate,
            n_fft=cfg.n_fft,
            win_length=cfg.win_length,
            hop_length=cfg.hop_length,
            f_min=cfg.f_min,
            f_max=cfg.f_max,
            n_mels=cfg.n_mels,
            power=cfg.power,
            center=cfg.center,
            pad_mode="constant",  # librosa's default; reflect would leak padding into frames
            norm=cfg.mel_norm,
            mel_scale=cfg.mel_scale,
        )

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        spec = self.mel(wave)
        if self.cfg.power == 2.0:
            return AF.power_to_db(spec, self.cfg.ref, self.cfg.amin)
        return AF.amplitude_to_db(spec, self.cfg.ref, self.cfg.amin)


class LinearSpectrogram(nn.Module):
    """STFT power (or magnitude) spectrogram in dB: (..., time) -> (..., n_fft//2+1, frames)."""

    def __init__(self, cfg: AudioFeatures) -> None:
        super().__init__()
        self.cfg = cfg
        self.spec = torchaudio.transforms.Spectrogram(
            n_fft=cfg.n_fft,
            win_length=cfg.win_length,
            hop_length=cfg.hop_length,
            power=cfg.power,
            center=cfg.center,
            pad_mode="constant",
        )

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        spec = self.spec(wave)
        if self.cfg.power == 2.0:
            return AF.power_to_db(spec, self.cfg.ref, self.cfg.amin)
        return AF.amplitude_to_db(spec, self.cfg.ref, self.cfg.amin)


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
