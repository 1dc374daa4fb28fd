"""The whole model: a modality front-end, training-time augmentation, and a registered backbone.

    Classifier(x (B, N), lengths (B,)) -> logits (B, K)

For audio, x is a padded batch of waveforms and the front-end computes features on the model's
device; for text, x is padded token ids and the front-end embeds them. Because the front-end is
part of the model, prediction runs exactly the code training ran.
"""

from __future__ import annotations

import torch
from torch import nn

from attn.features.augment import mixup


class Classifier(nn.Module):
    """`frontend` (audio features or token embedding), then `backbone` (a registered family).
    `augment`, used in training mode only, has a `wave(x, lengths, mix)` step before the
    front-end and a `features(feats, lengths)` step after it (`attn.features.augment.Augment`).

    `mix` = (lam (B,), perm (B,)), given by the trainer's mixup in training: row i becomes
    lam_i * row i + (1 - lam_i) * row perm_i, mixed as waveforms for audio (two sounds at once)
    and as embedded tokens for text (ids cannot be mixed)."""

    def __init__(self, frontend: nn.Module, backbone: nn.Module, augment: nn.Module | None = None) -> None:
        super().__init__()
        self.frontend = frontend
        self.backbone = backbone
        self.augment = augment

    def features(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The front-end alone: (B, N) -> features (B, F, T) and valid frames (B,)."""
        return self.frontend(x, lengths)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, mix=None) -> torch.Tensor:
        aug = self.augment if self.training else None
        mixed = False
        if aug is not None and x.is_floating_point():
            x, lengths = aug.wave(x, lengths, mix)
            mixed = True
        feats, flen = self.frontend(x, lengths)  # (B, F, T)
        if mix is not None and not mixed:  # text (or no augment module): mix the embedded tokens
            feats, flen = mixup(feats, flen, *mix)
        if aug is not None:
            feats = aug.features(feats, flen)
        return self.backbone(feats.transpose(1, 2), flen)  # backbone contract: (B, T, C)
