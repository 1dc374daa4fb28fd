"""Where a model looks: weights over its input positions, for `attn explain`.

    attribute(backbone, x (B, T, C), lengths (B,), target (B,)) -> Attribution

A family with attention (`Backbone.attention_maps`) is read from it: attention rollout (Abnar &
Zuidema 2020, "Quantifying Attention Flow in Transformers") from the pooled vector back to the
input tokens, and the pooled vector's attention in each layer and head. Any other family is
measured by occlusion: a stretch of the input is replaced by the row's mean and the drop in
the target's log-probability is that stretch's weight (model-agnostic; time x frequency too
when the channels are a spectrum). Either way every row's weights are >= 0, sum to 1 over its
valid positions and are 0 past them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .base import AttentionMaps


@dataclass
class Attribution:
    """Weights over P input positions (a position: an input step, a patch column or a stretch
    of steps; `spans` says which)."""

    weights: torch.Tensor  # (B, P) >= 0, sums to 1 over the row's valid positions, 0 past them
    valid: torch.Tensor  # (B, P) bool
    spans: torch.Tensor  # (P, 2) int64: input steps [start, end) each position covers
    method: str  # "attention rollout" or "occlusion"
    # (B, F, P) over (channel band, position), sums to 1. Patches: weights = grid.sum(1). Occlusion:
    # each cell occluded on its own and normalised on its own, so a column need not sum to its weight
    grid: torch.Tensor | None = None
    bands: torch.Tensor | None = None  # (F, 2) int64: input channels [lo, hi) of each band
    layers: torch.Tensor | None = None  # (B, L, H, P): the pooled vector's attention per layer and head
    # (B,) occlusion: the largest fall in log p(target) any one position's occlusion causes. The
    # weights are shares of the falls, so a model the occlusion barely moves (a fall of 1e-4)
    # still shows a clear winner: this says how much any of it matters
    fall: torch.Tensor | None = None


def normalise(w: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Non-negative weights summing to 1 over `valid` in the last dims after the batch one; a row
    with no positive weight is spread evenly over its valid positions. w, valid (B, ...)."""
    w = w.float().clamp_min(0) * valid
    dims = tuple(range(1, w.dim()))
    total = w.sum(dims, keepdim=True)
    even = valid.float() / valid.float().sum(dims, keepdim=True).clamp_min(1)
    return torch.where(total > 0, w / total.clamp_min(1e-30), even)


def rollout(layers: list[torch.Tensor], residual: float = 0.5) -> torch.Tensor:
    """Attention rollout: R = Ã_L ... Ã_1, Ã_l = residual * I + (1 - residual) * mean over heads
    of A_l (the residual connection carries each token's own value past the attention), rows
    renormalised. layers: per layer (B, heads, N, N) -> (B, N, N); row i of R is how much output
    token i draws on each input token."""
    b, _, n, _ = layers[0].shape
    eye = torch.eye(n, device=layers[0].device)
    r = eye.expand(b, n, n)
    for a in layers:
        a = residual * eye + (1 - residual) * a.mean(1)
        r = (a / a.sum(-1, keepdim=True)) @ r
    return r


def from_attention(maps: AttentionMaps, lengths: torch.Tensor, steps: int) -> Attribution:
    """Rollout from the pooled vector (its `readout` over the encoder outputs) to the input
    tokens, mixed with a direct token path by its share when the model has one; `steps` is T."""
    s = maps.skip
    flow = (maps.readout[:, None, :] @ rollout(maps.layers))[:, 0, s:]  # (B, N - skip)
    valid = maps.mask[:, s:]
    w = normalise(flow, valid)
    if maps.direct is not None:
        share = maps.direct_share[:, None]
        w = (1 - share) * w + share * normalise(maps.direct, valid)
    per_layer = torch.einsum("bn,blhnm->blhm", maps.readout, torch.stack(maps.layers, 1))[..., s:]
    b, n_layers, heads, _ = per_layer.shape
    p = maps.patches
    if p is None:
        spans = torch.stack([torch.arange(w.shape[1]), torch.arange(1, w.shape[1] + 1)], 1)
        layers = normalise(per_layer.reshape(b * n_layers * heads, -1),
                           valid.repeat_interleave(n_layers * heads, 0)).view_as(per_layer)  # fmt: skip
        return Attribution(w, valid, spans, "attention rollout", layers=layers)
    # Patch tokens are time-major: (B, Nt * Nf) -> (B, Nf, Nt).
    nf = p.freq_tokens
    nt = w.shape[1] // nf
    grid = w.view(b, nt, nf).transpose(1, 2)
    tvalid = valid.view(b, nt, nf)[:, :, 0]
    layers = per_layer.view(b, n_layers, heads, nt, nf).sum(-1)
    layers = normalise(layers.reshape(b * n_layers * heads, nt),
                       tvalid.repeat_interleave(n_layers * heads, 0)).view(b, n_layers, heads, nt)  # fmt: skip
    start = torch.arange(nt) * p.stride[1]
    spans = torch.stack([start, (start + p.size[1]).clamp_max(steps)], 1)
    lo = torch.arange(nf) * p.stride[0]
    bands = torch.stack([lo, lo + p.size[0]], 1)
    return Attribution(grid.sum(1), tvalid, spans, "attention rollout", grid=grid, bands=bands, layers=layers)


