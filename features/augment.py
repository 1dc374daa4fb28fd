"""Training-time augmentation of audio, on the model's device: a random gain on the waveform
before the front-end, SpecAugment-style masks on the features after it.

Both use the global torch RNG (saved in checkpoints, so resumed runs augment identically).
`Classifier` applies an `Augment` in training mode only.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import AugmentConfig


def random_gain(wave: torch.Tensor, gain_db: float) -> torch.Tensor:
    """wave (B, N) times a gain drawn per row, uniform in [-gain_db, +gain_db] dB."""
    db = (torch.rand(wave.shape[0], 1, device=wave.device) * 2 - 1) * gain_db  # (B, 1)
    return wave * torch.pow(10.0, db / 20)


def spec_augment(
    feats: torch.Tensor, lengths: torch.Tensor, freq_width: int, time_width: int, count: int
) -> torch.Tensor:
    """SpecAugment-style masking inside each row's valid frames.

    feats (B, F, T), lengths (B,) valid frames: `count` frequency bands of width U[0, freq_width]
    and `count` time spans of width U[0, time_width] per row are set to the row's mean, so masks
    carry no level cue.
    """
    b, f, t = feats.shape
    dev = feats.device
    valid = torch.arange(t, device=dev)[None, :] < lengths[:, None]  # (B, T)
    mean = (feats * valid[:, None, :]).sum((1, 2)) / (valid.sum(1) * f).clamp_min(1)  # (B,)
    keep = torch.ones_like(feats, dtype=torch.bool)
    bins = torch.arange(f, device=dev)[None, :]
    steps = torch.arange(t, device=dev)[None, :]
    for _ in range(count):
        if freq_width:
            w = torch.randint(0, freq_width + 1, (b, 1), device=dev)
            s = (torch.rand(b, 1, device=dev) * (f - w + 1).clamp_min(1)).long()
            keep &= ~((bins >= s) & (bins < s + w))[:, :, None]
        if time_width:
            w = torch.minimum(torch.randint(0, time_width + 1, (b, 1), device=dev), lengths[:, None])
            s = (torch.rand(b, 1, device=dev) * (lengths[:, None] - w + 1).clamp_min(1)).long()
            keep &= ~((steps >= s) & (steps < s + w))[:, None, :]
    return torch.where(keep, feats, mean[:, None, None])


class Augment(nn.Module):
    """The recipe's `train.augment` as a module with two steps around the front-end.

    Args:
        gain_db: random gain in [-gain_db, +gain_db] dB on the waveform (0 = off).
        freq_mask, time_mask: widest frequency mask (bins) and time mask (frames); 0 = off.
        masks: masks of each kind per example.
    """

    def __init__(self, freq_mask: int = 0, time_mask: int = 0, masks: int = 2, gain_db: float = 0.0) -> None:
        super().__init__()
        self.freq_mask, self.time_mask, self.masks, self.gain_db = freq_mask, time_mask, masks, gain_db

    @classmethod
    def from_config(cls, cfg: AugmentConfig) -> Augment:
        return cls(cfg.freq_mask, cfg.time_mask, cfg.masks, cfg.gain_db)

    def wave(self, x: torch.Tensor) -> torch.Tensor:
        """Before the front-end: x (B, N) samples (token ids pass unchanged)."""
        return random_gain(x, self.gain_db) if self.gain_db > 0 and x.is_floating_point() else x

    def features(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """After the front-end: feats (B, F, T), lengths (B,) valid frames."""
        if (self.freq_mask or self.time_mask) and feats.dim() == 3:
            return spec_augment(feats, lengths, self.freq_mask, self.time_mask, self.masks)
        return feats
