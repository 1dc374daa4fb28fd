"""Linear classifiers over classical features, as torch modules, and the blend that adds one to a
trained network (the run's baseline, `train.baseline` / `train.blend`).

    MfccStats(wave (B, N), lengths (B,)) -> (B, 2 * n_mfcc)   MFCC mean and std over valid frames
    TfidfFeatures(ids (B, T) or (B, T, 1 + K), lengths (B,)) -> (B, D)
                                                              TF-IDF of token 1- and 2-grams
    LinearBaseline(x, lengths) -> (B, K) log-probabilities    features -> standardise -> linear
    Blend(x, lengths) -> (B, K) log((1 - w) p_network + w p_baseline)

The parameters come from a scikit-learn fit (pipelines/train/baseline.py) and are plain buffers, so a
model file keeps them as tensors, and prediction, evaluation and export run them on the model's
own inputs: the audio window, or the token ids the network sees.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from attn.features.functional import remove_dc, stft_frames
from attn.features.transforms import MFCC


class MfccStats(nn.Module):
    """Mean and standard deviation of `n_mfcc` MFCCs over each window's valid frames (of the
    window less its mean with `remove_dc`, as the network's front-end sees it)."""

    def __init__(self, n_mfcc: int, melkwargs: dict, remove_dc: bool = False) -> None:
        super().__init__()
        # what rebuilds it from a model file
        self.n_mfcc, self.melkwargs, self.remove_dc = n_mfcc, dict(melkwargs), remove_dc
        self.mfcc = MFCC(n_mfcc, melkwargs)
        self.out_dim = 2 * n_mfcc

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        with torch.autocast(wave.device.type, enabled=False):
            wave = wave.float()
            m = self.mfcc(remove_dc(wave, lengths) if self.remove_dc else wave)  # (B, n_mfcc, T)
        spec = self.mfcc.logmel.spec
        valid = stft_frames(lengths, spec.n_fft, spec.hop_length, spec.center).clamp(1, m.shape[-1])  # (B,)
        mask = (torch.arange(m.shape[-1], device=m.device)[None, :] < valid[:, None]).to(m.dtype)[:, None, :]
        n = valid.to(m.dtype)[:, None]
        mean = (m * mask).sum(-1) / n  # (B, n_mfcc)
        std = ((((m - mean[..., None]) * mask) ** 2).sum(-1) / n).sqrt()
        return torch.cat([mean, std], dim=1)


