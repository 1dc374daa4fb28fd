"""WaveNet-style classifier: a downsampling conv front, stacks of dilated gated convolutions
with residual and skip connections, global pooling over valid steps, linear head.

Input x (B, T, C): raw samples (C = 1, `features.kind: waveform`) or feature frames (C bins,
e.g. `kind: logmel`); the family does not care which. The front shortens raw audio before the
dilated stacks run (default strides (4, 4, 2): 32x, 8 kHz -> 250 steps/s), which is what makes
raw audio affordable on a CPU. Every layer is followed by a length mask, so the zero padding a
convolution reads past a row's end is the same alone or in a padded batch.

`causal: true` pads every convolution on the left only (TCN style), so output step t' depends on
input steps < (t' + 1) * stride, never later ones; `causal: false` pads both sides (centred).
(In training mode batch norm's statistics span the whole batch and all steps; causality is a
property of the eval-mode network, where batch norm is a fixed affine map.)
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from attn.schema import PosInt, Strict

from .base import Backbone, MaskedBatchNorm, length_mask, masked_pool, pooled_lengths, scaled_widths
from .families import register


class MaskedConv(nn.Module):
    """Conv1d (+ optional masked batch norm) with explicit causal or centred padding.

    (B, Cin, T), lengths (B,) -> (B, Cout, ceil(T / stride)), lengths -> ceil(lengths / stride).
    The output is *not* masked (callers mask after their activation). Output step j reads input
    steps [j*stride - left, j*stride - left + (kernel-1)*dilation], where left is the full
    overhang (kernel-1)*dilation - (stride-1) when causal and half of it when centred.
    """

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1, *, causal: bool, norm: str
    ) -> None:
        super().__init__()
        self.kernel, self.stride, self.dilation = kernel, stride, dilation
        span = (kernel - 1) * dilation + 1
        overhang = max(0, span - stride)  # input steps a window reaches past its own stride block
        self.left = overhang if causal else overhang // 2
        self.conv = nn.Conv1d(cin, cout, kernel, stride=stride, dilation=dilation, bias=norm != "batch")
        if norm == "weight":
            self.conv = weight_norm(self.conv)
        self.norm = MaskedBatchNorm(cout) if norm == "batch" else None

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = x.shape[-1]
        steps = -(-t // self.stride)  # ceil: a last partial block still gets an output step
        need = (steps - 1) * self.stride + (self.kernel - 1) * self.dilation + 1
        # Right padding depends only on the padded width; positions past a row's length are zero
        # either way (masked input or F.pad's zeros), so valid outputs never see the difference.
        x = F.pad(x, (self.left, max(0, need - t - self.left)))
        y = self.conv(x)  # (B, Cout, steps)
        lengths = pooled_lengths(lengths, self.stride)
        if self.norm is not None:
            y = self.norm(y, length_mask(lengths, y.shape[-1]))
        return y, lengths


class FrontStage(nn.Module):
    """Downsample by `stride`: conv -> ReLU, either strided (kernel >= stride) or a stride-1 conv
    followed by a max over each block of `stride` steps (`pool`).

    (B, Cin, T), lengths -> (B, Cout, ceil(T / stride)), ceil(lengths / stride), zero past them.
    Pooling gives the rectified filter output's envelope, which (unlike a strided conv's
    samples, which alias) hardly changes when the input shifts by a sample; its batch norm comes
    after the pool, on stride-times fewer steps (at the sample rate it would cost as much as the
    whole rest of the model).
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, *, pool: bool, causal: bool, norm: str) -> None:
        super().__init__()
        self.pool = stride if pool else 1
        late = pool and norm == "batch"
        self.conv = MaskedConv(cin, cout, kernel, 1 if pool else stride, causal=causal, norm="none" if late else norm)
        self.norm = MaskedBatchNorm(cout) if late else None

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, lengths = self.conv(x, lengths)
        mask = length_mask(lengths, x.shape[-1])
        x = torch.relu(x) * mask[:, None, :]
        if self.pool > 1:
            x = max_pool_ceil(x, self.pool)
            lengths = pooled_lengths(lengths, self.pool)
            mask = length_mask(lengths, x.shape[-1])
        if self.norm is not None:
            x = self.norm(x, mask) * mask[:, None, :]
        return x, lengths, mask


