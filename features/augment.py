"""Training-time augmentation, on the model's device, as pure functions on padded batches plus
the `Augment` module that applies the recipe's `train.augment` around the front-end.

Waveform steps (audio, before the front-end) take wave (B, N) with lengths (B,) valid samples
and keep the padding at zero: speed, time shift, mixup, gain, noise, background. Feature steps
take (B, F, T): SpecAugment masks. Text is mixed after the embedding (see `Classifier`).
Randomness comes from the global torch RNG (saved in checkpoints, so a resumed run augments
exactly as the uninterrupted one would have). `Classifier` applies them in training mode only.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import AugmentConfig


def random_gain(wave: torch.Tensor, gain_db: float) -> torch.Tensor:
    """wave (B, N) times a gain drawn per row, uniform in [-gain_db, +gain_db] dB."""
    db = (torch.rand(wave.shape[0], 1, device=wave.device) * 2 - 1) * gain_db  # (B, 1)
    return wave * torch.pow(10.0, db / 20)


def _valid(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    return torch.arange(steps, device=lengths.device)[None, :] < lengths[:, None]


def time_shift(wave: torch.Tensor, lengths: torch.Tensor, max_share: float) -> torch.Tensor:
    """Roll each row's valid samples circularly by up to `max_share` of its valid length, either
    way (uniform). A circular roll keeps every sample (an event near the end moves to the start),
    so the content and length are unchanged: only where things happen moves."""
    b, n = wave.shape
    if max_share <= 0 or n == 0:
        return wave
    span = (lengths.to(torch.float32) * max_share).floor()  # (B,) samples
    shift = ((torch.rand(b, device=wave.device) * 2 - 1) * (span + 1)).floor().clamp(-span, span).long()
    pos = torch.arange(n, device=wave.device)[None, :]
    src = torch.remainder(pos - shift[:, None], lengths.clamp_min(1)[:, None])  # (B, N)
    return torch.gather(wave, 1, src) * _valid(lengths, n)


def add_noise(
    wave: torch.Tensor, lengths: torch.Tensor, snr_db: tuple[float, float], prob: float = 1.0
) -> torch.Tensor:
    """Add white Gaussian noise at a random SNR in [snr_db[0], snr_db[1]] dB (uniform), relative
    to each row's own power over its valid samples; a row is noised with probability `prob`."""
    b, n = wave.shape
    valid = _valid(lengths, n)
    power = (wave.square() * valid).sum(1) / lengths.clamp_min(1)  # (B,)
    lo, hi = snr_db
    snr = lo + (hi - lo) * torch.rand(b, device=wave.device)
    scale = torch.sqrt(power / torch.pow(10.0, snr / 10))  # noise std per row
    on = (torch.rand(b, device=wave.device) < prob).to(wave.dtype)
    noise = torch.randn_like(wave) * (scale * on)[:, None]
    return wave + noise * valid


def mix_background(
    wave: torch.Tensor, lengths: torch.Tensor, bank: torch.Tensor, snr_db: tuple[float, float], prob: float
) -> torch.Tensor:
    """Mix a random crop of a background recording into each row at a random SNR.

    bank (M, L): background clips at the model's rate, cut or tiled to L samples. Each row takes
    one random clip and a random circular offset, so crops start anywhere.
    """
    b, n = wave.shape
    m, length = bank.shape
    pick = torch.randint(0, m, (b,), device=wave.device)
    start = torch.randint(0, length, (b, 1), device=wave.device)
    idx = torch.remainder(start + torch.arange(n, device=wave.device)[None, :], length)  # (B, N)
    bg = bank[pick[:, None], idx]  # (B, N)
    valid = _valid(lengths, n)
    p_sig = (wave.square() * valid).sum(1) / lengths.clamp_min(1)
    p_bg = (bg.square() * valid).sum(1) / lengths.clamp_min(1)
    lo, hi = snr_db
    snr = lo + (hi - lo) * torch.rand(b, device=wave.device)
    gain = torch.sqrt(p_sig / (p_bg.clamp_min(1e-12) * torch.pow(10.0, snr / 10)))
    on = (torch.rand(b, device=wave.device) < prob).to(wave.dtype)
    return wave + bg * (gain * on)[:, None] * valid


