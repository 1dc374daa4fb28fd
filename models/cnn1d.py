"""1-D convolutions of several widths over the sequence, max pooling over valid steps, linear head
(Kim 2014, "Convolutional Neural Networks for Sentence Classification"), for text tokens and
audio frames alike.

    x (B, T, C) -> [conv_k (B, filters, T) -> ReLU, for k in widths] -> max over valid steps
                -> concat (B, len(widths) * filters) -> dropout -> linear (B, K)

Each width is an n-gram detector over `k` consecutive steps; max pooling keeps the strongest
match anywhere in the sequence, so the model finds phrases ("not good") wherever they are and
is cheap: one conv layer, no recurrence. Inputs past a row's length are zero (the front-ends
keep padding at zero), and outputs past it are excluded from the max, so a row gives the same
logits alone or in a padded batch.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from attn.schema import PosInt, Strict

from .base import Backbone, length_mask, masked_pool, scaled_widths
from .families import register


@register("cnn1d")
class Conv1dPool(Backbone):
    """Args (recipe `model.*`):
    widths: kernel widths (steps), one bank of `filters` filters each.
    filters: filters per width.
    dropout: before the linear head.
    pool: max (Kim's max-over-time), mean, or meanmax (both, concatenated).
    """

    class Config(Strict):
        widths: tuple[PosInt, ...] = Field((3, 4, 5), min_length=1)
        filters: PosInt = 100
        dropout: float = Field(0.5, ge=0, lt=1)
        pool: Literal["max", "mean", "meanmax"] = "max"

    @classmethod
    def tune_space(cls, cfg: Config) -> dict[str, dict]:
        # Width: filters per kernel width halved or doubled; the n-gram widths it looks at; dropout.
        widths = [list(cfg.widths)] + [w for w in ([2, 3, 4], [3, 4, 5], [3, 5, 7]) if w != list(cfg.widths)]
        return {
            "filters": {"choice": scaled_widths(cfg, "filters")},
            "widths": {"choice": widths},
            "dropout": {"uniform": [0.2, 0.6]},
        }

    def __init__(self, in_dim: int, num_classes: int, cfg: Config) -> None:
        super().__init__(in_dim, num_classes, cfg)
        self.convs = nn.ModuleList(nn.Conv1d(in_dim, cfg.filters, k, padding=k // 2) for k in cfg.widths)
        self.dropout = nn.Dropout(cfg.dropout)
        width = len(cfg.widths) * cfg.filters * (2 if cfg.pool == "meanmax" else 1)
        self.head = nn.Linear(width, num_classes)

    def forward_features(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        mask = length_mask(lengths.clamp_min(1), t)  # (B, T); an empty row pools its first step
        h = (x * mask[..., None]).transpose(1, 2)  # (B, C, T), zero past each length
        # An even width pads one step more on the left than it needs: its first T outputs align
        # step t with the window [t - k//2, t + k - 1 - k//2].
        pooled = [masked_pool(F.relu(conv(h)[..., :t]), mask, self.cfg.pool) for conv in self.convs]
        return self.dropout(torch.cat(pooled, dim=1))  # (B, widths * filters)

    def describe(self) -> dict:
        return {"receptive field": f"{max(self.cfg.widths)} steps (widths {', '.join(map(str, self.cfg.widths))})"}
