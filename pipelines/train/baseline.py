"""A fast classical baseline fitted beside every model, on the same splits and the same inputs.

Text: TF-IDF (sublinear tf) of the token 1- and 2-grams the network sees (word 1-2-grams with
a word tokenizer) + logistic regression. Audio: mean and standard deviation over frames of 40
MFCCs of each window + logistic regression. The regularisation C is chosen on the validation
split, never on test. scikit-learn fits it; the fitted model becomes a torch module of plain
buffers (models/linear.py), so the model file keeps it without pickle and every path that runs
the network (predict, evaluate, export) can run it too.

The baseline is reported beside the model (train summary, metrics.json, the model file, attn
info, attn evaluate), and with `train.blend` its probabilities are blended into the model's
with a weight chosen on validation (`choose_blend`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger("attn")

C_GRID = (0.1, 1.0, 10.0, 100.0)
MAX_FEATURES = 100_000  # text: the most frequent 1-2-grams kept (bounds the model file's size)
N_MFCC = 40
MIN_MELS = 64
BLEND_GRID = np.linspace(0.0, 1.0, 21)


@dataclass
class Baseline:
    """A fitted baseline: its torch module, kind, C and its scores per split."""

    module: Any  # attn.models.linear.LinearBaseline
    kind: str  # "tfidf+logreg" | "mfcc+logreg"
    C: float
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)  # "val"/"test" -> evaluation report
    seconds: float = 0.0
    thresholds: Any = None  # multi-label: per-class thresholds (K,) chosen on validation

    def summary(self) -> dict[str, Any]:
        """What metrics.json, the model file and the train summary carry: kind, C, seconds, and
        accuracy / macro_f1 on the test split (`val_accuracy` / `val_macro_f1` on validation); a
        multi-label baseline also its `thresholds`."""
        out: dict[str, Any] = {"kind": self.kind, "C": self.C, "seconds": round(self.seconds, 2)}
        for split, rep in self.scores.items():
            prefix = "" if split == "test" else f"{split}_"
            out[f"{prefix}accuracy"] = round(rep["accuracy"], 6)
            out[f"{prefix}macro_f1"] = round(rep["macro_f1"], 6)
            if "macro_map" in rep:  # multi-label
                out[f"{prefix}macro_map"] = round(rep["macro_map"], 6)
        if self.thresholds is not None:  # multi-label: the baseline's own, chosen on val
            out["thresholds"] = [round(float(t), 6) for t in self.thresholds]
        return out


# -- fitting ------------------------------------------------------------------------------------


def fit_baseline(recipe, data, device=None, c: float | None = None, thresholds=None,
                 score_on: tuple[str, ...] = ("val", "test")) -> Baseline:  # fmt: skip
    """The recipe's baseline, fitted on `data.train` (a `Datasets`), C chosen on `data.val` (or
    the given `c`: a refit on train + val keeps the C validation chose), scored on val and test
    exactly as the model is (window probabilities averaged per clip)."""
    import torch

    from ..infer.evaluate import evaluation_report
    from ..infer.inference import window_logits

    t0 = time.perf_counter()
    labels = list(data.labels)
    device = device or torch.device("cpu")
    if recipe.modality == "text":
        # scikit-learn's sparse matrices to fit on (a dense one is ~GBs and 50x slower to fit);
        # the torch module computes the same numbers (tested) wherever the model runs.
        features, vec = _tfidf(data.train)
        kind = "tfidf+logreg"
        x = {s: _transform(vec, data.split(s)) for s in ("train", "val", "test")}
    else:
        features, kind = _mfcc_stats(recipe.features), "mfcc+logreg"
        x = {s: _window_features(features, data.split(s), device) for s in ("train", "val", "test")}
    y = {s: _window_labels(data.split(s)) for s in ("train", "val", "test")}
    # train.class_weights reaches the baseline too: on SST-2 at 90/10 an unweighted baseline named
    # the majority for every text, and the blend (weighed by log-loss) carried that into the saved
    # model whatever the network learnt (8 of 8 runs, with balanced weights and the macro-F1 monitor)
    weights = "balanced" if recipe.train.class_weights == "balanced" else None
    mean = scale = None
    if kind == "mfcc+logreg":  # standardise: MFCC means and spreads differ by orders of magnitude
        mean, scale = x["train"].mean(0), x["train"].std(0)
        scale[scale == 0] = 1.0
        x = {s: (v - mean) / scale for s, v in x.items()}
    if data.train.multi_label:  # one-vs-rest: a binary logistic regression per class
        from .multilabel_baseline import fit_one_vs_rest

        clf, c = fit_one_vs_rest(x, y, data.val, c, C_GRID, _one_thread)
    elif c is None:
        clf, c = _fit_choose_c(x["train"], y["train"], x["val"], y["val"], data.val, len(labels), weights)
    else:
        from sklearn.linear_model import LogisticRegression

        with _one_thread():
            clf = LogisticRegression(C=c, max_iter=2000, class_weight=weights).fit(x["train"], y["train"])
    if data.train.multi_label:
        from .multilabel_baseline import ovr_module

        module = ovr_module(features, clf, mean, scale)
    else:
        module = _module(features, clf, len(labels), mean, scale)
    b = Baseline(module.to(device).eval(), kind, c)
    fixed = thresholds is not None  # a refit keeps the thresholds validation chose (val is training data now)
    for split in score_on:  # a refit scores test only: its val is training data
        ws = data.split(split)
        if len(ws):
            logits = window_logits(b.module, ws, device)
            if ws.multi_label and split == "val" and not fixed:  # scored as the model is: thresholds from val
                from ..infer.multilabel import choose_thresholds, clip_scores

                thresholds = choose_thresholds(clip_scores(logits, ws), ws.labels)[0]
            b.scores[split] = evaluation_report(logits, ws, labels, thresholds=thresholds)
    b.thresholds = thresholds
    b.seconds = time.perf_counter() - t0
    parts = [f"{s} accuracy {rep['accuracy']:.4f}" for s, rep in b.scores.items()]
    log.info("baseline %s (C=%g): %s (%.1fs)", kind, c, ", ".join(parts) or "no val/test", b.seconds)
    return b


def _mfcc_stats(f):
    """MfccStats over a log-mel of the recipe's STFT sizes (at least MIN_MELS bands)."""
    from attn.models.linear import MfccStats

    return MfccStats(N_MFCC, {"sample_rate": f.sample_rate, "n_fft": f.n_fft, "win_length": f.win_length,
                              "hop_length": f.hop_length, "n_mels": max(f.n_mels, MIN_MELS), "f_min": f.f_min,
                              "f_max": f.f_max}, f.remove_dc)  # fmt: skip


