"""Pool, then one linear layer: the head that sits on a pretrained encoder's hidden states.

    x (B, T, C) -> pool over valid steps (B, C) [or step 0: the class token] -> dropout
                -> [linear + GELU (B, hidden), when hidden > 0] -> linear (B, K)

An encoder pretrained on large text already puts what a sentence means into its states; the
head only reads it out (Devlin et al. 2019 use the class token; sentence-transformers checkpoints
are trained for the mean of the token states, Reimers & Gurevych 2019).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from attn.schema import NonNegInt, Strict

from .base import Backbone, length_mask, masked_pool
from .families import register


@register("pooled")
class PooledLinear(Backbone):
    """Args (recipe `model.*`):
    pooling: mean, max or meanmax over valid steps, or cls (the first step: an encoder's class token).
    dropout: before each linear layer.
    hidden: width of one GELU layer before the output (0 = none: a linear read-out).
    """

    class Config(Strict):
        pooling: Literal["mean", "max", "meanmax", "cls"] = "mean"
        dropout: float = Field(0.1, ge=0, lt=1)
        hidden: NonNegInt = 0

    @classmethod
    def tune_space(cls, cfg: Config) -> dict[str, dict]:
        return {"pooling": {"choice": ["mean", "cls"]}, "dropout": {"uniform": [0.0, 0.3]}}

    def __init__(self, in_dim: int, num_classes: int, cfg: Config) -> None:
        super().__init__(in_dim, num_classes, cfg)
        width = in_dim * (2 if cfg.pooling == "meanmax" else 1)
        self.dropout = nn.Dropout(cfg.dropout)
        self.mlp = None
        if cfg.hidden:
            self.mlp = nn.Sequential(nn.Linear(width, cfg.hidden), nn.GELU(), nn.Dropout(cfg.dropout))
        self.head = nn.Linear(cfg.hidden or width, num_classes)

    def forward_features(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.cfg.pooling == "cls":
            pooled = x[:, 0]  # (B, C)
        else:
            mask = length_mask(lengths.clamp_min(1), x.shape[1])  # (B, T)
            pooled = masked_pool(x.transpose(1, 2), mask, self.cfg.pooling)  # (B, C) or (B, 2C)
        pooled = self.dropout(pooled)
        return self.mlp(pooled) if self.mlp is not None else pooled

    def describe(self) -> dict:
        layer = f", {self.cfg.hidden}-unit GELU layer" if self.cfg.hidden else ""
        return {"head": f"{self.cfg.pooling} pooling{layer}"}
