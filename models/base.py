"""The backbone contract and the masking helpers every family uses.

Contract: `Backbone(in_dim, num_classes, cfg)`; `forward(x, lengths) -> logits` with
x (B, T, C) float, lengths (B,) int64 valid steps per row, logits (B, K). Steps at or after a
row's length are padding: a family must give a row the same logits alone or in a padded batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn


class Backbone(nn.Module):
    """Base class of registered model families (see `attn.models.registry`).

    Besides `forward`, the contract answers what code outside the family may ask of it, so that
    nothing has to probe a family's attributes by name: `max_steps`, `describe`, whether it has
    per-token outputs (`token_outputs`, `encode`, `token_dim`), whether it prepends a class
    token (`uses_class_token`, `class_tokens`) and what its attention looks at
    (`attention_maps`, for `attn explain`).
    """

    family: str = ""
    # True when `encode` gives one output vector per input token (masked-token pretraining
    # predicts the masked tokens from them).
    token_outputs: ClassVar[bool] = False

    def __init__(self, in_dim: int, num_classes: int, cfg) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.num_classes = num_classes
        self.cfg = cfg

    def forward_features(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, C), (B,) -> pooled embedding (B, D)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x, lengths))

    def max_steps(self) -> int | None:
        """The longest window a recipe may train this model on (None: any), e.g. the length of a
        learned position table. Longer inputs at prediction time are the family's to handle (the
        transformer interpolates its table)."""
        return None

    def describe(self) -> dict:
        """Facts `attn info` shows (families add e.g. a receptive field)."""
        return {}

    @classmethod
    def tune_space(cls, cfg) -> dict[str, dict]:
        """`attn tune`'s default search space over this family's hyperparameters, around the
        values in `cfg`: width, depth and dropout, as the recipe's `tune:` section writes them
        (key relative to `model`, e.g. {"dropout": {"uniform": [0.0, 0.5]}})."""
        return {}

    @classmethod
    def uses_class_token(cls, cfg) -> bool:
        """Whether a model of this `Config` prepends a learned class token to its input."""
        return False

    @property
    def class_tokens(self) -> int:
        """Tokens prepended to the input (1 with a class token): `encode`'s outputs start with them."""
        return int(self.uses_class_token(self.cfg))

    @property
    def token_dim(self) -> int:
        """Width D of `encode`'s per-token outputs (families with `token_outputs`)."""
        # AttributeError, so that hasattr() is False: TorchScript probes every attribute that way.
        raise AttributeError(f"model {self.family!r} has no per-token outputs")

    def encode(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token outputs (B, class_tokens + T', D) and their mask (B, class_tokens + T'), for
        x (B, T, C), lengths (B,) (families with `token_outputs`)."""
        raise NotImplementedError(f"model {self.family!r} has no per-token outputs")

    def attention_maps(
        self, x: torch.Tensor, lengths: torch.Tensor, target: torch.Tensor | None = None
    ) -> AttentionMaps | None:
        """The attention the model computes for x (B, T, C), lengths (B,) (eval mode), or None
        for a family without attention (`attn explain` then measures occlusion instead).
        `target` (B,): the class whose evidence `AttentionMaps.direct_share` weighs (default:
        the predicted one)."""
        return None


@dataclass(frozen=True)
class PatchLayout:
    """Encoder tokens that are (freq, time) patches of the (C x T) input, in time-major order:
    token i covers time steps [(i // freq_tokens) * stride[1], ... + size[1]) and channels
    [(i % freq_tokens) * stride[0], ... + size[0])."""

    freq_tokens: int
    size: tuple[int, int]  # (freq, time)
    stride: tuple[int, int]


@dataclass(frozen=True)
class AttentionMaps:
    """What a family's attention looks at (`Backbone.attention_maps`), for attribution.

    N encoder tokens: `skip` leading ones that are not inputs (a class token), then one per
    input step, or per patch (`patches`).
    """

    layers: list[torch.Tensor]  # per layer (B, heads, N, N): row i = token i's weights over the keys
    mask: torch.Tensor  # (B, N) valid tokens
    readout: torch.Tensor  # (B, N) each encoder output's weight in the pooled vector (sums to 1)
    skip: int = 0
    patches: PatchLayout | None = None
    # A path beside the encoder that reads the input tokens directly (the transformer's
    # token_pool): its weights over the N - skip input tokens (B, N - skip) and its share of
    # the target logit's evidence (B,) in [0, 1].
    direct: torch.Tensor | None = None
    direct_share: torch.Tensor | None = None


def scaled_widths(cfg, key: str, factors=(0.5, 1, 2)) -> list:
    """Valid values of width `key` (an int, or a tuple of per-block ints) scaled by `factors`,
    for a family's `tune_space`: each checked against the family's `Config`, in order, no repeats."""
    out: list = []
    for f in factors:
        v = getattr(cfg, key)
        v = [max(1, round(c * f)) for c in v] if isinstance(v, tuple) else max(1, round(v * f))
        try:
            type(cfg).model_validate({**cfg.model_dump(), key: v})
        except ValueError:  # pydantic's ValidationError: e.g. d_model no longer divisible by heads
            continue
        if v not in out:
            out.append(v)
    return out


def length_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """(B,) lengths -> (B, steps) bool, True on valid steps."""
    return torch.arange(steps, device=lengths.device)[None, :] < lengths[:, None]


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x (B, C, T), mask (B, T) -> mean over valid steps (B, C)."""
    m = mask[:, None, :].to(x.dtype)
    return (x * m).sum(-1) / m.sum(-1).clamp_min(1)


def masked_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x (B, C, T), mask (B, T) -> max over valid steps (B, C)."""
    return x.masked_fill(~mask[:, None, :], float("-inf")).amax(-1)


def masked_pool(x: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """Global pooling over valid steps: x (B, C, T), mask (B, T) -> (B, C), or (B, 2C) for
    "meanmax" (mean and max concatenated)."""
    if how == "mean":
        return masked_mean(x, mask)
    if how == "max":
        return masked_max(x, mask)
    if how == "meanmax":
        return torch.cat([masked_mean(x, mask), masked_max(x, mask)], dim=1)
    raise ValueError(f"unknown pooling {how!r}")


def pooled_lengths(lengths: torch.Tensor, stride: int) -> torch.Tensor:
    """Valid steps after a ceil-mode pool/stride of `stride`."""
    return torch.div(lengths + stride - 1, stride, rounding_mode="floor")


class MaskedBatchNorm(nn.BatchNorm1d):
    """Batch norm whose training statistics come from valid steps only.

    Input (B, C, ..., T) with mask (B, T). Plain batch norm would count padding in the batch
    mean and variance, so the same clip would be normalised differently depending on how long
    its batch-mates are. In eval mode this is exactly `nn.BatchNorm`.
    """

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if not self.training or x.numel() <= x.shape[1]:
            # Eval; or one value per channel (a one-frame clip alone in its batch): no batch
            # statistics to take (the fused kernel refuses them), so the running ones normalise it.
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        self.num_batches_tracked += 1
        mom = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        if x.device.type == "cpu" and bool(mask.all()):  # no padding: the fused kernel (no sync on CPU)
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, True, mom, self.eps)
        shape = (x.shape[0], 1) + (1,) * (x.dim() - 3) + (x.shape[-1],)
        m = mask.reshape(shape).to(x.dtype)  # (B, 1, ..., T)
        dims = [0] + list(range(2, x.dim()))
        n = (m.sum() * (x[0, 0].numel() // x.shape[-1])).clamp_min(1)
        # Two reductions (sum x, sum x^2 over valid steps) and one affine pass: about half the
        # memory traffic of centring first. Inputs are normalised activations or dB values,
        # where E[x^2] - E[x]^2 loses nothing that matters in float32.
        xm = x * m
        mean = xm.sum(dims) / n  # (C,)
        var = ((xm * x).sum(dims) / n - mean.square()).clamp_min(0)
        with torch.no_grad():
            unbiased = var * (n / (n - 1).clamp_min(1))
            self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), mom)
            self.running_var.lerp_(unbiased.detach().to(self.running_var.dtype), mom)
        scale = self.weight * torch.rsqrt(var + self.eps)
        shift = self.bias - mean * scale
        view = (1, -1) + (1,) * (x.dim() - 2)
        return torch.addcmul(shift.view(view), x, scale.view(view))
