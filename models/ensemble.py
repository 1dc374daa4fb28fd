"""Several trained classifiers as one model: their class probabilities are averaged.

    Ensemble(x (B, N), lengths (B,)) -> (B, K) log of the members' mean probabilities

The output is a log-probability, so the softmax every caller applies to logits gives back
exactly the mean of the members' softmax outputs. Members share the recipe and differ in seed
(train.ensemble): different initialisations, data orders and dropout masks make different
mistakes, and averaging cancels part of them.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class Ensemble(nn.Module):
    def __init__(self, members: list[nn.Module], multi_label: bool = False) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError("an ensemble needs at least 2 members")
        self.members = nn.ModuleList(members)
        self.multi_label = multi_label  # average each label's sigmoid instead of the softmax

    # The front-end and backbone facts (`attn info`, `attn features`) are the same for every
    # member: they come from one recipe.
    @property
    def frontend(self) -> nn.Module:
        return self.members[0].frontend

    @property
    def backbone(self) -> nn.Module:
        return self.members[0].backbone

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.multi_label:  # the logit of the members' mean sigmoid (B, K): the sigmoid callers apply gives it
            p = torch.stack([m(x, lengths).float().sigmoid() for m in self.members]).mean(0).clamp(1e-7, 1 - 1e-7)
            return torch.log(p) - torch.log1p(-p)
        logp = torch.stack([m(x, lengths).float().log_softmax(-1) for m in self.members])  # (M, B, K)
        return torch.logsumexp(logp, dim=0) - math.log(len(self.members))
