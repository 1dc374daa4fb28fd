"""Temperature scaling as a module: a trained model whose output logits are divided by T.

    Tempered(x, lengths) -> (B, K) logits / T     softmax of it: the calibrated probabilities

T is fitted on validation after training (pipelines/calibration.py) and kept in the model file's
header; loading wraps the rebuilt model again (with the `Novelty` check of `train.abstain.novelty`
when the file has one), so prediction, evaluation, serving and export
(the ONNX graph carries the division) all give the same calibrated scores. T > 1 softens an
over-confident model; the ranking of classes, hence every predicted label, is unchanged.
"""

from __future__ import annotations

import torch
from torch import nn


class Tempered(nn.Module):
    def __init__(self, inner: nn.Module, temperature: float, info: dict | None = None, novelty=None) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.inner, self.temperature = inner, float(temperature)
        self.calibration = dict(info or {})  # what the model file's header keeps (T, ECE, min_score)
        self.novelty = novelty  # models.novelty.Novelty (train.abstain.novelty) or None

    # What callers read of the model it wraps (a Blend's network and baseline, the front end) passes through.
    @property
    def network(self) -> nn.Module:
        return getattr(self.inner, "network", self.inner)

    @property
    def baseline(self):
        return getattr(self.inner, "baseline", None)

    @property
    def info(self) -> dict:
        return getattr(self.inner, "info", {})

    @property
    def frontend(self) -> nn.Module:
        return self.inner.frontend

    @property
    def backbone(self) -> nn.Module:
        return self.inner.backbone

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.inner(x, lengths).float() / self.temperature  # (B, K)


def untempered(model: nn.Module) -> nn.Module:
    """The model a `Tempered` wraps (any other model as it is)."""
    return model.inner if isinstance(model, Tempered) else model
