"""The multi-label baseline and blend: one-vs-rest logistic regression (a binary model per class,
C chosen on validation by macro mAP) and the network's and baseline's per-class probabilities
blended with the weight of the lowest validation binary cross-entropy."""

from __future__ import annotations

import numpy as np

from ..infer.multilabel import bce, clip_scores, multilabel_report

# A class without both a positive and a negative training window gets a constant logit instead
# of a fit: its training rate, clipped to this many logits either side of 0 (finite, so a blend
# of it stays finite).
CONSTANT_LOGIT = 12.0


class OneVsRest:
    """K binary logistic regressions as one (coef_ (K, D), intercept_ (K,))."""

    def __init__(self, coef: np.ndarray, intercept: np.ndarray) -> None:
        self.coef_, self.intercept_ = coef, intercept

    def decision_function(self, x) -> np.ndarray:
        return np.asarray(x @ self.coef_.T) + self.intercept_


def _fit(x, y: np.ndarray, c: float) -> OneVsRest:
    from sklearn.linear_model import LogisticRegression

    k, d = y.shape[1], x.shape[1]
    coef, intercept = np.zeros((k, d), dtype=np.float32), np.zeros(k, dtype=np.float32)
    for j in range(k):
        col = (y[:, j] >= 0.5).astype(int)
        if 0 < col.sum() < len(col):
            clf = LogisticRegression(C=c, max_iter=2000).fit(x, col)
            coef[j], intercept[j] = clf.coef_[0], clf.intercept_[0]
        else:
            rate = np.clip(col.mean() if len(col) else 0.0, 1e-6, 1 - 1e-6)
            intercept[j] = np.clip(np.log(rate / (1 - rate)), -CONSTANT_LOGIT, CONSTANT_LOGIT)
    return OneVsRest(coef, intercept)


def fit_one_vs_rest(x: dict, y: dict, val_ws, c: float | None, grid, one_thread) -> tuple[OneVsRest, float]:
    """(the fit on x["train"], its C): the given `c`, else the grid's C with the best clip-level
    validation macro mAP (ties: the smaller C; without validation, C = 10)."""
    with one_thread():
        if c is not None:
            return _fit(x["train"], y["train"], c), c
        if not len(y["val"]):
            return _fit(x["train"], y["train"], 10.0), 10.0
        best = None
        labels = [str(i) for i in range(y["train"].shape[1])]
        for cand in grid:
            clf = _fit(x["train"], y["train"], cand)
            scores = clip_scores(clf.decision_function(x["val"]).astype(np.float32), val_ws)
            m = multilabel_report(scores, val_ws.labels, labels)["macro_map"]
            if best is None or m > best[0]:
                best = (m, cand, clf)
    return best[2], best[1]


def ovr_module(features, clf: OneVsRest, mean, scale):
    """The LinearBaseline (multi_label: raw per-class logits) of a one-vs-rest fit."""
    import torch

    from attn.models.linear import LinearBaseline

    t = torch.from_numpy
    return LinearBaseline(features, t(clf.coef_.astype(np.float32)), t(clf.intercept_.astype(np.float32)),
                          None if mean is None else t(mean), None if scale is None else t(scale),
                          multi_label=True)  # fmt: skip


def blend_probs(p_net: np.ndarray, p_base: np.ndarray, w: float) -> np.ndarray:
    return (1 - w) * p_net + w * p_base


def choose_blend_per_class(net_logits: np.ndarray, base_logits: np.ndarray, ws, grid) -> tuple[float, dict]:
    """The weight w of the grid whose per-class blend (1 - w) sigmoid(net) + w sigmoid(base),
    averaged per clip, has the lowest validation BCE (ties: the smaller w); facts name both
    validation macro mAPs (`val_macro_map_*`; the `val_accuracy_*` keys it also wrote held them, not an accuracy)."""
    p_net, p_base = clip_scores(net_logits, ws).astype(np.float64), clip_scores(base_logits, ws).astype(np.float64)
    y = ws.labels
    labels = [str(i) for i in range(y.shape[1])]
    best = None
    for w in grid:
        loss = bce(blend_probs(p_net, p_base, w), y)
        if best is None or loss < best[0] - 1e-9:
            best = (loss, float(w))
    m_net = multilabel_report(p_net, y, labels)["macro_map"]
    m_blend = multilabel_report(blend_probs(p_net, p_base, best[1]), y, labels)["macro_map"]
    facts = {"val_macro_map_network": m_net, "val_macro_map_blend": m_blend, "val_bce_blend": round(best[0], 6)}
    return round(best[1], 2), facts
