"""The transformer's building blocks (`models.transformer.TransformerEncoder` assembles them):
sinusoidal position tables, multi-head attention (scaled dot-product, or additive scoring), the
encoder block (post- or pre-norm), and the patch embedding of spectrograms.

    MultiHeadAttention / AdditiveAttention: x (B, T, d), key mask (B, T) -> (B, T, d)
    EncoderBlock: x (B, T, d), key mask (B, T) -> (B, T, d)
    PatchEmbed: features (B, T, C), lengths (B,) -> patch tokens (B, N, d), valid tokens (B,)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import length_mask


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