def speed_perturb(
    wave: torch.Tensor, lengths: torch.Tensor, factors: tuple[float, float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Play each row faster or slower by a factor in [factors[0], factors[1]] (pitch and tempo
    together, as a tape would), by linear interpolation. Returns the new batch and lengths; the
    batch keeps its width N (a slowed row that outgrows it is cut at N)."""
    b, n = wave.shape
    lo, hi = factors
    speed = lo + (hi - lo) * torch.rand(b, device=wave.device)  # (B,)
    new_len = torch.clamp((lengths.to(speed.dtype) / speed).floor().long(), 1, n)  # (B,)
    pos = torch.arange(n, device=wave.device, dtype=speed.dtype)[None, :] * speed[:, None]  # source position
    last = (lengths - 1).clamp_min(0)[:, None].to(speed.dtype)
    pos = torch.minimum(pos, last)
    i0 = pos.floor().long()
    i1 = torch.minimum(i0 + 1, last.long())
    frac = (pos - i0.to(pos.dtype)).to(wave.dtype)
    out = torch.gather(wave, 1, i0) * (1 - frac) + torch.gather(wave, 1, i1) * frac
    return out * _valid(new_len, n), new_len


def mixup(
    x: torch.Tensor, lengths: torch.Tensor, lam: torch.Tensor, perm: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """x_i <- lam_i x_i + (1 - lam_i) x_perm(i): x (B, ...) float, lam (B,), perm (B,) int64.
    A mixed row is as long as the longer of its two rows (the shorter is zero-padded silence or
    zero embeddings there)."""
    shape = (-1,) + (1,) * (x.dim() - 1)
    lam = lam.to(x.dtype).view(shape)
    return lam * x + (1 - lam) * x[perm], torch.maximum(lengths, lengths[perm])


def spec_augment(
    feats: torch.Tensor, lengths: torch.Tensor, freq_width: int, time_width: int, count: int
) -> torch.Tensor:
    """SpecAugment-style masking inside each row's valid frames.

    feats (B, F, T), lengths (B,) valid frames: `count` frequency bands of width U[0, freq_width]
    and `count` time spans of width U[0, time_width] per row are set to the row's mean, so masks
    carry no level cue.
    """
    b, f, t = feats.shape
    dev = feats.device
    valid = torch.arange(t, device=dev)[None, :] < lengths[:, None]  # (B, T)
    mean = (feats * valid[:, None, :]).sum((1, 2)) / (valid.sum(1) * f).clamp_min(1)  # (B,)
    keep = torch.ones_like(feats, dtype=torch.bool)
    bins = torch.arange(f, device=dev)[None, :]
    steps = torch.arange(t, device=dev)[None, :]
    for _ in range(count):
        if freq_width:
            w = torch.randint(0, freq_width + 1, (b, 1), device=dev)
            s = (torch.rand(b, 1, device=dev) * (f - w + 1).clamp_min(1)).long()
            keep &= ~((bins >= s) & (bins < s + w))[:, :, None]
        if time_width:
            w = torch.minimum(torch.randint(0, time_width + 1, (b, 1), device=dev), lengths[:, None])
            s = (torch.rand(b, 1, device=dev) * (lengths[:, None] - w + 1).clamp_min(1)).long()
            keep &= ~((steps >= s) & (steps < s + w))[:, None, :]
    return torch.where(keep, feats, mean[:, None, None])


class Augment(nn.Module):
    """The recipe's `train.augment` as a module with steps around the front-end.

    Args (all off by default):
        freq_mask, time_mask: widest frequency mask (bins) and time mask (frames); masks: masks
            of each kind per example.
        gain_db: random gain in [-gain_db, +gain_db] dB.
        time_shift: circular shift of each window by up to this share of its valid length.
        speed: (lo, hi) play-speed factor range; (1, 1) = off.
        noise_prob, noise_snr: share of clips given white noise, at an SNR (dB) in noise_snr.
        background_prob, background_snr: the same for clips of `background` (set_background).
    Mixup is the trainer's (it also mixes the labels): `Classifier.forward(..., mix=...)`.
    """

    def __init__(
        self,
        freq_mask: int = 0,
        time_mask: int = 0,
        masks: int = 2,
        gain_db: float = 0.0,
        time_shift: float = 0.0,
        speed: tuple[float, float] = (1.0, 1.0),
        noise_prob: float = 0.0,
        noise_snr: tuple[float, float] = (10.0, 40.0),
        background_prob: float = 0.0,
        background_snr: tuple[float, float] = (0.0, 20.0),
    ) -> None:
        super().__init__()
        self.freq_mask, self.time_mask, self.masks, self.gain_db = freq_mask, time_mask, masks, gain_db
        self.shift = time_shift
        self.speed = tuple(speed)
        self.noise_prob, self.noise_snr = noise_prob, tuple(noise_snr)
        self.background_prob, self.background_snr = background_prob, tuple(background_snr)
        # (M, L) background clips; not part of the model's state (never saved in an artifact).
        self.register_buffer("background", torch.zeros(0, 0), persistent=False)

    @classmethod
    def from_config(cls, cfg: AugmentConfig) -> Augment:
        return cls(cfg.freq_mask, cfg.time_mask, cfg.masks, cfg.gain_db, cfg.time_shift, cfg.speed,
                   cfg.noise_prob, cfg.noise_snr, cfg.background_prob if cfg.background else 0.0,
                   cfg.background_snr)  # fmt: skip

    def set_background(self, bank: torch.Tensor) -> None:
        """bank (M, L): background recordings at the model's rate, each cut or tiled to L samples."""
        self.background = bank.to(self.background.device, torch.float32)

    def wave(self, x: torch.Tensor, lengths: torch.Tensor, mix=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Before the front-end: x (B, N) samples, lengths (B,). `mix` = (lam (B,), perm (B,))
        mixes pairs of clips after the per-clip steps. Token ids pass unchanged."""
        if not x.is_floating_point():
            return x, lengths
        if self.speed != (1.0, 1.0):
            x, lengths = speed_perturb(x, lengths, self.speed)
        if self.shift > 0:
            x = time_shift(x, lengths, self.shift)
        if mix is not None:
            x, lengths = mixup(x, lengths, *mix)
        if self.gain_db > 0:
            x = random_gain(x, self.gain_db)
        if self.noise_prob > 0:
            x = add_noise(x, lengths, self.noise_snr, self.noise_prob)
        if self.background_prob > 0 and self.background.numel():
            x = mix_background(x, lengths, self.background, self.background_snr, self.background_prob)
        return x, lengths

    def features(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """After the front-end: feats (B, F, T), lengths (B,) valid frames."""
        if (self.freq_mask or self.time_mask) and feats.dim() == 3:
            return spec_augment(feats, lengths, self.freq_mask, self.time_mask, self.masks)
        return feats
