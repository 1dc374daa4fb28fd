"""Multi-label tagging (`data.multi_label: true`), the model side: per-class
decision thresholds and the metrics of a tagger.

A multi-label model has one independent sigmoid per class (trained with binary cross-entropy);
an input's labels are the classes whose probability reaches that class's threshold. Thresholds
are chosen on validation (`choose_thresholds`) and stored in the model file.
"""

from __future__ import annotations

import logging
import numbers
from typing import Any

import numpy as np

from attn.errors import ConfigError

from .loaded import Loaded
from .metrics import per_class_rows, precision_recall_f1

log = logging.getLogger("attn")

# Per-class thresholds overfit a handful of positives: a class with fewer validation positives
# than MIN_SUPPORT takes the global threshold, and every class's own choice is shrunk toward the
# global one with the weight of SHRINK_PRIOR pseudo-positives, in log-odds, where a rare class's
# small thresholds are as far apart as a common class's middling ones:
#   logit t_k = (n_k logit own_k + m logit t) / (n_k + m).
# The grid runs from 0.005: an F1-optimal threshold is about half the F1 the class can reach
# (Lipton et al. 2014), so a hard, rare class wants one well below 0.05. On GoEmotions (28
# classes, 13-1766 validation positives) the log-odds shrinkage and the low end of the grid gave
# +1.0 to +1.4 points of macro-F1 on held-out halves of validation (docs/multilabel.md).
MIN_SUPPORT = 5
SHRINK_PRIOR = 5.0
THRESHOLD_GRID = np.unique(np.round(np.r_[np.geomspace(0.005, 0.05, 10)[:-1], np.arange(0.05, 0.951, 0.025)], 4))
DEFAULT_THRESHOLD = 0.5


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(logits, -60, 60)))).astype(np.float32)


# -- thresholds ---------------------------------------------------------------------------------


def _logit(p: float) -> float:
    return float(np.log(p / (1.0 - p)))


def _f1(y: np.ndarray, pred: np.ndarray, axis=None) -> np.ndarray:
    tp = (y * pred).sum(axis)
    denom = y.sum(axis) + pred.sum(axis)
    return np.divide(2 * tp, denom, out=np.zeros_like(np.asarray(denom, dtype=float)), where=denom > 0)