def _tfidf(train_ws):
    """(TfidfFeatures, the fitted TfidfVectorizer): vocabulary and idf from the training
    windows' token ids."""
    import torch
    from sklearn.feature_extraction.text import TfidfVectorizer

    from attn.models.linear import TfidfFeatures

    docs = _docs(train_ws)
    vec = TfidfVectorizer(analyzer=_grams, sublinear_tf=True, max_features=MAX_FEATURES)
    with _one_thread():
        vec.fit(docs)
    vocab = 1 + max((int(t.max()) for t in docs if len(t)), default=1)
    unigram = torch.full((vocab,), -1, dtype=torch.long)
    pairs = []
    for feat, col in vec.vocabulary_.items():
        if len(feat) == 2:
            pairs.append((feat[0] * vocab + feat[1], col))
        else:
            unigram[feat[0]] = col
    pairs.sort()
    keys = torch.tensor([k for k, _ in pairs], dtype=torch.long)
    cols = torch.tensor([c for _, c in pairs], dtype=torch.long)
    return TfidfFeatures(unigram, keys, cols, torch.from_numpy(vec.idf_.astype(np.float32))), vec


def _transform(vec, ws):
    """TF-IDF rows of `ws`'s windows; an empty split (data too small to hold out val or test)
    gives no rows, which scikit-learn's transform refuses."""
    docs = _docs(ws)
    if not docs:
        from scipy.sparse import csr_matrix

        return csr_matrix((0, len(vec.vocabulary_)), dtype=np.float64)
    return vec.transform(docs)


def _docs(ws) -> list[np.ndarray]:
    """Every window's word ids, in `ws.all_windows` order."""
    return [_ids(ws, ci, s, n) for ci, s, n in ws.all_windows]


def _grams(ids: np.ndarray) -> list[tuple[int, ...]]:
    """A document's features for the vectoriser: (id,) per token and (id, id) per adjacent pair
    (tuples throughout: the vectoriser sorts them)."""
    t = ids.tolist()
    return [(a,) for a in t] + list(zip(t, t[1:], strict=False))


def _ids(ws, ci: int, start: int, n: int) -> np.ndarray:
    ids = ws.clips[ci][start : start + n]
    return ids[:, 0] if ids.ndim == 2 else ids  # word ids (hashed n-grams are the network's business)


def _window_features(features, ws, device, batch: int = 64) -> np.ndarray:
    """(W, D) features of every window of `ws`, in `ws.all_windows` order."""
    import torch

    out = []
    features = features.to(device)
    with torch.inference_mode():
        for b in ws.batches(ws.all_windows, batch):
            out.append(features(b.x.to(device), b.lengths.to(device)).cpu())
    if not out:
        return np.zeros((0, getattr(features, "out_dim", 0)), dtype=np.float32)
    return torch.cat(out).numpy()