@torch.no_grad()
def occlusion(
    backbone, x: torch.Tensor, lengths: torch.Tensor, target: torch.Tensor, segments: int | None = 32,
    bands: int | None = None, batch_size: int = 64, sigmoid: bool = False,
) -> Attribution:  # fmt: skip
    """Occlusion over time: the T steps in at most `segments` equal stretches (None: one per step),
    each in turn set to the row's mean over its valid steps; a stretch's weight is the fall in
    log p(target) (never negative). With `bands`, also each (channel band x stretch) cell.
    x (B, T, C), lengths (B,), target (B,) class indices; `sigmoid`: p is the target's own sigmoid
    (a multi-label model), not the softmax over the classes."""
    b, t, c = x.shape
    width = 1 if segments is None else max(1, math.ceil(t / segments))
    starts = torch.arange(0, t, width)
    spans = torch.stack([starts, (starts + width).clamp_max(t)], 1)  # (P, 2)
    valid = starts[None, :] < lengths.cpu()[:, None]  # (B, P)
    band_spans = None
    if bands:
        bw = max(1, math.ceil(c / bands))
        lo = torch.arange(0, c, bw)
        band_spans = torch.stack([lo, (lo + bw).clamp_max(c)], 1)
    drops = torch.zeros(b, len(spans))
    grid = torch.zeros(b, 0 if band_spans is None else len(band_spans), len(spans))
    for i in range(b):
        n = int(lengths[i])
        xi = x[i : i + 1, :n]  # (1, n, C)
        fill = xi.mean(1)  # (1, C): the row's mean frame
        base = _logp(backbone, xi, n, int(target[i]), batch_size, sigmoid)[0]
        cells = [(p, None) for p in range(len(spans)) if spans[p, 0] < n]
        if band_spans is not None:
            cells += [(p, f) for f in range(len(band_spans)) for p in range(len(spans)) if spans[p, 0] < n]
        copies = xi.repeat(len(cells), 1, 1)
        for k, (p, f) in enumerate(cells):
            s, e = int(spans[p, 0]), int(spans[p, 1])
            if f is None:
                copies[k, s:e] = fill[0]
            else:
                lo_, hi = int(band_spans[f, 0]), int(band_spans[f, 1])
                copies[k, s:e, lo_:hi] = fill[0, lo_:hi]
        fall = (base - _logp(backbone, copies, n, int(target[i]), batch_size, sigmoid)).clamp_min(0)
        for k, (p, f) in enumerate(cells):
            if f is None:
                drops[i, p] = fall[k]
            else:
                grid[i, f, p] = fall[k]
    weights, fall = normalise(drops, valid), drops.amax(1)
    if band_spans is None:
        return Attribution(weights, valid, spans, "occlusion", fall=fall)
    grid = normalise(grid, valid[:, None, :].expand_as(grid))
    return Attribution(weights, valid, spans, "occlusion", grid=grid, bands=band_spans, fall=fall)


def _logp(backbone, x: torch.Tensor, n: int, target: int, batch_size: int, sigmoid: bool = False) -> torch.Tensor:
    """log p(target) for each row of x (R, n, C), all of length n: (R,); p the softmax over the
    classes, or with `sigmoid` the target's own sigmoid."""
    out = []
    for i in range(0, len(x), batch_size):
        part = x[i : i + batch_size]
        logits = backbone(part, torch.full((len(part),), n, dtype=torch.int64, device=x.device))
        logp = torch.nn.functional.logsigmoid(logits.float()) if sigmoid else logits.float().log_softmax(-1)
        out.append(logp[:, target].cpu())
    return torch.cat(out)


@torch.no_grad()
def attribute(
    backbone, x: torch.Tensor, lengths: torch.Tensor, target: torch.Tensor, segments: int | None = 32,
    bands: int | None = None, sigmoid: bool = False,
) -> Attribution:  # fmt: skip
    """Attention rollout for a backbone with attention, else occlusion (see the module doc).
    x (B, T, C) backbone input, lengths (B,), target (B,) the class to explain; `segments` and
    `bands` are occlusion's resolution."""
    backbone.eval()
    maps = backbone.attention_maps(x, lengths, target)
    if maps is not None:
        return from_attention(maps, lengths, x.shape[1])
    return occlusion(backbone, x, lengths, target, segments, bands, sigmoid=sigmoid)


def mean_attribution(parts: list[Attribution]) -> Attribution:
    """Several models' attributions of the same inputs (an ensemble's members) averaged: still
    non-negative and summing to 1."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]

    def avg(name: str):
        vals = [getattr(p, name) for p in parts]
        return None if any(v is None for v in vals) else torch.stack(vals).mean(0)

    return Attribution(avg("weights"), first.valid, first.spans, first.method, avg("grid"), first.bands, avg("layers"),
                       avg("fall"))  # fmt: skip
