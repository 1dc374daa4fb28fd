"""Calibrated scores and "unknown" for single-label models (issue 20, part 2).

After training and the blend, `calibrate` fits one temperature T on the validation split: the
model's window logits are divided by T before the softmax (`attn.models.calibrated.Tempered`),
T chosen to minimise the clip-level validation log-loss (clip scores are the mean of their
windows' probabilities, as predict gives them). T is kept only when it lowers the validation
ECE; otherwise T = 1 and the log says so. A validation split with no misclassified clip keeps
T = 1 too: its log-loss falls without end as T -> 0 (a fit would claim certainty). With
`train.abstain.target_precision` the same validation scores choose the score S below which
predict answers `unknown`: the lowest S whose answered validation clips (top score >= S) are at
least that precise.

With `train.refit` the saved model is retrained on train + val, so validation is no longer held
out: T and S are fitted on the first phase's model (same recipe, same seed, trained on train
only) and carried over to the refitted one. With `train.folds` they are fitted on the
out-of-fold scores instead (`ClipScores`: every labelled non-test clip scored by the fold model
that held it out), for either final model. The test split never takes part; its ECE and
coverage are only measured (metrics.json).

ECE: 15 equal-width bins of the top-1 score over (0, 1] (a score s falls in bin ceil(15 s) - 1),
ECE = sum over bins of (n_bin / N) |accuracy_bin - mean score_bin|, at clip level.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from .inference import aggregate, softmax

log = logging.getLogger("attn")

BINS = 15
BINNING = f"{BINS} equal-width bins of the top-1 score over (0, 1], one score per example"
UNKNOWN = "unknown"  # what predict answers below the min score
CURVE_SCORES = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)  # the coverage table's thresholds
T_RANGE = (0.05, 20.0)  # the temperatures searched
DRAW_CELLS = 1 << 22  # ece_if_calibrated: simulated outcomes held at once (4M booleans)


@dataclass(frozen=True)
class ClipScores:
    """Window logits of labelled clips, without the clips: what fitting T and S reads.

    logits (W, K) untempered; clip (W,) the clip index of each window; labels (N,); sources (N,)
    where each clip came from; scored_by (N,) the model that scored it (a fold's name)."""

    logits: np.ndarray
    clip: np.ndarray
    labels: np.ndarray
    sources: tuple[str, ...]
    scored_by: tuple[str, ...]
    heard: np.ndarray | None = None  # (W,) the windows that count (WindowSet.heard); None: all

    @classmethod
    def of(cls, logits: np.ndarray, ws, items, scored_by: str) -> ClipScores:
        """The scores `logits` (W, K) of WindowSet `ws` (clips from `items`), by model `scored_by`."""
        return cls(np.asarray(logits), ws.all_windows[:, 0].copy(), np.asarray(ws.labels),
                   tuple(it.source for it in items), (scored_by,) * len(ws), ws.heard)  # fmt: skip

    @classmethod
    def concat(cls, parts: list[ClipScores]) -> ClipScores:
        """The parts' clips one after the other (clip indices shifted)."""
        starts = np.cumsum([0] + [len(p) for p in parts[:-1]])
        heard = None
        if any(p.heard is not None for p in parts):
            heard = np.concatenate([p.heard if p.heard is not None else np.ones(len(p.clip), bool) for p in parts])
        return cls(np.concatenate([p.logits for p in parts]),
                   np.concatenate([p.clip + s for p, s in zip(parts, starts, strict=True)]),
                   np.concatenate([p.labels for p in parts]),
                   sum((p.sources for p in parts), ()), sum((p.scored_by for p in parts), ()), heard)  # fmt: skip

    def __len__(self) -> int:
        return len(self.labels)


def _clip_of(ws) -> np.ndarray:
    """(W,) the clip index of each window: of a WindowSet or a ClipScores."""
    return ws.clip if isinstance(ws, ClipScores) else ws.all_windows[:, 0]


def clip_probs(logits: np.ndarray, ws, temperature: float = 1.0) -> np.ndarray:
    """(N, K) clip scores: the mean over each clip's windows of softmax(window logits (W, K) / T)."""
    heard = getattr(ws, "heard", None)  # a WindowSet or ClipScores; a stand-in without it: every window
    return aggregate(softmax(logits.astype(np.float64) / temperature), _clip_of(ws), len(ws), heard=heard)


def reliability(probs: np.ndarray, y: np.ndarray, bins: int = BINS) -> list[dict[str, Any]]:
    """Per bin of the top-1 score (see the module doc): its range, count, mean score, accuracy."""
    conf, correct = probs.max(1), probs.argmax(1) == y
    idx = _bin_of(conf, bins)
    out = []
    for b in range(bins):
        m = idx == b
        n = int(m.sum())
        out.append({"lo": round(b / bins, 4), "hi": round((b + 1) / bins, 4), "count": n,
                    "score": float(conf[m].mean()) if n else None,
                    "accuracy": float(correct[m].mean()) if n else None})  # fmt: skip
    return out


def _bin_of(conf: np.ndarray, bins: int) -> np.ndarray:
    """(N,) the bin of each top-1 score: s falls in bin ceil(bins s) - 1 (see the module doc)."""
    return np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)


