"""Whisper's encoder (Radford et al. 2022, "Robust Speech Recognition via Large-Scale Weak
Supervision") as attn's audio front-end; the decoder is left out.

    WhisperFrontend(wave (B, N) float, lengths (B,)) -> (hidden (B, H, 1500), frames (B,))

Whisper reads 30 s at a time: each clip's valid samples zero-padded (or cut) to `chunk_length`
seconds, a log10-mel spectrogram (25 ms periodic Hann windows every 10 ms, centred with reflect
padding, `num_mel_bins` Slaney mel bands up to 8 kHz, the last frame dropped), floored at 8 below
the clip's maximum and scaled as (x + 4) / 4, exactly as the checkpoint's
`WhisperFeatureExtractor` computes it; two convolutions (the second with stride 2) make one step
per 20 ms, 1500 steps in all, then the transformer. The steps past a clip's own samples (the
padding Whisper always sees) are masked out of attn's pooling: `frames` counts the clip's.

The module is `transformers`' `WhisperEncoder`, built from the checkpoint's config.json (never
its code).
"""

from __future__ import annotations

from typing import Any

import torch

from .encoder_layers import PretrainedEncoder, normalize_clips

WHISPER = "whisper"  # config.json "model_type"
MAX_HZ = 8000.0  # the mel bands' top, whatever the rate (WhisperFeatureExtractor's)


class WhisperFrontend(PretrainedEncoder):
    """finetune: "all", "frozen", or N (the top N layers and the final layer norm train).
    `extractor`: the checkpoint's preprocessor_config.json facts (sampling_rate, n_fft,
    hop_length, chunk_length, do_normalize)."""

    def __init__(self, config: dict[str, Any], finetune: str | int = "all",
                 extractor: dict[str, Any] | None = None) -> None:  # fmt: skip
        super().__init__()
        from transformers import WhisperConfig
        from transformers.audio_utils import mel_filter_bank
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        cfg = WhisperConfig(**{k: v for k, v in config.items() if k != "model_type"})
        self.encoder = WhisperEncoder(cfg)
        self.out_dim, self.layers, self.steps = int(cfg.d_model), int(cfg.encoder_layers), int(cfg.max_source_positions)
        fe = extractor or {}
        self.rate = int(fe.get("sampling_rate", 16000))
        self.n_fft, self.hop = int(fe.get("n_fft", 400)), int(fe.get("hop_length", 160))
        self.samples = int(fe.get("chunk_length", 30)) * self.rate
        self.normalize = bool(fe.get("do_normalize", False))
        banks = mel_filter_bank(num_frequency_bins=1 + self.n_fft // 2, num_mel_filters=int(cfg.num_mel_bins),
                                min_frequency=0.0, max_frequency=MAX_HZ, sampling_rate=self.rate, norm="slaney",
                                mel_scale="slaney")  # fmt: skip
        self.register_buffer("mel", torch.from_numpy(banks).float().T.contiguous(), persistent=False)  # (mels, F)
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        self.set_trainable(finetune)

    @property
    def max_seconds(self) -> float:
        """The longest input Whisper reads (its 30 s); longer windows would be cut."""
        return self.samples / self.rate

    def depth_of(self, name: str) -> int:
        """0 for the convolutions and positions, i + 1 for layer i, the top for the final layer norm."""
        if name.startswith("layers."):
            return int(name.split(".")[1]) + 1
        return self.layers if name.startswith("layer_norm.") else 0

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """(B,): the encoder steps (one per 2 hops, 20 ms) that hold the clip's own samples."""
        per = 2 * self.hop
        return torch.div(lengths + per - 1, per, rounding_mode="floor").clamp(1, self.steps).long()

    def log_mel(self, wave: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, N), (B,) -> the encoder's input (B, mels, 2 x steps), as WhisperFeatureExtractor makes it."""
        valid = torch.arange(wave.shape[1], device=wave.device)[None, :] < lengths[:, None]  # (B, N)
        x = wave.float() * valid
        if self.normalize:  # per clip over its valid samples, as the extractor's do_normalize
            x = normalize_clips(x, valid, lengths)
        pad = torch.zeros(x.shape[0], self.samples, dtype=x.dtype, device=x.device)
        x = torch.cat([x, pad], dim=1)[:, : self.samples]  # (B, 30 s): zero-padded or cut
        spec = torch.stft(x, self.n_fft, self.hop, window=self.window, center=True, pad_mode="reflect",
                          return_complex=True)  # fmt: skip
        power = spec[..., :-1].abs() ** 2  # (B, F, frames): the last frame dropped
        logs = torch.clamp(self.mel @ power, min=1e-10).log10()  # (B, mels, frames)
        top = logs.amax(dim=(1, 2), keepdim=True)  # each clip's maximum
        return (torch.maximum(logs, top - 8.0) + 4.0) / 4.0

    def encode(self, wave: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(wave.device.type, enabled=False):  # the log-mel in float32, also under AMP
            feats = self.log_mel(wave, lengths)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            h = self.encoder(input_features=feats).last_hidden_state  # (B, steps, H)
        return h.transpose(1, 2), self.frame_lengths(lengths)


def whisper_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A Whisper checkpoint's encoder tensors under `WhisperEncoder`'s names (`model.encoder.`
    or `encoder.` dropped); the decoder and the output projection are left out."""
    out = {}
    for name, t in state.items():
        for prefix in ("model.encoder.", "encoder."):
            if name.startswith(prefix):
                out[name[len(prefix) :]] = t
                break
    return out
