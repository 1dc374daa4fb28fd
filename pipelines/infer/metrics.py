"""Classification metrics as plain data (the shape of metrics.json and `evaluate --format json`)."""

from __future__ import annotations

from typing import Any

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    """(k, k) counts, rows = true label, columns = predicted label."""
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def classification_report(y_true, y_pred, labels: list[str]) -> dict[str, Any]:
    """accuracy, macro_f1, per_class {label: precision, recall, f1, support}, confusion, labels.

    Macro-F1 averages over classes present in y_true or y_pred (an absent class would add a
    meaningless 0); precision of a never-predicted class is 0.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    k = len(labels)
    cm = confusion_matrix(y_true, y_pred, k)
    tp = np.diag(cm).astype(float)
    pred_n = cm.sum(0).astype(float)
    true_n = cm.sum(1).astype(float)
    precision, recall, f1 = precision_recall_f1(tp, pred_n, true_n)
    present = (true_n + pred_n) > 0
    n = len(y_true)
    return {
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "count": int(n),
        "per_class": per_class_rows(labels, precision=precision, recall=recall, f1=f1, support=true_n.astype(int)),
        "confusion": cm.tolist(),
        "labels": list(labels),
    }


def precision_recall_f1(tp: np.ndarray, pred_n: np.ndarray, true_n: np.ndarray):
    """Per class (K,) from true positives, predicted and true counts; 0 where undefined."""
    k = len(tp)
    precision = np.divide(tp, pred_n, out=np.zeros(k), where=pred_n > 0)
    recall = np.divide(tp, true_n, out=np.zeros(k), where=true_n > 0)
    denom = precision + recall
    return precision, recall, np.divide(2 * precision * recall, denom, out=np.zeros(k), where=denom > 0)


def per_class_rows(labels: list[str], **columns) -> dict[str, dict[str, Any]]:
    """{label: {column: value}} from (K,) arrays: plain floats and ints; NaN (undefined) as None."""

    def plain(v):
        if isinstance(v, (np.integer, int)):
            return int(v)
        return None if np.isnan(v) else float(v)

    return {lab: {name: plain(col[i]) for name, col in columns.items()} for i, lab in enumerate(labels)}
