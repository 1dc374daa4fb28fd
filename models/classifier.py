"""The whole model: a modality front-end, training-time augmentation, and a registered backbone.

    Classifier(x (B, N), lengths (B,)) -> logits (B, K)

For audio, x is a padded batch of waveforms and the front-end computes features on the model's
device; for text, x is padded token ids and the front-end embeds them. Because the front-end is
part of the model, prediction runs exactly the code training ran.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import length_mask


class Classifier(nn.Module):
    def __init__(self, frontend: nn.Module, backbone: nn.Module, augment=None) -> None:
        super().__init__()
        self.frontend = frontend
        self.backbone = backbone
        self.augment = augment  # AugmentConfig or None; used only in training mode

    def features(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The front-end alone: (B, N) -> features (B, F, T) and valid frames (B,)."""
        return self.frontend(x, lengths)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        aug = self.augment if self.training else None
        if aug is not None and aug.gain_db > 0 and x.is_floating_point():
            gain_db = (torch.rand(x.shape[0], 1, device=x.device) * 2 - 1) * aug.gain_db
            x = x * torch.pow(10.0, gain_db / 20)
        feats, flen = self.frontend(x, lengths)  # (B, F, T)
        if aug is not None and (aug.freq_mask or aug.time_mask) and feats.dim() == 3:
            feats = spec_augment(feats, flen, aug.freq_mask, aug.time_mask, aug.masks)
        return self.backbone(feats.transpose(1, 2), flen)  # backbone contract: (B, T, C)


def spec_augment(
    feats: torch.Tensor, lengths: torch.Tensor, freq_width: int, time_width: int, count: int
) -> torch.Tensor:
    """SpecAugment-style masking inside each row's valid frames.

    feats (B, F, T): `count` frequency bands of width U[0, freq_width] and `count` time spans of
    width U[0, time_width] per row are set to the row's mean, so masks carry no level cue.
    Uses the global torch RNG (saved in checkpoints, so resumed runs mask identically).
    """
    b, f, t = feats.shape
    dev = feats.device
    valid = length_mask(lengths, t)  # (B, T)
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