def ece(probs: np.ndarray, y: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error of clip scores (N, K) against labels (N,)."""
    n = len(y)
    if not n:
        return float("nan")
    return float(
        sum(b["count"] / n * abs(b["accuracy"] - b["score"]) for b in reliability(probs, y, bins) if b["count"])
    )


def ece_if_calibrated(probs: np.ndarray, bins: int = BINS, draws: int = 2000, seed: int = 0) -> dict[str, Any]:
    """The ECE a perfectly calibrated model with exactly these top-1 scores would still show on
    this many clips: each clip drawn right with probability its score, `draws` times (seeded).
    On a small split the ECE of a perfect model is far from 0 (80 clips scored around 0.9: ~0.07),
    so an ECE inside this range is as good as calibration can be measured there.
    Returns {"median", "p5", "p95", "clips"}."""
    conf = probs.max(1) if len(probs) else np.zeros(0)
    n = len(conf)
    if not n:
        return {"median": None, "p5": None, "p95": None, "clips": 0}
    idx = _bin_of(conf, bins)
    rng, total = np.random.default_rng(seed), np.zeros(draws)
    step = max(1, DRAW_CELLS // n)  # draws per chunk: memory stays bounded on a large test split
    for lo in range(0, draws, step):
        right = rng.random((min(step, draws - lo), n)) < conf  # (chunk, N)
        for b in np.unique(idx):
            m = idx == b
            total[lo : lo + len(right)] += m.sum() / n * np.abs(right[:, m].mean(1) - conf[m].mean())
    p5, median, p95 = np.percentile(total, [5, 50, 95])
    return {"median": round(float(median), 4), "p5": round(float(p5), 4), "p95": round(float(p95), 4), "clips": n}


def fit_temperature(logits: np.ndarray, ws) -> float:
    """The T in T_RANGE minimising the clip-level log-loss of `clip_probs(logits, ws, T)`."""
    from scipy.optimize import minimize_scalar

    y = ws.labels

    def nll(log_t: float) -> float:
        p = clip_probs(logits, ws, float(np.exp(log_t)))
        return float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None)).mean())

    res = minimize_scalar(nll, bounds=tuple(np.log(T_RANGE)), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(res.x))


def choose_min_score(probs: np.ndarray, y: np.ndarray, target: float) -> tuple[float, dict[str, Any]]:
    """(S, facts): a top-1 score S whose answers (clips scoring >= S) are the most clips that reach
    `target` precision on these labelled clips (S halfway between the last answered score and the
    next lower one); when none does, the S of the most precise answers (ties: the most answers),
    with a warning."""
    conf, correct = probs.max(1), (probs.argmax(1) == y).astype(np.float64)
    order = np.argsort(-conf, kind="stable")
    conf, correct = conf[order], correct[order]
    precision = np.cumsum(correct) / np.arange(1, len(conf) + 1)  # answering the i + 1 best-scored
    last = np.r_[conf[1:] < conf[:-1], True]  # a threshold answers every clip of an equal score
    ok = np.flatnonzero(last & (precision >= target))
    if len(ok):
        i = int(ok[-1])
    else:
        cand = np.flatnonzero(last)
        i = int(cand[np.argmax(precision[cand])])
        log.warning("abstain: no score threshold reaches %.2f precision on validation; min_score %.4f gives "
                    "the most precise answers (%.4f)", target, conf[i], precision[i])  # fmt: skip
    # S sits halfway to the next lower score: stored to 6 decimals, a threshold equal to the last
    # answered score rounded up about half the time, past that clip (then abstained on).
    lower = float(conf[i + 1]) if i + 1 < len(conf) else max(0.0, float(conf[i]) - 2e-6)
    s = (float(conf[i]) + lower) / 2
    return s, {"target_precision": target, "val_precision": float(precision[i]),
               "val_coverage": float((i + 1) / len(conf))}  # fmt: skip


def coverage(probs: np.ndarray, y: np.ndarray, min_score: float) -> dict[str, Any]:
    """Share of clips answered (top-1 score >= min_score) and the accuracy on those."""
    conf, correct = probs.max(1), probs.argmax(1) == y
    m = conf >= min_score
    return {"min_score": round(float(min_score), 6), "coverage": float(m.mean()) if len(m) else 0.0,
            "accuracy": float(correct[m].mean()) if m.any() else None, "answered": int(m.sum())}  # fmt: skip


def calibrate(model, data, recipe, device) -> dict[str, Any] | None:
    """The calibration facts the model file keeps (temperature, validation ECE before/after,
    min_score): fitted on `data.val` with `model` (the blended model, before any refit); None
    without a validation split or when the recipe asks for neither."""
    from .inference import window_logits

    if not len(data.val) or not wanted(recipe):
        return calibrate_scores(None, data.val, recipe)
    return calibrate_scores(window_logits(model, data.val, device), data.val, recipe)  # (W, K): data.val's windows


def wanted(recipe) -> bool:
    """Whether the recipe asks for a temperature or a min score."""
    return recipe.train.calibrate or recipe.train.abstain.target_precision is not None


def calibrate_scores(logits, ws, recipe, fitted_on: str = "validation") -> dict[str, Any] | None:
    """`calibrate` on given window logits (W, K) of labelled clips `ws` (a WindowSet or a
    ClipScores): None when there are none or the recipe asks for neither."""
    target = recipe.train.abstain.target_precision
    if logits is None or not len(ws) or not wanted(recipe):
        if target is not None:
            log.warning("train.abstain: no validation split to choose min_score on; predict never abstains")
        return None
    y = ws.labels
    before = ece(clip_probs(logits, ws), y)
    t, after = 1.0, before
    misclassified = int((clip_probs(logits, ws).argmax(1) != y).sum())
    not_fitted = None if recipe.train.calibrate else "train.calibrate is off"  # why T is 1 (the report said "fitted")
    if recipe.train.calibrate and not misclassified:
        not_fitted = "every validation example is classified right, so none can be fitted"
        # Every validation example right: the log-loss falls without end as T -> 0, so a fit would
        # stop at T_RANGE's floor and claim certainty the validation split cannot vouch for (small
        # or easy sets; the model's own scores are the better guess for unseen data).
        log.info("calibration: every validation example (%d) is classified right, so no temperature can be "
                 "fitted; kept T = 1", len(y))  # fmt: skip
    elif recipe.train.calibrate:
        t = fit_temperature(logits, ws)
        after = ece(clip_probs(logits, ws, t), y)
        if not after < before:
            log.info("calibration: temperature %.3f does not lower validation ECE (%.4f -> %.4f); kept T = 1",
                     t, before, after)  # fmt: skip
            not_fitted = f"the fitted {t:.3f} did not lower the validation ECE ({before:.4f} -> {after:.4f})"
            t, after = 1.0, before
        else:
            log.info("calibration: temperature %.3f, validation ECE %.4f -> %.4f", t, before, after)
    facts: dict[str, Any] = {"temperature": round(t, 6), "val_ece_before": round(before, 6), "val_ece": round(after, 6),
                             "binning": BINNING, "fitted_on": fitted_on, "min_score": None}  # fmt: skip
    if not_fitted:
        facts["not_fitted"] = not_fitted
    if target is not None:
        s, chosen = choose_min_score(clip_probs(logits, ws, t), y, target)
        facts["min_score"], facts["abstain"] = round(s, 6), chosen
        log.info("abstain: min_score %.4f (validation precision %.4f at coverage %.4f, target %.2f)", s,
                 chosen["val_precision"], chosen["val_coverage"], target)  # fmt: skip
    return facts


def calibration_report(logits: np.ndarray, ws, facts: dict[str, Any], min_score: float | None = None,
                       novelty=None):  # fmt: skip
    """metrics.json's `calibration` and `abstention` entries for calibrated window logits (W, K)
    of labelled clips `ws`: ECE before (T = 1) and after, the reliability bins, and coverage vs
    accuracy at CURVE_SCORES and at `min_score` (default: the stored one); `novelty`: (the clips'
    similarities, the model's `Novelty`) adds `abstention.novelty` (novelty.novelty_report)."""
    t = float(facts.get("temperature", 1.0))
    y = ws.labels
    after = clip_probs(logits, ws)
    before = clip_probs(logits * t, ws)
    cal = {**facts, "ece_before": ece(before, y), "ece": ece(after, y), "ece_if_calibrated": ece_if_calibrated(after),
           "reliability": {"before": reliability(before, y), "after": reliability(after, y)}}  # fmt: skip
    s = facts.get("min_score") if min_score is None else min_score
    ab: dict[str, Any] = {"curve": [coverage(after, y, c) for c in CURVE_SCORES]}
    if s is not None:
        ab.update(coverage(after, y, s))
    if novelty is not None:
        from .novelty import novelty_report

        ab["novelty"] = novelty_report(after, y, novelty[0], novelty[1], s)
    return {"calibration": cal, "abstention": ab}


def abstain(records, min_score: float | None, min_similarity: float | None = None):
    """Prediction records with `label` "unknown" where the top score is below `min_score`, or
    the input's "similarity" to the training data (novelty.py) is below `min_similarity` (then
    "novel": true); the record keeps `score` and names the best label in `best_label`. Its
    per-window "frames" (predict --per-frame) abstain by `min_score` the same way, as `attn
    listen`'s windows do. Errors pass through."""
    for rec in records:
        if "error" not in rec and "label" in rec:
            novel = min_similarity is not None and rec.get("similarity", 1.0) < min_similarity
            if novel or (min_score is not None and rec.get("score", 1.0) < min_score):
                rec = {**rec, "label": UNKNOWN, "best_label": rec["label"], **({"novel": True} if novel else {})}
            if min_score is not None and rec.get("frames"):
                rec = {**rec, "frames": list(abstain(rec["frames"], min_score))}
        yield rec


def check_min_score(value: float | None) -> None:
    """--min-score must be a score: in [0, 1]."""
    from attn.errors import ConfigError

    if value is not None and not 0.0 <= value <= 1.0:
        raise ConfigError(f"--min-score {value:g}: a score is between 0 and 1 (predict answers `unknown` below it)")


def check_min_similarity(value: float | None) -> None:
    """--min-similarity must be a cosine similarity: in [-1, 1]."""
    from attn.errors import ConfigError

    if value is not None and not -1.0 <= value <= 1.0:
        raise ConfigError(f"--min-similarity {value:g}: a cosine similarity is between -1 and 1 (predict answers "
                          "`unknown` below it; -1 turns the novelty check off)")  # fmt: skip
