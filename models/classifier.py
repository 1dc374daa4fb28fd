"""The whole model: a modality front-end, training-time augmentation, and a registered backbone.

    Classifier(x (B, N), lengths (B,)) -> logits (B, K)

For audio, x is a padded batch of waveforms and the front-end computes features on the model's
device; for text, x is padded token ids and the front-end embeds them. Because the front-end is
part of the model, prediction runs exactly the code training ran.
"""

from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    """`frontend` (audio features or token embedding), then `backbone` (a registered family).
    `augment`, used in training mode only, has a `wave(x)` step before the front-end and a
    `features(feats, lengths)` step after it (e.g. `attn.features.augment.Augment`)."""

    def __init__(self, frontend: nn.Module, backbone: nn.Module, augment: nn.Module | None = None) -> None:
        super().__init__()
        self.frontend = frontend
        self.backbone = backbone
        self.augment = augment

    def features(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The front-end alone: (B, N) -> features (B, F, T) and valid frames (B,)."""
        return self.frontend(x, lengths)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        aug = self.augment if self.training else None
        if aug is not None:
            x = aug.wave(x)
        feats, flen = self.frontend(x, lengths)  # (B, F, T)
        if aug is not None:
            feats = aug.features(feats, flen)
        return self.backbone(feats.transpose(1, 2), flen)  # backbone contract: (B, T, C)
