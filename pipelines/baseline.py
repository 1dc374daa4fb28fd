"""A fast classical baseline fitted beside every model, on the same splits.

Text: TF-IDF over word 1-2-grams (sublinear tf) + logistic regression. Audio: mean and standard
deviation over frames of MFCCs (the recipe's own STFT sizes), standardised, + logistic
regression. The regularisation C is chosen on the validation split (the model's own rule: never
the test split). scikit-learn does the fitting; what the artifact keeps is plain arrays
(vocabulary, idf, coefficients, scaler statistics), so scoring later needs no pickle.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .metrics import classification_report

log = logging.getLogger("attn")

C_GRID = (0.1, 1.0, 10.0, 100.0)
MAX_FEATURES = 200_000  # text: the most frequent 1-2-grams kept (bounds the artifact's size)
N_MFCC = 40


@dataclass
class Baseline:
    """A fitted baseline: its kind, C, parameters as arrays, and its scores per split."""

    kind: str  # "tfidf+logreg" | "mfcc+logreg"
    C: float
    arrays: dict[str, np.ndarray]  # coef (K, D), intercept (K,), + idf or mean/scale
    vocabulary: list[str] = field(default_factory=list)  # text: feature index -> n-gram
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)  # split -> report
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """What metrics.json, the artifact header and the train summary carry: kind, C, seconds,
        and accuracy / macro_f1 on the test split (`val_...` on validation)."""
        out: dict[str, Any] = {"kind": self.kind, "C": self.C, "seconds": round(self.seconds, 2)}
        for split, rep in self.scores.items():
            prefix = "" if split == "test" else f"{split}_"
            out[f"{prefix}accuracy"] = round(rep["accuracy"], 6)
            out[f"{prefix}macro_f1"] = round(rep["macro_f1"], 6)
        return out

    def state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(header part, tensors) for the artifact: plain numbers and arrays, no pickle."""
        import torch

        tensors = {f"baseline.{k}": torch.from_numpy(np.ascontiguousarray(v)) for k, v in self.arrays.items()}
        if self.vocabulary:
            blob = "\n".join(self.vocabulary).encode("utf-8")
            tensors["baseline.vocabulary"] = torch.frombuffer(bytearray(blob), dtype=torch.uint8)
        return self.summary(), tensors

    @classmethod
    def from_state(cls, header: dict[str, Any], tensors: dict[str, Any]) -> Baseline:
        arrays = {k.split(".", 1)[1]: v.numpy() for k, v in tensors.items()
                  if k.startswith("baseline.") and k != "baseline.vocabulary"}  # fmt: skip
        vocab = tensors.get("baseline.vocabulary")
        words = vocab.numpy().tobytes().decode("utf-8").split("\n") if vocab is not None else []
        return cls(header["kind"], float(header["C"]), arrays, words)

    def probs(self, inputs: list) -> np.ndarray:
        """Class probabilities (N, K): texts for a text baseline, `clip_features` rows for audio."""
        return text_probs(self, inputs) if self.kind == "tfidf+logreg" else audio_probs(self, np.asarray(inputs))


def fit_baseline(recipe, prepared, data) -> Baseline:
    """The recipe's baseline on the same splits the model trains, validates and tests on.

    prepared: PreparedData (text: the raw texts); data: Datasets (labels; audio: decoded clips).
    """
    labels = list(prepared.labels)
    ys = {s: data.split(s).labels for s in ("train", "val", "test")}
    if recipe.modality == "text":
        texts = {s: [it.source for it in prepared.splits[s]] for s in ("train", "val", "test")}
        b = fit_text(texts, ys, labels)
    else:
        t0 = time.perf_counter()
        mfcc = mfcc_module(recipe.features)
        feats = {s: clip_features(data.split(s).clips, mfcc) for s in ("train", "val", "test")}
        b = fit_audio(feats, ys, labels)
        b.seconds = time.perf_counter() - t0  # features included
    parts = [f"{s} {rep['accuracy']:.4f}" for s, rep in b.scores.items()]
    log.info("baseline %s (C=%g): %s accuracy (%.1fs)", b.kind, b.C, ", ".join(parts) or "no val/test", b.seconds)
    return b


def mfcc_module(features):
    """N_MFCC MFCCs over a log-mel of the recipe's STFT sizes (at least 64 bands)."""
    from attn.features.transforms import MFCC

    f = features
    n_mels = max(f.n_mels, 64)
    return MFCC(
        N_MFCC,
        {
            "sample_rate": f.sample_rate,
            "n_fft": f.n_fft,
            "win_length": f.win_length,
            "hop_length": f.hop_length,
            "n_mels": n_mels,
            "f_min": f.f_min,
            "f_max": f.f_max,
        },
    )


def _logreg(C: float):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, max_iter=2000)


