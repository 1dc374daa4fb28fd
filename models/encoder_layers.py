"""What the front-ends over pretrained audio encoders share (models/hf_audio.py: the wav2vec 2.0
family; models/hf_ast.py: AST; models/hf_whisper.py: Whisper's encoder): which of the encoder's
weights train (`features.encoder.finetune`), and a frozen encoder's states kept per input.

    PretrainedEncoder(wave (B, N), lengths (B,)) -> (hidden (B, H, T'), frames (B,))
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn


def normalize_clips(x: torch.Tensor, valid: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """x (B, N) zero past each clip -> zero mean, unit variance per clip over its valid samples
    (`valid` (B, N)), as the feature extractors' `do_normalize` does; still zero past each clip."""
    n = lengths.clamp_min(1).to(x.dtype)[:, None]
    mean = x.sum(1, keepdim=True) / n
    var = (((x - mean) * valid) ** 2).sum(1, keepdim=True) / n
    return (x - mean) / torch.sqrt(var + 1e-7) * valid


class PretrainedEncoder(nn.Module):
    """`self.encoder` (transformers' module) with `self.layers` transformer layers. Subclasses
    give `depth_of(name)` (0 below the layers, i + 1 for layer i) and `encode(wave, lengths)`,
    the front-end's computation; `forward` runs it, through the cache when one is enabled."""

    encoder: nn.Module
    layers: int
    out_dim: int
    _cache: dict[str, torch.Tensor] | None = None

    def depth_of(self, name: str) -> int:
        raise NotImplementedError

    def encode(self, wave: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def set_trainable(self, finetune: str | int) -> None:
        """finetune: "all", "frozen", or N (the top N layers train)."""
        top = {"all": self.layers + 1, "frozen": 0}.get(finetune, finetune)
        self.trained_from = self.layers + 1 - min(int(top), self.layers + 1)
        for name, p in self.encoder.named_parameters():
            p.requires_grad_(self.depth_of(name) >= self.trained_from)
        self.train()

    @property
    def frozen(self) -> bool:
        return self.trained_from > self.layers

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:
            self.encoder.eval()
        return self

    def lr_scales(self, decay: float) -> dict[int, float]:
        top = self.layers + 1
        return {id(p): decay ** (top - self.depth_of(n)) for n, p in self.encoder.named_parameters()}

    def enable_cache(self, limit_bytes: int = 2 << 30) -> None:
        """Keep a frozen encoder's states per distinct input (a digest of the window's valid
        samples), up to `limit_bytes`, in memory: a run reads every clip each epoch and a frozen
        encoder gives it the same states, so only the first epoch pays for the encoder. Only
        worth it when the samples repeat (no augmentation of the waveform: the caller decides)."""
        if self.frozen:
            self._cache, self._cache_bytes, self.cache_limit = {}, 0, limit_bytes

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._cache is None or torch.jit.is_scripting():
            return self.encode(wave, lengths)
        cache = self._cache
        rows = wave.detach().float().cpu().numpy()  # one copy off the device per batch
        keys = [hashlib.sha1(rows[i, : max(1, n)].tobytes()).hexdigest() for i, n in enumerate(lengths.tolist())]
        miss = [i for i, k in enumerate(keys) if k not in cache]
        got: dict[int, torch.Tensor] = {}
        if miss:
            with torch.no_grad():
                h, frames = self.encode(wave[miss], lengths[miss])  # (M, H, T'), (M,)
            for j, i in enumerate(miss):
                got[i] = state = h[j, :, : int(frames[j])].detach().clone()  # (H, frames): its own storage
                if self._cache_bytes + state.numel() * state.element_size() <= self.cache_limit:
                    cache[keys[i]] = state
                    self._cache_bytes += state.numel() * state.element_size()
        states = [got[i] if i in got else cache[k] for i, k in enumerate(keys)]
        frames = torch.tensor([s.shape[1] for s in states], dtype=torch.long, device=wave.device)
        out = wave.new_zeros((len(states), self.out_dim, int(frames.max())), dtype=torch.float32)  # zero past each
        for i, s in enumerate(states):
            out[i, :, : s.shape[1]] = s
        return out, frames
