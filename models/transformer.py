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

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from attn.schema import PosInt, Strict

from .attention import (
    EncoderBlock,
    PatchEmbed,
    interpolated_positions,
    sinusoidal_table,
)
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