def max_pool_ceil(x: torch.Tensor, k: int) -> torch.Tensor:
    """Max over blocks of k steps, a last partial block kept (ceil mode), for x >= 0:
    (B, C, T) -> (B, C, ceil(T / k)).

    While exporting or compiling, the partial block is padded with zeros (exact, since x >= 0)
    and the blocks are reshaped and reduced: `max_pool1d`'s ceil-mode size rule would specialise
    the graph to the example's length. Eagerly, max_pool1d is ~4x faster (no padded copy).
    """
    if not torch.compiler.is_compiling():
        return F.max_pool1d(x, k, ceil_mode=True)
    b, c, t = x.shape
    steps = (t + k - 1) // k
    return F.pad(x, (0, steps * k - t)).reshape(b, c, steps, k).amax(-1)


class GatedResidualLayer(nn.Module):
    """One dilated layer: z = tanh(a) * sigmoid(b) with [a; b] = dilated_conv(x); then a 1x1
    conv gives the residual update (x + res) and the skip contribution.

    x (B, C, T) -> x' (B, C, T) (None for the last layer, whose residual is never used),
    skip (B, S, T). Both are masked to zero past each row's length.
    """

    def __init__(
        self, channels: int, skip: int, kernel: int, dilation: int, *, last: bool, causal: bool, norm: str
    ) -> None:
        super().__init__()
        self.dilated = MaskedConv(channels, 2 * channels, kernel, dilation=dilation, causal=causal, norm=norm)
        # Residual and skip 1x1 convs fused into one (one matmul on CPU instead of two).
        self.out = nn.Conv1d(channels, skip if last else channels + skip, 1)
        if norm == "weight":
            self.out = weight_norm(self.out)
        self.channels, self.last = channels, last

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor):
        h, _ = self.dilated(x, lengths)  # (B, 2C, T)
        a, b = h.chunk(2, dim=1)
        o = self.out(torch.tanh(a) * torch.sigmoid(b)) * mask[:, None, :]
        if self.last:
            return None, o
        # sqrt(1/2) keeps the residual stream's variance from growing with depth.
        return (x + o[:, : self.channels]) * math.sqrt(0.5), o[:, self.channels :]