class TfidfFeatures(nn.Module):
    """Sublinear TF-IDF (1 + log tf) x idf, L2-normalised, over a fitted vocabulary of token ids
    (unigrams) and adjacent id pairs (bigrams): scikit-learn's TfidfVectorizer(sublinear_tf=True)
    on the token sequence the network sees.

    Buffers: unigram (V,) column of each token id or -1; bigram_keys (M,) sorted a * V + b of the
    pairs kept, bigram_cols (M,) their columns; idf (D,).
    """

    def __init__(self, unigram: torch.Tensor, bigram_keys: torch.Tensor, bigram_cols: torch.Tensor,
                 idf: torch.Tensor) -> None:  # fmt: skip
        super().__init__()
        self.register_buffer("unigram", unigram.long())
        self.register_buffer("bigram_keys", bigram_keys.long())
        self.register_buffer("bigram_cols", bigram_cols.long())
        self.register_buffer("idf", idf.float())
        self.out_dim = idf.shape[0]

    def columns(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T') feature column of every unigram and bigram position, -1 where none."""
        w = ids[..., 0] if ids.dim() == 3 else ids  # (B, T) token ids (hashed n-grams are not features)
        b, t = w.shape
        vocab = self.unigram.shape[0]
        valid = torch.arange(t, device=w.device)[None, :] < lengths[:, None]
        inside = (w >= 0) & (w < vocab)
        uni = torch.where(valid & inside, self.unigram[w.clamp(0, vocab - 1)], -1)  # (B, T)
        if not len(self.bigram_keys) or (not torch.compiler.is_compiling() and t < 2):
            return uni
        key = w[:, :-1] * vocab + w[:, 1:]  # (B, T-1)
        pos = sorted_index(self.bigram_keys, key).clamp(max=len(self.bigram_keys) - 1)
        hit = (self.bigram_keys[pos] == key) & valid[:, 1:] & inside[:, :-1] & inside[:, 1:]
        big = torch.where(hit, self.bigram_cols[pos], -1)
        return torch.cat([uni, big], dim=1)

    def sparse(self, ids: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The same features as `forward`, sparse: (columns (B, T'), values (B, T')), each column
        of a row once (the rest -1 with value 0), so `forward(ids)[b, c]` is the value at c.
        O(B T' log T') where `forward` is O(B D): a text has tens of features of D up to 100,000."""
        cols, _ = self.columns(ids, lengths).sort(dim=1)  # (B, T'), the -1s first
        first = torch.ones_like(cols, dtype=torch.bool)
        first[:, 1:] = cols[:, 1:] != cols[:, :-1]  # where a run of one column starts
        run = first.long().cumsum(1) - 1  # (B, T') each position's run
        counts = torch.zeros(cols.shape, device=cols.device).scatter_add_(
            1, run, torch.ones_like(cols, dtype=torch.float)
        )
        keep = first & (cols >= 0)
        tf = torch.where(keep, (1 + torch.log(counts.gather(1, run))) * self.idf[cols.clamp_min(0)], 0.0)
        return torch.where(keep, cols, -1), tf / tf.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        cols = self.columns(ids, lengths)  # (B, T')
        b = cols.shape[0]
        counts = torch.zeros(b, self.out_dim + 1, device=cols.device)  # last column: "no feature"
        counts.scatter_add_(1, torch.where(cols >= 0, cols, self.out_dim), torch.ones_like(cols, dtype=torch.float))
        counts = counts[:, :-1]
        tf = torch.where(counts > 0, 1 + torch.log(counts.clamp_min(1)), counts) * self.idf  # (B, D)
        return tf / tf.norm(dim=1, keepdim=True).clamp_min(1e-12)


def sorted_index(keys: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """`torch.searchsorted(keys, query)` (left) for sorted 1-D `keys`: the first index i with
    keys[i] >= query, elementwise. While exporting or compiling, a branchless binary search of
    ceil(log2(M + 1)) gathers, the same numbers (ONNX has no searchsorted op; `attn export`)."""
    if not torch.compiler.is_compiling():
        return torch.searchsorted(keys, query)
    n = keys.shape[0]
    lo = torch.zeros_like(query)  # count of keys known to be < query
    step = 1 << (n.bit_length() - 1) if n else 0
    while step:
        cand = lo + step  # is keys[cand - 1] < query?
        ok = (cand <= n) & (keys[(cand - 1).clamp(0, n - 1)] < query)
        lo = torch.where(ok, cand, lo)
        step //= 2
    return lo


class LinearBaseline(nn.Module):
    """features -> (x - mean) / scale -> x @ coef.T + intercept -> log-probabilities (B, K).

    A class the training split lacked has intercept -inf (probability 0), as scikit-learn never
    predicts it.
    """

    def __init__(self, features: nn.Module, coef: torch.Tensor, intercept: torch.Tensor,
                 mean: torch.Tensor | None = None, scale: torch.Tensor | None = None,
                 multi_label: bool = False) -> None:  # fmt: skip
        super().__init__()
        self.features = features
        self.multi_label = multi_label  # one-vs-rest: independent per-class logits, no softmax
        self.register_buffer("coef", coef.float())  # (K, D)
        self.register_buffer("intercept", intercept.float())  # (K,)
        d = coef.shape[1]
        self.register_buffer("mean", (torch.zeros(d) if mean is None else mean).float())
        self.register_buffer("scale", (torch.ones(d) if scale is None else scale).float())

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        exporting = torch.compiler.is_compiling() or torch.jit.is_tracing()
        if isinstance(self.features, TfidfFeatures) and not exporting and not self.mean.any():
            # TF-IDF (never centred): gather the few columns a text has instead of a dense (B, D) row
            # and a (B, D) x (D, K) product; the same numbers. Exports and compiles keep the dense graph.
            cols, vals = self.features.sparse(x, lengths)  # (B, T') each
            c = cols.clamp_min(0)
            w = self.coef.T[c] / self.scale[c][..., None]  # (B, T', K): the columns' weights only
            z = torch.einsum("bt,btk->bk", vals, w) + self.intercept
        else:
            f = (self.features(x, lengths) - self.mean) / self.scale  # (B, D)
            z = f @ self.coef.T + self.intercept
        return z if self.multi_label else z.log_softmax(-1)


class Blend(nn.Module):
    """A trained network and a linear baseline as one model: log((1 - w) p_net + w p_base).

    The output is a log-probability, so the softmax every caller applies gives the blended
    probabilities. With w = 0 the baseline is not run (it is kept for `attn evaluate`), with w = 1
    the network is not.
    """

    def __init__(self, network: nn.Module, baseline: LinearBaseline, weight: float, info: dict | None = None) -> None:
        super().__init__()
        self.network, self.baseline, self.weight = network, baseline, float(weight)
        self.info = dict(info or {})  # the baseline's kind and scores, kept in the model file

    # Facts about the network (`attn info`, `attn features`, explain) pass through.
    @property
    def frontend(self) -> nn.Module:
        return self.network.frontend

    @property
    def backbone(self) -> nn.Module:
        return self.network.backbone

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.weight >= 1:  # the baseline alone: the network's output would be thrown away (40% of predict)
            return self.baseline(x, lengths)
        if self.baseline.multi_label:
            return self._per_class(x, lengths)
        net = self.network(x, lengths).float().log_softmax(-1)  # (B, K)
        if self.weight <= 0:
            return net
        base = self.baseline(x, lengths)
        return torch.logaddexp(net + math.log1p(-self.weight), base + math.log(self.weight))

    def _per_class(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Multi-label: each class's probabilities blended, (1 - w) sigmoid(net) + w sigmoid(base),
        returned as logits (B, K), so the sigmoid every caller applies gives the blend."""
        net = self.network(x, lengths).float()
        if self.weight <= 0:
            return net
        base = self.baseline(x, lengths)
        p = (1 - self.weight) * torch.sigmoid(net) + self.weight * torch.sigmoid(base)
        p = p.clamp(1e-7, 1 - 1e-7)
        return torch.log(p) - torch.log1p(-p)
