"""Pretrained audio encoders (wav2vec 2.0, HuBERT, WavLM, data2vec-audio) as attn's audio front-end
(AST and Whisper's encoder, which read spectrograms instead of samples: models/hf_ast.py and
models/hf_whisper.py; `build_audio_frontend` picks).

    AudioEncoderFrontend(wave (B, N) float, lengths (B,)) -> (hidden (B, H, T'), frames (B,))

These read raw samples at the checkpoint's rate; their convolutional feature encoder turns 20 ms
into one step (a 400-sample receptive field, stride 320 at 16 kHz), then a transformer
(Baevski et al. 2020; Hsu et al. 2021). The modules are `transformers`' own, built from the
checkpoint's config.json (never its code); attn feeds them samples as the checkpoint's feature
extractor would (zero mean, unit variance per clip over its valid samples when the checkpoint
says `do_normalize`), and masks padding when the checkpoint was trained with an attention mask
(`feat_extract_norm: layer`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .bert import base_name
from .encoder_layers import PretrainedEncoder, normalize_clips

# model_type values of the audio encoders attn runs (config.json "model_type"): the first four
# read samples (this module's front-end), AST filter banks (models/hf_ast.py), Whisper's encoder
# a log-mel spectrogram of 30 s (models/hf_whisper.py).
AUDIO_ARCHITECTURES = ("wav2vec2", "hubert", "wavlm", "data2vec-audio", "audio-spectrogram-transformer", "whisper")


def audio_encoder_shape(config: dict[str, Any]) -> dict[str, Any]:
    """Facts of an audio encoder config; ValueError naming what is missing or unsupported."""
    kind = config.get("model_type")
    if kind not in AUDIO_ARCHITECTURES:
        raise ValueError(f"model_type {kind!r} is not a supported audio encoder "
                         f"(supported: {', '.join(AUDIO_ARCHITECTURES)})")  # fmt: skip
    width, depth = ("d_model", "encoder_layers") if kind == "whisper" else ("hidden_size", "num_hidden_layers")
    try:
        return {"kind": kind, "hidden": int(config[width]), "layers": int(config[depth])}
    except KeyError as e:
        raise ValueError(f"config.json lacks {e.args[0]!r}") from None


class AudioEncoderFrontend(PretrainedEncoder):
    """finetune: "all", "frozen", or N (the top N transformer layers train; the feature encoder,
    projection and positional convolution stay as pretrained)."""

    def __init__(self, config: dict[str, Any], finetune: str | int = "all", normalize: bool = True) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModel

        shape = audio_encoder_shape(config)
        cfg = AutoConfig.for_model(**{k: v for k, v in config.items() if k != "model_type"}, model_type=shape["kind"])
        self.encoder = AutoModel.from_config(cfg)
        self.out_dim = shape["hidden"]
        self.layers = shape["layers"]
        self.normalize = normalize
        self.use_mask = config.get("feat_extract_norm", "group") == "layer"
        self.set_trainable(finetune)

    def depth_of(self, name: str) -> int:
        """0 below the transformer layers, i + 1 for layer i."""
        if name.startswith("encoder.layers."):
            return int(name.split(".")[2]) + 1
        return 0

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return self.encoder._get_feat_extract_output_lengths(lengths).long().clamp_min(1)

    def encode(self, wave: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        valid = torch.arange(wave.shape[1], device=wave.device)[None, :] < lengths[:, None]  # (B, N)
        x = wave.float() * valid
        if self.normalize:  # as Wav2Vec2FeatureExtractor: per clip, over its valid samples
            x = normalize_clips(x, valid, lengths)
        mask = valid.long() if self.use_mask else None
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            h = self.encoder(input_values=x, attention_mask=mask).last_hidden_state  # (B, T', H)
        return h.transpose(1, 2), self.frame_lengths(lengths).clamp_max(h.shape[1])


def build_audio_frontend(config: dict[str, Any], finetune: str | int = "all") -> nn.Module:
    """The front-end for a checkpoint's config.json (with its feature extractor's facts under
    "feature_extractor", as `pipelines.data.encoders` reads them)."""
    fe = config.get("feature_extractor", {})
    bare = {k: v for k, v in config.items() if k != "feature_extractor"}
    if config.get("model_type") == "audio-spectrogram-transformer":
        from .hf_ast import ASTFrontend

        return ASTFrontend(bare, finetune, fe)
    if config.get("model_type") == "whisper":
        from .hf_whisper import WhisperFrontend

        return WhisperFrontend(bare, finetune, fe)
    return AudioEncoderFrontend(bare, finetune, fe.get("do_normalize", True))


def audio_checkpoint_names(state: dict[str, torch.Tensor], kind: str, target: set[str]) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors under the names of the front-end's `encoder` module (`target`:
    its state_dict's keys), for every audio encoder attn runs."""
    if kind == "whisper":
        from .hf_whisper import whisper_names

        return whisper_names(state)
    named = hf_audio_names(state, kind)
    if kind == "audio-spectrogram-transformer":
        from .hf_ast import ast_names

        named = ast_names(named, target)
    return named


def hf_audio_names(state: dict[str, torch.Tensor], kind: str) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors under the base model's names: the task model's prefix dropped
    (`wav2vec2.`, `hubert.`, `audio_spectrogram_transformer.`, ...), heads left out, and the
    positional convolution's weight norm under torch's parametrization names (older checkpoints
    save weight_g / weight_v)."""
    out = {}
    for name, t in state.items():
        name = base_name(name, ("wav2vec2.", "hubert.", "wavlm.", "data2vec_audio.", "audio_spectrogram_transformer."))
        name = name.replace("conv.weight_g", "conv.parametrizations.weight.original0")
        name = name.replace("conv.weight_v", "conv.parametrizations.weight.original1")
        # the base models' parts (AST's: embeddings., encoder., layernorm.)
        if name.startswith(
            ("feature_extractor.", "feature_projection.", "encoder.", "masked_spec_embed", "embeddings.", "layernorm.")
        ):
            out[name] = t
    return out