def _window_labels(ws) -> np.ndarray:
    return ws.labels[ws.all_windows[:, 0]] if ws.num_windows else np.zeros(0, dtype=np.int64)


def _fit_choose_c(x_train, y_train, x_val, y_val, val_ws, k: int, weights: str | None = None):
    """Logistic regression at each C of the grid; the best clip-level validation accuracy wins,
    ties going to the lower validation log-loss (then the smaller C). Without a validation split,
    C = 10. The blend weighs the baseline by its log-loss: the smallest of tied C values left it
    underconfident, and the blend then took too little of it (texts of 8 sentences: baseline 99.1%,
    saved model 91.2%); on a 90/10 split every C tied on accuracy and the smallest named one class."""
    from sklearn.linear_model import LogisticRegression

    from ..infer.inference import aggregate

    def fit(c):
        return LogisticRegression(C=c, max_iter=2000, class_weight=weights).fit(x_train, y_train)

    with _one_thread():
        if not len(y_val):
            return fit(10.0), 10.0
        best = None
        clips = val_ws.all_windows[:, 0]
        for c in C_GRID:
            clf = fit(c)
            probs = np.zeros((x_val.shape[0], k))
            probs[:, clf.classes_] = clf.predict_proba(x_val)
            clip = aggregate(probs, clips, len(val_ws), heard=val_ws.heard)  # (N, K)
            acc = float((clip.argmax(1) == val_ws.labels).mean())
            loss = float(-np.log(np.clip(clip[np.arange(len(clip)), val_ws.labels], 1e-12, None)).mean())
            if best is None or (acc, -loss) > (best[0], -best[1]):
                best = (acc, loss, c, clf)
    return best[3], best[2]


def _one_thread():
    """One BLAS/OpenMP thread for scikit-learn: on a busy 2-core machine its default pools made
    each fit ~20x slower (10 s instead of 0.5 s for TREC, measured here)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


def _module(features, clf, k: int, mean, scale):
    """LinearBaseline from a fitted LogisticRegression, with coefficients for all K labels."""
    import torch

    from attn.models.linear import LinearBaseline

    coef = np.asarray(clf.coef_, dtype=np.float32)
    intercept = np.asarray(clf.intercept_, dtype=np.float32)
    if coef.shape[0] == 1:  # binary: p(class 1) = sigmoid(w.x + b) = softmax([0, w.x + b])
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.concatenate([[0.0], intercept]).astype(np.float32)
    full_w = np.zeros((k, coef.shape[1]), dtype=np.float32)
    full_b = np.full(k, -np.inf, dtype=np.float32)  # a class training lacked is never predicted
    for row, cls in enumerate(np.asarray(clf.classes_)):
        full_w[int(cls)], full_b[int(cls)] = coef[row], intercept[row]
    t = torch.from_numpy
    return LinearBaseline(features, t(full_w), t(full_b), None if mean is None else t(mean),
                          None if scale is None else t(scale))  # fmt: skip


# -- blending -----------------------------------------------------------------------------------


def choose_blend(net_logits: np.ndarray, base_logits: np.ndarray, ws) -> tuple[float, dict[str, float]]:
    """The weight w in BLEND_GRID whose clip-level blend (1 - w) p_net + w p_base has the lowest
    validation log-loss (ties: the smaller w), and that blend's validation accuracy beside the
    network's. A smooth score: on a small validation set accuracy moves in steps too coarse to
    pick a weight. Window logits (W, K) of `ws`, in `ws.all_windows` order."""
    from ..infer.inference import aggregate, softmax

    if ws.multi_label:
        from .multilabel_baseline import choose_blend_per_class

        return choose_blend_per_class(net_logits, base_logits, ws, BLEND_GRID)
    clips, n = ws.all_windows[:, 0], len(ws)
    p_net = aggregate(softmax(net_logits), clips, n, heard=ws.heard).astype(np.float64)
    p_base = aggregate(softmax(base_logits), clips, n, heard=ws.heard).astype(np.float64)
    y = ws.labels
    best = None
    for w in BLEND_GRID:
        p = (1 - w) * p_net + w * p_base
        nll = float(-np.log(np.clip(p[np.arange(n), y], 1e-12, None)).mean())
        if best is None or nll < best[0] - 1e-9:
            best = (nll, float(w), float((p.argmax(1) == y).mean()))
    nll_net = float(-np.log(np.clip(p_net[np.arange(n), y], 1e-12, None)).mean())
    facts = {"val_accuracy_network": float((p_net.argmax(1) == y).mean()), "val_accuracy_blend": best[2],
             "val_log_loss_network": round(nll_net, 6), "val_log_loss_blend": round(best[0], 6)}  # fmt: skip
    return round(best[1], 2), facts
