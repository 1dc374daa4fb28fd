"""Transformer encoder (Vaswani et al. 2017, "Attention Is All You Need") with a class token
read at the output (BERT's [CLS], Devlin et al. 2019), for text tokens and audio frames alike.

    x (B, T, C) -> Linear -> (+ or ||) positional encoding -> [class token] -> N blocks -> pool
    block (post-norm, Vaswani et al.'s):  H = LN(X + MHA(X));  H = LN(H + FF(H))
    block (pre-norm option, Xiong et al. 2020):  H = X + MHA(LN(X));  H = H + FF(LN(H))

Multi-head scaled dot-product attention softmax(QK^T / sqrt(d_k)) V per head, heads concatenated
and projected (or additive scoring, Bahdanau et al. 2015: v^T tanh(q + k) per head); padded keys
get -inf before the softmax, so they receive zero attention and a sequence's output never depends
on its padding.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from attn.schema import PosInt, Strict

from .base import (
    AttentionMaps,
    Backbone,
    MaskedBatchNorm,
    PatchLayout,
    length_mask,
    masked_max,
    masked_mean,
    scaled_widths,
)
from .families import register


def sinusoidal_table(steps: int, dim: int) -> torch.Tensor:
    """E[i, 2j] = sin(i / 10000^(2j/dim)), E[i, 2j+1] = cos(i / 10000^(2j/dim)); (steps, dim)."""
    pos = torch.arange(steps, dtype=torch.float64)[:, None]
    freq = 10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (ceil(dim/2),)
    table = torch.zeros(steps, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return table.float()


def interpolated_positions(table: torch.Tensor, lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """A learned (P, D) position table for a batch padded to `steps`: (B, steps, D).

    A row of L <= P valid steps gets table[0..L-1], exactly. A longer row gets the table linearly
    interpolated up to L entries, as BERT and ViT do for inputs longer than they were trained on:
    its step i reads the table at i * (P - 1) / (L - 1), so the first and last entries stay where
    they were and the ones between spread evenly. Each row's codes depend on its own length only,
    never on how far the batch is padded. Steps past a row's length (padding) read the last entry.
    """
    p = table.shape[0]
    i = torch.arange(steps, device=table.device, dtype=torch.float32)  # (T,)
    n = lengths.to(table.device)
    scale = torch.where(n > p, (p - 1) / (n - 1).clamp_min(1).to(torch.float32), 1.0)  # (B,)
    at = (i[None, :] * scale[:, None]).clamp(max=p - 1)  # (B, T) fractional table index
    lo = at.floor().long()
    hi = (lo + 1).clamp(max=p - 1)
    w = (at - lo.to(at.dtype))[:, :, None].to(table.dtype)  # 0 for in-range rows: table[lo] exactly
    return table[lo] * (1 - w) + table[hi] * w


class MultiHeadAttention(nn.Module):
    """(B, T, d), key mask (B, T) -> (B, T, d). `weights()` gives the attention matrix."""

    def __init__(self, d: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads, self.dk = heads, d // heads
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.dropout = dropout

    def _qkv(self, x: torch.Tensor):
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, self.dk).permute(2, 0, 3, 1, 4)  # 3 x (B, h, T, dk)
        return q, k, v

    def scores(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Attention logits of queries (B, h, T, dk) against keys (B, h, S, dk): (B, h, T, S)."""
        return q @ k.transpose(-1, -2) / math.sqrt(self.dk)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self._qkv(x)
        h = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask[:, None, None, :], dropout_p=self.dropout if self.training else 0.0
        )  # (B, h, T, dk); True in attn_mask = may attend
        return self.out(h.transpose(1, 2).reshape(b, t, d))

    def weights(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """softmax(scores) with -inf on padded keys: (B, heads, T, T); scores QK^T / sqrt(d_k)."""
        q, k, _ = self._qkv(x)
        return self._weights(q, k, mask)

    def _weights(self, q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        s = self.scores(q, k).float().masked_fill(~mask[:, None, None, :], float("-inf"))
        return s.softmax(-1).to(q.dtype)


class AdditiveAttention(MultiHeadAttention):
    """Multi-head additive (Bahdanau) attention: per head h, score(q, k) = v_h^T tanh(q + k), then
    the same masked softmax, values and output projection as `MultiHeadAttention`.

    Bahdanau et al. 2015 write it v_a^T tanh(W_a s + U_a h); here W_a s and U_a h are the head's
    query and key projections of the shared qkv layer (their two biases sum to one bias inside
    the tanh), and v_a = v_h (d_k,). Memory is O(T^2 d) (a tanh per query, key and channel) against the dot
    product's O(T^2 heads): for sequences of up to a few hundred tokens.
    """

    def __init__(self, d: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__(d, heads, dropout)
        self.v = nn.Parameter(torch.randn(heads, self.dk) * self.dk**-0.5)

    def scores(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        e = torch.tanh(q[:, :, :, None, :] + k[:, :, None, :, :])  # (B, h, T, S, dk)
        return torch.einsum("bhtsd,hd->bhts", e, self.v.to(e.dtype))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self._qkv(x)
        w = F.dropout(self._weights(q, k, mask), self.dropout, self.training)  # (B, h, T, T)
        return self.out((w @ v).transpose(1, 2).reshape(b, t, d))


ATTENTION = {"dot": MultiHeadAttention, "additive": AdditiveAttention}


class EncoderBlock(nn.Module):
    def __init__(
        self, d: int, heads: int, ff: int, dropout: float, attn_dropout: float, act: str, norm: str, attention: str
    ):
        super().__init__()
        self.attn = ATTENTION[attention](d, heads, attn_dropout)
        self.ff = nn.Sequential(nn.Linear(d, ff), nn.GELU() if act == "gelu" else nn.ReLU(), nn.Dropout(dropout),
                                nn.Linear(ff, d))  # fmt: skip
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)
        self.pre = norm == "pre"

    def attention(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The weights (B, heads, T, T) this block's attention uses for block input x (B, T, d)."""
        return self.attn.weights(self.norm1(x) if self.pre else x, mask)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.pre:
            x = x + self.drop(self.attn(self.norm1(x), mask))
            return x + self.drop(self.ff(self.norm2(x)))
        x = self.norm1(x + self.drop(self.attn(x, mask)))
        return self.norm2(x + self.drop(self.ff(x)))


class PatchEmbed(nn.Module):
    """(B, T, C) frames -> (B, N, width) patch tokens, time-major, plus valid token counts.

    The (C x T) input is cut into (pf, pt) patches every (sf, st) by a strided conv. A row of L
    valid frames has n = 1 + ceil(max(L - pt, 0) / st) time patches covering it; frames past L are
    zero, so the last, partly padded patch is the same alone or in a padded batch.
    """

    def __init__(self, in_dim: int, width: int, size: tuple[int, int], stride: tuple[int, int]) -> None:
        super().__init__()
        if size[0] > in_dim:
            raise ValueError(f"model.patch frequency size {size[0]} exceeds the {in_dim} input channels")
        self.size, self.stride = size, stride
        self.conv = nn.Conv2d(1, width, kernel_size=size, stride=stride)
        self.freq_tokens = (in_dim - size[0]) // stride[0] + 1

    def time_tokens(self, lengths: torch.Tensor) -> torch.Tensor:
        pt, st = self.size[1], self.stride[1]
        return 1 + torch.div((lengths - pt).clamp_min(0) + st - 1, st, rounding_mode="floor")

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        b, t, c = x.shape
        x = x * length_mask(lengths, t)[:, :, None]
        # Time patches covering all t steps (a padded batch is as wide as its longest row, so this
        # is that row's count). From the shape, not from `lengths`: an exported graph keeps it
        # symbolic, where a count read from a tensor would be data-dependent.
        pt, st = self.size[1], self.stride[1]
        over = t - pt  # an int, a SymInt (export) or a 0-d tensor (torch.jit.trace)
        over = over.clamp_min(0) if isinstance(over, torch.Tensor) else torch.sym_max(over, 0)
        n = 1 + (over + st - 1) // st
        need = (n - 1) * st + pt  # >= t
        img = F.pad(x.transpose(1, 2), (0, need - t))[:, None]  # (B, 1, C, need)
        tokens = self.conv(img)  # (B, width, Nf, n)
        tokens = tokens.permute(0, 3, 2, 1).reshape(b, n * self.freq_tokens, -1)  # time-major
        return tokens, self.time_tokens(lengths) * self.freq_tokens, n


@register("transformer")
class TransformerEncoder(Backbone):
    """Transformer encoder classifier over any (B, T, C) sequence: token embeddings or audio
    frames (each frame projected to d_model).

    Args (recipe `model.*`):
        d_model, heads, layers, ff_dim: sizes (d_model divisible by heads).
        dropout: after attention/feed-forward and on the input; attention_dropout: on weights;
            head_dropout: on the pooled vector before the linear head.
        norm: post (Vaswani et al. 2017's order) or pre (Xiong et al. 2020).
        attention: dot (scaled dot-product) or additive (Bahdanau: v^T tanh(q + k) per head;
            more memory, see `AdditiveAttention`).
        positions: sinusoidal, learned (max_positions of them; the recipe's windows must fit,
            and a longer input at prediction time gets the table linearly interpolated to its
            length, as BERT and ViT do) or none.
        position_mode: sum (E added, width d_model) or concat (E of position_dim appended).
        pool: cls (a trainable class token, read at the output), mean or max over valid steps,
            or attention: a learned scoring vector w gives each output token a weight
            softmax_t(w . h_t) over the valid tokens, and the pooled vector is their weighted sum
            (attention with one learned query, like the word context vector of Yang et al. 2016,
            "Hierarchical Attention Networks for Document Classification").
        token_pool: none, mean, max or attention: also pool the token vectors that enter the
            encoder (before positions and attention, so each one depends on its token alone)
            and concatenate them to the pooled encoder output before the head. A bag-of-words
            path beside the contextual one: the head reads a rare word's own vector directly,
            as TF-IDF + a linear model does; with attention its weights are static, per-token
            learned weights (TF-IDF's weighting is a fixed attention of that kind).
        position_scale: multiplies the positional encodings (sinusoidal values are ~0.7 per
            unit, far larger than token embeddings initialised at embed_dim**-0.5; below 1 lets
            the token identity dominate the sum). 1 keeps the plain sum.
        input_norm: standardise each input channel (e.g. mel band) with masked batch norm
            (spectrogram inputs: dB values sit far from 0).
        patch, patch_stride: ViT/AST-style tokens: (freq, time) patches of the (C x T) input
            instead of one token per step; positions are then 2-D (half the encoding for the
            time index, half for the frequency index).
    """

    class Config(Strict):
        d_model: int = Field(128, ge=8)
        heads: int = Field(4, ge=1)
        layers: int = Field(2, ge=1)
        ff_dim: int = Field(256, ge=1)
        dropout: float = Field(0.1, ge=0, lt=1)
        attention_dropout: float = Field(0.0, ge=0, lt=1)
        activation: Literal["gelu", "relu"] = "gelu"
        norm: Literal["post", "pre"] = "post"
        attention: Literal["dot", "additive"] = "dot"
        positions: Literal["sinusoidal", "learned", "none"] = "sinusoidal"
        position_mode: Literal["sum", "concat"] = "sum"
        position_dim: int = Field(32, ge=2)
        max_positions: int = Field(1024, ge=1)
        pool: Literal["cls", "mean", "max", "attention"] = "cls"
        token_pool: Literal["none", "mean", "max", "attention"] = "none"
        position_scale: float = Field(1.0, ge=0)
        input_norm: bool = False
        head_dropout: float = Field(0.0, ge=0, lt=1)
        patch: tuple[PosInt, PosInt] | None = None
        patch_stride: tuple[PosInt, PosInt] | None = None

        @model_validator(mode="after")
        def _shapes(self):
            if self.patch_stride is not None and self.patch is None:
                raise ValueError("patch_stride needs patch")
            if self.d_model % self.heads:
                raise ValueError(f"d_model ({self.d_model}) must be divisible by heads ({self.heads})")
            if self.position_mode == "concat" and self.position_dim >= self.d_model:
                raise ValueError(f"position_dim ({self.position_dim}) must be below d_model ({self.d_model})")
            return self

    def __init__(self, in_dim: int, num_classes: int, cfg: Config) -> None:
        super().__init__(in_dim, num_classes, cfg)
        d = cfg.d_model
        concat = cfg.positions != "none" and cfg.position_mode == "concat"
        self.pos_dim = cfg.position_dim if concat else d
        width = d - cfg.position_dim if concat else d
        self.input_norm = MaskedBatchNorm(in_dim, momentum=None) if cfg.input_norm else None
        if cfg.patch is not None:
            self.patches = PatchEmbed(in_dim, width, cfg.patch, cfg.patch_stride or cfg.patch)
            self.proj = None
        else:
            self.patches = None
            self.proj = nn.Identity() if in_dim == width else nn.Linear(in_dim, width)
        if cfg.positions == "learned":
            self.pos = nn.Parameter(torch.randn(cfg.max_positions, self.pos_dim) * 0.02)
            if self.patches is not None:
                self.pos_freq = nn.Parameter(torch.randn(self.patches.freq_tokens, self.pos_dim) * 0.02)
        if cfg.pool == "cls":
            self.cls = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            EncoderBlock(
                d, cfg.heads, cfg.ff_dim, cfg.dropout, cfg.attention_dropout, cfg.activation, cfg.norm, cfg.attention
            )
            for _ in range(cfg.layers)
        )
        self.final_norm = nn.LayerNorm(d) if cfg.norm == "pre" else nn.Identity()
        self.attn_pool = nn.Linear(d, 1) if cfg.pool == "attention" else None
        self.token_score = nn.Linear(width, 1) if cfg.token_pool == "attention" else None
        self.head_drop = nn.Dropout(cfg.head_dropout)
        self.head = nn.Linear(d + (width if cfg.token_pool != "none" else 0), num_classes)
        self._table = torch.zeros(0)

    token_outputs = True

    @classmethod
    def uses_class_token(cls, cfg: Config) -> bool:
        return cfg.pool == "cls"

    @classmethod
    def tune_space(cls, cfg: Config) -> dict[str, dict]:
        # Width: d_model halved or doubled (kept divisible by heads); depth: one layer fewer or more.
        return {
            "d_model": {"choice": scaled_widths(cfg, "d_model")},
            "layers": {"int": [max(1, cfg.layers - 1), cfg.layers + 1]},
            "dropout": {"uniform": [0.0, 0.3]},
        }

    @property
    def token_dim(self) -> int:
        return self.cfg.d_model

    def max_steps(self) -> int | None:
        # A learned table fits the recipe's windows; longer inputs at prediction time interpolate it.
        if self.cfg.positions != "learned":
            return None
        if self.patches is not None:  # the limit is on time patches; in input steps:
            return (self.cfg.max_positions - 1) * self.patches.stride[1] + self.patches.size[1]
        return self.cfg.max_positions

    def positions(self, lengths: torch.Tensor, steps: int) -> torch.Tensor:
        """Positional encodings of a batch padded to `steps` with `lengths` (B,) valid steps:
        (B, steps, pos_dim) for a learned table (interpolated for rows longer than it, see
        `interpolated_positions`), (1, steps, pos_dim) for sinusoids (any length)."""
        if self.cfg.positions == "learned":
            return interpolated_positions(self.pos, lengths, steps)
        return self._sinusoid(steps, self.pos_dim, lengths.device)[None]

    def _sinusoid(self, steps: int, dim: int, device) -> torch.Tensor:
        if self._table.shape[0] < steps or self._table.shape[1] != dim or self._table.device != torch.device(device):
            self._table = sinusoidal_table(max(steps, 64), dim).to(device)
        return self._table[:steps]

    def patch_positions(self, time_lengths: torch.Tensor, time_tokens: int) -> torch.Tensor:
        """(B or 1, time_tokens * freq_tokens, pos_dim) for time-major patch order, rows with
        `time_lengths` (B,) valid time patches: each token's code depends only on its (time, freq)
        index and its row's length, never on how long the batch is."""
        nf, device = self.patches.freq_tokens, time_lengths.device
        if self.cfg.positions == "learned":
            pt, pf = self.positions(time_lengths, time_tokens), self.pos_freq  # (B, Tt, D), (Nf, D)
        else:
            half = self.pos_dim // 2
            pt = F.pad(self._sinusoid(time_tokens, half, device), (0, self.pos_dim - half))[None]
            pf = F.pad(sinusoidal_table(nf, self.pos_dim - half).to(device), (half, 0))
        return (pt[:, :, None, :] + pf[None, None, :, :]).reshape(pt.shape[0], time_tokens * nf, self.pos_dim)

    def encode(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token encoder outputs (B, T', d) and their mask (B, T'); T' = T + 1 with a class
        token (at index 0: with no positional encoding on it, where it sits does not change any
        output, since attention is permutation-equivariant; BERT puts its [CLS] first too)."""
        return self._encode(x, lengths)[:2]

    def _encode(self, x: torch.Tensor, lengths: torch.Tensor):
        """(encoder outputs, their mask, token vectors before positions (B, T, width), their mask)."""
        if self.input_norm is not None:
            m = length_mask(lengths, x.shape[1])
            x = (self.input_norm(x.transpose(1, 2), m) * m[:, None, :]).transpose(1, 2)
        pos = self.cfg.positions != "none"
        if self.patches is not None:
            time_lengths = self.patches.time_tokens(lengths)  # (B,)
            h, lengths, time_tokens = self.patches(x, lengths)  # (B, N, width)
            e = self.patch_positions(time_lengths, time_tokens) if pos else None
        else:
            h = self.proj(x)  # (B, T, width)
            e = self.positions(lengths, x.shape[1]) if pos else None  # (B or 1, T, pos_dim)
        b, t, _ = h.shape
        tokens, token_mask = h, length_mask(lengths, t)
        if e is not None:
            e = e.to(h.dtype)
            if self.cfg.position_scale != 1.0:
                e = e * self.cfg.position_scale
            h = h + e if self.cfg.position_mode == "sum" else torch.cat([h, e.expand(b, -1, -1)], dim=-1)
        mask = token_mask
        if self.cfg.pool == "cls":
            h = torch.cat([self.cls.expand(b, 1, -1).to(h.dtype), h], dim=1)
            mask = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=x.device), mask], dim=1)
        h = self.drop(h)
        for block in self.blocks:
            h = block(h, mask)
        return self.final_norm(h), mask, tokens, token_mask

    @torch.no_grad()
    def attention_maps(
        self, x: torch.Tensor, lengths: torch.Tensor, target: torch.Tensor | None = None
    ) -> AttentionMaps:
        layers: list[torch.Tensor] = []
        # Each block's weights on the input it actually gets (a pre-hook sees it as forward does).
        hooks = [b.register_forward_pre_hook(lambda blk, args: layers.append(blk.attention(*args)))
                 for b in self.blocks]  # fmt: skip
        try:
            h, mask, tokens, token_mask = self._encode(x, lengths)
        finally:
            for hook in hooks:
                hook.remove()
        m = mask.float()
        if self.cfg.pool == "cls":
            readout = torch.zeros_like(m)
            readout[:, 0] = 1.0
        elif self.cfg.pool == "attention":
            readout = _softmax_over(self.attn_pool(h), mask)
        else:  # mean or max: every valid output counts alike
            readout = m / m.sum(-1, keepdim=True)
        direct = share = None
        if self.cfg.token_pool != "none":
            tm = token_mask.float()
            if self.cfg.token_pool == "attention":
                direct = _softmax_over(self.token_score(tokens), token_mask)
            else:
                direct = tm / tm.sum(-1, keepdim=True)
            # The head is linear over [encoder vector, token vector]: each path's share of the
            # target logit is the size of its term in it.
            z_enc = h[:, 0] if self.cfg.pool == "cls" else self._pool(h, mask, self.cfg.pool, self.attn_pool)
            z_tok = self._pool(tokens, token_mask, self.cfg.token_pool, self.token_score)
            if target is None:
                target = self.head(torch.cat([z_enc, z_tok], dim=-1)).argmax(-1)
            w = self.head.weight[target]  # (B, d + width)
            d = z_enc.shape[-1]
            a, b = (w[:, :d] * z_enc).sum(-1).abs(), (w[:, d:] * z_tok).sum(-1).abs()
            share = (b / (a + b).clamp_min(1e-12)).float()
        patches = None
        if self.patches is not None:
            patches = PatchLayout(self.patches.freq_tokens, self.patches.size, self.patches.stride)
        return AttentionMaps([a.float() for a in layers], mask, readout, self.class_tokens, patches, direct, share)

    @staticmethod
    def _pool(h: torch.Tensor, mask: torch.Tensor, how: str, score: nn.Module | None) -> torch.Tensor:
        """(B, T, C), (B, T) -> (B, C) over valid steps."""
        if how == "attention":
            w = score(h).squeeze(-1).float().masked_fill(~mask, float("-inf")).softmax(-1)  # (B, T)
            return (w.to(h.dtype)[:, :, None] * h).sum(1)
        ht = h.transpose(1, 2)  # (B, C, T)
        return masked_mean(ht, mask) if how == "mean" else masked_max(ht, mask)

    def forward_features(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        h, mask, tokens, token_mask = self._encode(x, lengths)
        if self.cfg.pool == "cls":
            z = h[:, 0]
        else:
            z = self._pool(h, mask, self.cfg.pool, self.attn_pool)
        if self.cfg.token_pool != "none":
            z = torch.cat([z, self._pool(tokens, token_mask, self.cfg.token_pool, self.token_score)], dim=-1)
        return self.head_drop(z)


def _softmax_over(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Scores (B, T, 1) -> softmax over the valid steps of mask (B, T), float32 (B, T)."""
    return scores.squeeze(-1).float().masked_fill(~mask, float("-inf")).softmax(-1)