def _fit_choose_c(x_train, y_train, x_val, y_val):
    """Fit at each C of the grid, keep the best on validation (ties: the smaller C); without a
    validation split, C = 10. One BLAS/OpenMP thread: on a busy 2-core machine the default
    thread pools made each fit ~20x slower (10 s instead of 0.5 s for TREC, measured here)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        if x_val is None or len(y_val) == 0:
            return _logreg(10.0).fit(x_train, y_train), 10.0
        best = None
        for c in C_GRID:
            clf = _logreg(c).fit(x_train, y_train)
            acc = float((clf.predict(x_val) == y_val).mean())
            if best is None or acc > best[0]:
                best = (acc, c, clf)
    return best[2], best[1]


def _scores(clf, xs: dict[str, Any], ys: dict[str, np.ndarray], labels: list[str]) -> dict[str, dict]:
    return {
        split: classification_report(ys[split], clf.predict(x), labels)
        for split, x in xs.items()
        if x is not None and len(ys.get(split, ()))
    }


# -- text ---------------------------------------------------------------------------------------


def _tfidf(**kw):
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, max_features=MAX_FEATURES, **kw)


def fit_text(texts: dict[str, list[str]], ys: dict[str, np.ndarray], labels: list[str]) -> Baseline:
    """texts/ys: split -> texts / label indices (train required; val, test optional)."""
    t0 = time.perf_counter()
    vec = _tfidf()
    x_train = vec.fit_transform(texts["train"])
    xs = {s: (vec.transform(texts[s]) if texts.get(s) else None) for s in ("train", "val", "test")}
    clf, c = _fit_choose_c(x_train, ys["train"], xs["val"], ys.get("val"))
    vocab = [""] * len(vec.vocabulary_)
    for term, i in vec.vocabulary_.items():
        vocab[i] = term
    b = Baseline("tfidf+logreg", c, _lr_arrays(clf, len(labels)) | {"idf": vec.idf_.astype(np.float32)}, vocab)
    b.scores = _scores(clf, {s: xs[s] for s in ("val", "test")}, ys, labels)
    b.seconds = time.perf_counter() - t0
    return b


def text_probs(b: Baseline, texts: list[str]) -> np.ndarray:
    """Class probabilities (N, K) of a stored text baseline."""
    vec = _tfidf()
    vec.vocabulary_ = {t: i for i, t in enumerate(b.vocabulary)}
    vec.idf_ = b.arrays["idf"].astype(np.float64)
    return _lr_probs(b, vec.transform(texts))


# -- audio --------------------------------------------------------------------------------------


def clip_features(clips: list[np.ndarray], mfcc, batch: int = 32) -> np.ndarray:
    """Mean and standard deviation over each clip's valid frames of its MFCCs: (N, 2 * n_mfcc).

    `mfcc` maps (B, samples) float to (B, n_mfcc, frames) (`mfcc_module`). Clips go in batches of
    similar length, zero-padded; frames past a clip's end are left out of its statistics.
    """
    import torch

    from attn.features.functional import stft_frames

    n = mfcc.dct.shape[1]
    out = np.zeros((len(clips), 2 * n), dtype=np.float32)
    lengths = np.array([len(c) for c in clips], dtype=np.int64)
    order = np.argsort(lengths, kind="stable")
    spec = mfcc.logmel.spec
    with torch.inference_mode():
        for b in range(0, len(order), batch):
            idx = order[b : b + batch]
            wave = torch.zeros(len(idx), int(lengths[idx].max()))
            for r, i in enumerate(idx):
                wave[r, : lengths[i]] = torch.from_numpy(np.asarray(clips[i], dtype=np.float32))
            m = mfcc(wave)  # (B, n_mfcc, T)
            valid = stft_frames(torch.from_numpy(lengths[idx]), spec.n_fft, spec.hop_length, spec.center)
            valid = valid.clamp(1, m.shape[-1])
            mask = (torch.arange(m.shape[-1])[None, :] < valid[:, None]).to(m.dtype)[:, None, :]  # (B, 1, T)
            mean = (m * mask).sum(-1) / valid[:, None]
            var = (((m - mean[..., None]) * mask) ** 2).sum(-1) / valid[:, None]
            out[idx, :n] = mean.numpy()
            out[idx, n:] = var.sqrt().numpy()
    return out


def fit_audio(feats: dict[str, np.ndarray], ys: dict[str, np.ndarray], labels: list[str]) -> Baseline:
    """feats: split -> clip_features(...) rows."""
    t0 = time.perf_counter()
    mean = feats["train"].mean(0)
    scale = feats["train"].std(0)
    scale[scale == 0] = 1.0
    xs = {s: ((feats[s] - mean) / scale if s in feats and len(feats[s]) else None) for s in ("train", "val", "test")}
    clf, c = _fit_choose_c(xs["train"], ys["train"], xs["val"], ys.get("val"))
    b = Baseline("mfcc+logreg", c, _lr_arrays(clf, len(labels)) | {"mean": mean, "scale": scale})
    b.scores = _scores(clf, {s: xs[s] for s in ("val", "test")}, ys, labels)
    b.seconds = time.perf_counter() - t0
    return b


def audio_probs(b: Baseline, feats: np.ndarray) -> np.ndarray:
    return _lr_probs(b, (feats - b.arrays["mean"]) / b.arrays["scale"])


# -- stored parameters --------------------------------------------------------------------------


def _lr_arrays(clf, k: int) -> dict[str, np.ndarray]:
    """Coefficients as (K, D) over all K labels: sklearn keeps one row for two classes and only
    the classes it saw; a class absent from training gets -inf bias (never predicted)."""
    coef = np.asarray(clf.coef_, dtype=np.float32)
    intercept = np.asarray(clf.intercept_, dtype=np.float32)
    if coef.shape[0] == 1:  # binary: p(class 1) = sigmoid(w.x + b) = softmax([0, w.x + b])
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.concatenate([[0.0], intercept]).astype(np.float32)
    full_w = np.zeros((k, coef.shape[1]), dtype=np.float32)
    full_b = np.full(k, -np.inf, dtype=np.float32)
    for row, cls in enumerate(np.asarray(clf.classes_)):
        full_w[int(cls)] = coef[row]
        full_b[int(cls)] = intercept[row]
    return {"coef": full_w, "intercept": full_b}


def _lr_probs(b: Baseline, x) -> np.ndarray:
    z = np.asarray(x @ b.arrays["coef"].T) + b.arrays["intercept"]  # (N, K)
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)