@register("wavenet")
class WaveNet(Backbone):
    """Dilated gated convolution stacks (WaveNet / TCN) over samples or frames.

    Args (recipe `model.*`):
        front_strides: one downsampling stage per entry; their product S is the downsampling,
            e.g. (4, 4, 2): 32x, 8 kHz audio -> 250 steps/s. Use (1,) for log-mel frames (a 1x1
            projection).
        front_kernels: conv kernel of each stage; default 2*stride (windows overlap by half,
            like an STFT with 50% hop), 1 for stride 1.
        front_pool: each stage is a stride-1 conv + max pool over `stride` steps (an envelope,
            stable under small shifts) instead of a strided conv (cheaper, but aliases). On
            FSDD the pooled front reached 95% test accuracy in 4 epochs, the strided one 86%.
        front_channels: channels of the front convolutions.
        channels: residual channels of the dilated stacks.
        skip_channels: channels of the skip sum and of the 1x1 conv after it.
        kernel_size: dilated convolution kernel.
        layers: dilated layers per stack, dilations 1, 2, 4, ..., 2**(layers-1).
        stacks: how many times the dilation cycle repeats.
        causal: left-only padding (output never sees later input) instead of centred.
        norm: batch (masked batch norm after every conv), weight (weight norm), or none.
        dropout: before the linear head.
        pool: global pooling over valid steps: mean, max, or both concatenated (meanmax).

    Receptive field (input steps) = 1 + sum_i (k_i - 1 + [front_pool] (s_i - 1)) * J_i over the
    front stages (J_i = product of the strides before stage i)
    + stacks * (kernel_size - 1) * (2**layers - 1) * S; see `receptive_field`. Defaults: 4083
    samples (0.51 s at 8 kHz).
    """

    class Config(Strict):
        front_strides: tuple[PosInt, ...] = Field((4, 4, 2), min_length=1)
        front_kernels: tuple[PosInt, ...] | None = None  # None: 2*stride (1 for stride 1)
        front_pool: bool = True
        front_channels: PosInt = 32
        channels: PosInt = 32
        skip_channels: PosInt = 64
        kernel_size: int = Field(3, ge=2)
        layers: int = Field(5, ge=1, le=16)
        stacks: PosInt = 2
        causal: bool = False
        norm: Literal["batch", "weight", "none"] = "batch"
        dropout: float = Field(0.2, ge=0, lt=1)
        pool: Literal["mean", "max", "meanmax"] = "meanmax"

        @model_validator(mode="after")
        def _kernels(self) -> WaveNet.Config:
            ks = self.front_kernels
            if ks is not None and len(ks) != len(self.front_strides):
                raise ValueError(f"front_kernels {ks} needs one kernel per front stride {self.front_strides}")
            if (
                ks is not None
                and not self.front_pool
                and any(k < s for k, s in zip(ks, self.front_strides, strict=True))
            ):
                raise ValueError(f"front_kernels {ks}: a kernel shorter than its stride would skip samples")
            return self

        @property
        def kernels(self) -> tuple[int, ...]:
            """The front's kernel sizes, defaults filled in."""
            return self.front_kernels or tuple(2 * s if s > 1 else 1 for s in self.front_strides)

    @classmethod
    def tune_space(cls, cfg: Config) -> dict[str, dict]:
        # Width: residual channels halved or doubled; depth: layers per stack, two fewer or more.
        return {
            "channels": {"choice": scaled_widths(cfg, "channels")},
            "layers": {"int": [max(1, cfg.layers - 2), min(16, cfg.layers + 2)]},
            "dropout": {"uniform": [0.0, 0.4]},
        }

    def __init__(self, in_dim: int, num_classes: int, cfg: Config) -> None:
        super().__init__(in_dim, num_classes, cfg)
        # Per-channel standardisation of the input (raw samples are ~1e-2, dB values ~-50); the
        # input distribution is fixed, so a cumulative average (momentum=None) suffices.
        self.input_norm = MaskedBatchNorm(in_dim, momentum=None)
        kw = {"causal": cfg.causal, "norm": cfg.norm}
        chans = (in_dim, *(cfg.front_channels,) * len(cfg.front_strides))
        self.front = nn.ModuleList(
            FrontStage(a, b, k, s, pool=cfg.front_pool, **kw)
            for a, b, k, s in zip(chans, chans[1:], cfg.kernels, cfg.front_strides, strict=False)
        )
        self.proj = nn.Conv1d(cfg.front_channels, cfg.channels, 1)
        n = cfg.stacks * cfg.layers
        dilations = [2 ** (i % cfg.layers) for i in range(n)]  # 1, 2, ..., 2**(layers-1), repeated
        self.layers = nn.ModuleList(
            GatedResidualLayer(cfg.channels, cfg.skip_channels, cfg.kernel_size, d, last=i == n - 1, **kw)
            for i, d in enumerate(dilations)
        )
        self.post = nn.Conv1d(cfg.skip_channels, cfg.skip_channels, 1)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.skip_channels * (2 if cfg.pool == "meanmax" else 1), num_classes)

    @property
    def stride(self) -> int:
        """Input steps per output step (the product of the front strides)."""
        return math.prod(self.cfg.front_strides)

    @property
    def receptive_field(self) -> int:
        """Input steps one output step depends on (the span of its impulse response)."""
        cfg, rf, jump = self.cfg, 1, 1
        for k, s in zip(cfg.kernels, cfg.front_strides, strict=True):
            rf += (k - 1 + (s - 1 if cfg.front_pool else 0)) * jump
            jump *= s
        return rf + cfg.stacks * (cfg.kernel_size - 1) * (2**cfg.layers - 1) * jump

    def describe(self) -> dict:
        return {
            "receptive_field": f"{self.receptive_field} input steps (samples or frames), "
            f"{'causal' if self.cfg.causal else 'centred'}, one output step per {self.stride}",
        }

    def forward_steps(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Before pooling: x (B, T, C), lengths (B,) -> (B, S, ceil(T/stride)), valid steps (B,).
        Zero past each row's length."""
        x = x.transpose(1, 2)  # (B, C, T)
        mask = length_mask(lengths, x.shape[-1])
        x = self.input_norm(x, mask) * mask[:, None, :]
        for stage in self.front:
            x, lengths, mask = stage(x, lengths)  # (B, F, T / J)
        x = self.proj(x) * mask[:, None, :]  # (B, C, T')
        skip = 0
        for layer in self.layers:
            x, s = layer(x, lengths, mask)
            skip = skip + s  # (B, S, T')
        out = self.post(torch.relu(skip))
        return torch.relu(out) * mask[:, None, :], lengths

    def forward_features(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        h, lengths = self.forward_steps(x, lengths)
        mask = length_mask(lengths, h.shape[-1])
        return self.dropout(masked_pool(h, mask, self.cfg.pool))  # (B, D)
