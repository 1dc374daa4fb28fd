"""The Audio Spectrogram Transformer (AST; Gong et al. 2021, "AST: Audio Spectrogram Transformer")
as attn's audio front-end.

    ASTFrontend(wave (B, N) float, lengths (B,)) -> (pooled (B, H, 1), steps (B,) = 1)

AST reads a spectrogram, not samples: Kaldi-compatible log-mel filter banks (25 ms Hanning
windows every 10 ms, `num_mel_bins` bins), as the checkpoint's `ASTFeatureExtractor` computes them
with `torchaudio.compliance.kaldi.fbank` one clip at a time and features/kaldi.py for a whole
batch; zero-padded or cut to the `max_length` frames its position embeddings cover (1024 frames =
10.24 s for the AudioSet checkpoints), then scaled as (fbank - mean) / (2 std) with the
checkpoint's AudioSet statistics. 16x16 patches (overlapping by `frequency_stride` /
`time_stride`) go through a ViT-style encoder with a class and a distillation token; AST's own
classifier reads the mean of those two tokens after the final layer norm (`pooler_output`), and
so does attn's head: the front-end gives that one vector as a single step.

The module is `transformers`' `ASTModel`, built from the checkpoint's config.json (never its
code); attn computes the filter banks itself, on the model's device, from each clip's valid samples.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from attn.features.kaldi import FRAME_SECONDS, SHIFT_SECONDS, kaldi_fbank, mel_matrix

from .encoder_layers import PretrainedEncoder

AST = "audio-spectrogram-transformer"  # config.json "model_type"
_LAYER = re.compile(r"(?:encoder\.layer|layers)\.(\d+)\.")  # a layer's weights, as either naming has them
# Checkpoints name AST's layers as transformers 4 did (`encoder.layer.N.attention.attention.query`);
# transformers 5 builds them as `layers.N.attention.q_proj`: (checkpoint part, module part).
_RENAMES = (("attention.attention.query.", "attention.q_proj."), ("attention.attention.key.", "attention.k_proj."),
            ("attention.attention.value.", "attention.v_proj."), ("attention.output.dense.", "attention.o_proj."),
            ("intermediate.dense.", "mlp.fc1."), ("output.dense.", "mlp.fc2."))  # fmt: skip
# ASTFeatureExtractor's defaults: the AudioSet statistics of the published checkpoints
AUDIOSET_MEAN, AUDIOSET_STD = -4.2677393, 4.5689974


class ASTFrontend(PretrainedEncoder):
    """finetune: "all", "frozen", or N (the top N transformer layers and the final layer norm
    train; the patch embedding, tokens and positions stay as pretrained). `extractor`: the
    checkpoint's preprocessor_config.json facts (sampling_rate, do_normalize, mean, std)."""

    def __init__(self, config: dict[str, Any], finetune: str | int = "all",
                 extractor: dict[str, Any] | None = None) -> None:  # fmt: skip
        super().__init__()
        from transformers import AutoConfig, AutoModel

        cfg = AutoConfig.for_model(**{k: v for k, v in config.items() if k != "model_type"}, model_type=AST)
        self.encoder = AutoModel.from_config(cfg)
        self.out_dim, self.layers = int(cfg.hidden_size), int(cfg.num_hidden_layers)
        self.mel_bins, self.max_frames = int(cfg.num_mel_bins), int(cfg.max_length)
        fe = extractor or {}
        self.rate = int(fe.get("sampling_rate", 16000))
        self.normalize = bool(fe.get("do_normalize", True))
        self.mean, self.std = float(fe.get("mean", AUDIOSET_MEAN)), float(fe.get("std", AUDIOSET_STD))
        self.register_buffer("mel", mel_matrix(self.rate, self.mel_bins), persistent=False)  # (n_fft // 2 + 1, mel)
        self.set_trainable(finetune)

    @property
    def max_seconds(self) -> float:
        """The longest input the position embeddings cover; longer windows would be cut."""
        return (self.max_frames - 1) * SHIFT_SECONDS + FRAME_SECONDS

    def depth_of(self, name: str) -> int:
        """0 for the embeddings, i + 1 for layer i, the top for the final layer norm."""
        m = _LAYER.match(name)
        if m:
            return int(m.group(1)) + 1
        return self.layers if name.startswith("layernorm.") else 0

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(lengths)

    def fbank(self, wave: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, N), (B,) -> the encoder's input (B, max_length, num_mel_bins): each clip's valid
        samples as ASTFeatureExtractor turns them into filter banks, padded or cut, scaled."""
        fb, _ = kaldi_fbank(wave, lengths, self.rate, self.mel_bins, self.mel)  # (B, T, mel), zero past each clip
        b = fb.shape[0]
        pad = torch.zeros(b, self.max_frames, self.mel_bins, dtype=fb.dtype, device=fb.device)
        x = torch.cat([fb, pad], dim=1)[:, : self.max_frames]  # padded with zeros or cut, as the extractor does
        return (x - self.mean) / (2 * self.std) if self.normalize else x

    def encode(self, wave: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(wave.device.type, enabled=False):  # filter banks in float32, also under AMP
            x = self.fbank(wave, lengths)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            pooled = self.encoder(input_values=x).pooler_output  # (B, H): (class + distillation token) / 2
        return pooled[:, :, None], self.frame_lengths(lengths)


def ast_names(state: dict[str, torch.Tensor], target: set[str]) -> dict[str, torch.Tensor]:
    """A checkpoint's AST tensors (task prefix already dropped) under the names of the module
    this `transformers` builds (`target`): as they are, or renamed from the older layout."""
    out = {}
    for name, t in state.items():
        if name not in target and name.startswith("encoder.layer."):
            rest = name[len("encoder.layer.") :]
            i, _, part = rest.partition(".")
            for old, new in _RENAMES:
                if part.startswith(old):
                    part = new + part[len(old) :]
                    break
            name = f"layers.{i}.{part}"
        out[name] = t
    return out