def choose_thresholds(scores: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """Per-class thresholds (K,) from validation clip scores (N, K) and targets (N, K).

    The global threshold maximises micro-F1 over all classes. Each class with at least
    MIN_SUPPORT positives takes the grid value maximising its own F1 (ties: nearest the global
    one), shrunk toward the global threshold in log-odds by SHRINK_PRIOR pseudo-positives; a
    rarer class takes the global threshold. Without validation examples every threshold is 0.5."""
    k = scores.shape[1] if scores.ndim == 2 else 0
    if not len(scores):
        return np.full(k, DEFAULT_THRESHOLD), {"global": DEFAULT_THRESHOLD, "rule": "no validation data: 0.5"}
    y = (y > 0.5).astype(np.float64)
    micro = [float(_f1(y, (scores >= t).astype(float))) for t in THRESHOLD_GRID]
    best_global = float(THRESHOLD_GRID[int(np.argmax(micro))])
    out = np.full(k, best_global)
    support = y.sum(0).astype(int)
    for c in range(k):
        if support[c] < MIN_SUPPORT:
            continue
        f1s = np.array([float(_f1(y[:, c], (scores[:, c] >= t).astype(float))) for t in THRESHOLD_GRID])
        ties = np.flatnonzero(f1s >= f1s.max() - 1e-12)
        own = float(THRESHOLD_GRID[ties[np.argmin(np.abs(THRESHOLD_GRID[ties] - best_global))]])
        z = (support[c] * _logit(own) + SHRINK_PRIOR * _logit(best_global)) / (support[c] + SHRINK_PRIOR)
        out[c] = 1.0 / (1.0 + np.exp(-z))
    facts = {"global": best_global, "min_support": MIN_SUPPORT, "shrink_prior": SHRINK_PRIOR,
             "rule": "per class on validation, shrunk toward the global threshold in log-odds"}  # fmt: skip
    return np.round(out, 4), facts


# -- metrics ------------------------------------------------------------------------------------


def average_precision(y: np.ndarray, s: np.ndarray) -> float:
    """Area under the precision-recall curve as scikit-learn's average_precision_score computes it
    (step-wise, ties grouped); NaN without positives."""
    n_pos = y.sum()
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last index of each distinct score
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    precision = tp / (tp + fp)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def multilabel_report(scores: np.ndarray, y: np.ndarray, labels: list[str], thresholds: np.ndarray | None = None,
                      ) -> dict[str, Any]:  # fmt: skip
    """Metrics of clip scores (N, K) in [0, 1] against multi-hot targets (N, K): micro- and
    macro-F1 at the thresholds, macro mAP, exact-set match (as `accuracy`, so early stopping and
    summaries read one key), label cardinality, and per class precision/recall/F1/AP/support.
    Macro averages run over classes with a positive in `y` (AP is undefined without one)."""
    k = len(labels)
    th = np.full(k, DEFAULT_THRESHOLD) if thresholds is None else np.asarray(thresholds, dtype=float)
    y = (np.asarray(y) > 0.5).astype(np.float64)
    n = len(y)
    if not n:
        pred = np.zeros((0, k))
    else:
        pred = (scores >= th[None, :]).astype(np.float64)
    tp, pred_n, true_n = (y * pred).sum(0), pred.sum(0), y.sum(0)
    precision, recall, f1 = precision_recall_f1(tp, pred_n, true_n)
    ap = np.array([average_precision(y[:, c], scores[:, c]) for c in range(k)]) if n else np.full(k, np.nan)
    present = true_n > 0
    exact = float((pred == y).all(1).mean()) if n else 0.0
    return {
        "multi_label": True,
        "accuracy": exact,  # exact-set match
        "exact_match": exact,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "micro_f1": float(_f1(y, pred)) if n else 0.0,
        "macro_map": float(np.nanmean(ap[present])) if present.any() else 0.0,
        "label_cardinality": float(y.sum(1).mean()) if n else 0.0,
        "predicted_cardinality": float(pred.sum(1).mean()) if n else 0.0,
        "count": int(n),
        "per_class": per_class_rows(
            labels, precision=precision, recall=recall, f1=f1, ap=ap, support=true_n.astype(int), threshold=th
        ),
        "labels": list(labels),
    }


def bce(probs: np.ndarray, y: np.ndarray) -> float:
    """Mean binary cross-entropy of probabilities (W, K) against targets (W, K)."""
    p = np.clip(probs.astype(np.float64), 1e-7, 1 - 1e-7)
    return float(-(y * np.log(p) + (1 - y) * np.log1p(-p)).mean()) if len(p) else float("nan")


def chosen_labels(scores: np.ndarray, labels: list[str], thresholds: np.ndarray) -> list[str]:
    """The labels whose score (K,) reaches its threshold, best first."""
    order = np.argsort(-scores, kind="stable")
    return [labels[i] for i in order if scores[i] >= thresholds[i]]


def clip_scores(logits: np.ndarray, ws, how: str = "mean") -> np.ndarray:
    """Window logits (W, K) of `ws` -> clip probabilities (N, K): each window's sigmoid, averaged
    (or their maximum: `how` "max", as predict --aggregate max)."""
    from .inference import aggregate

    if not len(logits):
        return np.zeros((len(ws), len(ws.labels[0]) if len(ws.labels) else 0), dtype=np.float32)
    return aggregate(sigmoid(logits), ws.all_windows[:, 0], len(ws), how, heard=ws.heard)


def multilabel_evaluation(logits: np.ndarray, ws, labels: list[str], thresholds=None, how: str = "mean") -> dict:
    """`evaluation_report` for multi-hot targets: the clip metrics plus the windows' mean BCE as `loss`."""
    if how not in ("mean", "max"):
        raise ConfigError(VOTE_MULTI)
    y = ws.labels
    rep = multilabel_report(clip_scores(logits, ws, how), y, labels, thresholds)
    rep["loss"] = bce(sigmoid(logits), y[ws.all_windows[:, 0]]) if len(logits) else float("nan")
    return rep


def thresholds_on_val(model, data, device) -> tuple[np.ndarray | None, dict[str, Any]]:
    """(thresholds (K,), facts) of the model to save, chosen on its validation clip scores."""
    from .inference import window_logits

    scores = clip_scores(window_logits(model, data.val, device), data.val) if len(data.val) else np.zeros((0, 0))
    th, facts = choose_thresholds(scores, data.val.labels if len(data.val) else np.zeros((0, 0)))
    if not len(data.val):
        th = np.full(len(data.labels), DEFAULT_THRESHOLD)
        log.info("thresholds: %g for every class (no validation split to choose them on)", DEFAULT_THRESHOLD)
        return th, facts
    log.info("thresholds (validation, global %.3f): %s", facts["global"],
             ", ".join(f"{lab} {t:.3f}" for lab, t in zip(data.labels, th, strict=True)))  # fmt: skip
    return th, facts


# -- predicting ---------------------------------------------------------------------------------


def model_thresholds(loaded: Loaded, override: float | None = None) -> np.ndarray | None:
    """The thresholds predictions use: `override` (predict --threshold) for every class, else the
    ones the model file stores (0.5 for a file without them); None for a single-label model."""
    from attn.errors import ConfigError

    if not getattr(loaded.recipe.data, "multi_label", False):
        if override is not None:
            raise ConfigError("--threshold is for multi-label models (data.multi_label); this model picks one label")
        return None
    if override is not None:
        if isinstance(override, (bool, np.bool_)) or not isinstance(override, numbers.Real):  # "0.3", True
            raise ConfigError(f"threshold {override!r}: give a number within [0, 1]")
        if not 0.0 <= override <= 1.0:
            raise ConfigError(f"--threshold must be within [0, 1] (got {override:g})")
        return np.full(len(loaded.labels), float(override))
    stored = loaded.header.get("thresholds")
    return np.asarray(stored, dtype=float) if stored else np.full(len(loaded.labels), DEFAULT_THRESHOLD)


def single_label_options(loaded: Loaded, min_score: float | None, min_similarity: float | None, top_k: int = 1) -> None:
    """A ConfigError when a multi-label model is given an option of single-label answers (the
    reverse of `--threshold` on a single-label model); `attn serve` answers the same with a 422."""
    from attn.errors import ConfigError

    multi = getattr(loaded.recipe.data, "multi_label", False)
    if multi and (min_score, min_similarity) != (None, None):
        raise ConfigError("--min-score and --min-similarity are for single-label models; this model is multi-label "
                          "(use --threshold)")  # fmt: skip
    if multi and top_k != 1:  # its records hold every class's score already; k of them was silently ignored
        raise ConfigError(TOP_K_MULTI)
    if min_similarity is not None and not (loaded.header or {}).get("novelty"):
        raise ConfigError(NO_NOVELTY)


VOTE_MULTI = ("--aggregate vote counts each window's one best label; a multi-label model's clip scores are its "
              "windows' mean or max per label (--aggregate mean|max)")  # fmt: skip
TOP_K_MULTI = ("--top-k is for single-label models; this model is multi-label and reports every class's score "
               "(scores) beside the labels above their thresholds")  # fmt: skip

# --min-similarity on a model that stores no embeddings to compare with would change nothing
NO_NOVELTY = ("--min-similarity needs a model with a novelty check (trained with train.abstain.novelty); this one "
              "has none, so nothing would be compared")  # fmt: skip


def tag_record(scores: np.ndarray, labels: list[str], thresholds: np.ndarray) -> dict[str, Any]:
    """A multi-label prediction's fields: `labels` at or above their thresholds (best first) and
    every class's `scores`, in the model's label order."""
    return {"labels": chosen_labels(scores, labels, thresholds),
            "scores": {lab: round(float(s), 6) for lab, s in zip(labels, scores, strict=True)}}  # fmt: skip


def pr_curves(scores: np.ndarray, y: np.ndarray, labels: list[str], thresholds: np.ndarray) -> list[dict[str, Any]]:
    """Per class: the precision-recall curve of clip scores (N, K) against targets (N, K) and the
    (recall, precision) point of its threshold (report.html's figure)."""
    out = []
    y = np.asarray(y) > 0.5
    for c, lab in enumerate(labels):
        pos = int(y[:, c].sum())
        if not pos:
            continue
        ts = np.unique(scores[:, c])[::-1]
        pred = scores[:, c][None, :] >= ts[:, None]  # (T, N)
        tp = (pred & y[:, c][None, :]).sum(1)
        precision, recall = tp / np.maximum(pred.sum(1), 1), tp / pos
        hit = scores[:, c] >= thresholds[c]
        tp_t = int((hit & y[:, c]).sum())
        # never predicted: precision 0, as the per-class table gives it (zero_division=0); the dot sat at 1.0
        at = (tp_t / pos, tp_t / hit.sum()) if hit.any() else (0.0, 0.0)
        out.append({"label": lab, "precision": np.r_[1.0, precision], "recall": np.r_[0.0, recall], "at": at,
                    "ap": average_precision(y[:, c].astype(float), scores[:, c])})  # fmt: skip
    return out


def worst_examples(scores: np.ndarray, y: np.ndarray, labels: list[str], thresholds: np.ndarray, n: int = 12):
    """The examples whose tagged set is furthest from the truth (most wrong labels, then the
    largest score error): [(index, true labels, predicted labels, missed + wrongly added)]."""
    y = np.asarray(y) > 0.5
    pred = scores >= thresholds[None, :]
    wrong = (pred != y).sum(1)
    err = np.abs(scores - y).sum(1)
    order = [i for i in np.lexsort((-err, -wrong)) if wrong[i]][:n]
    names = np.asarray(labels, dtype=object)
    return [(int(i), list(names[y[i]]), list(names[pred[i]]), int(wrong[i])) for i in order], int((wrong > 0).sum())
