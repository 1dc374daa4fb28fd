"""Run a model over windows and aggregate window predictions per clip (shared by training's
validation, `attn evaluate` and `attn predict`). Only `window_logits` needs torch: predicting
with an exported ONNX model uses the rest without it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from attn.features.levels import heard_windows, window_level_db  # noqa: F401 (re-exported)

if TYPE_CHECKING:  # pragma: no cover
    from ..data.batching import WindowSet

AGGREGATES = ("mean", "max", "vote")


def window_logits(model, ws: WindowSet, device, batch_size: int = 64, amp: bool = False) -> np.ndarray:
    """Logits for every window of `ws` in `ws.all_windows` order: (W, K) float32."""
    import torch

    model.eval()
    out = []
    pin = device.type == "cuda"
    with torch.inference_mode():
        for batch in ws.batches(ws.all_windows, batch_size):
            if pin:
                batch = batch.pin_memory()
            batch = batch.to(device, non_blocking=pin)
            with torch.autocast(device.type, enabled=amp and device.type == "cuda"):
                logits = model(batch.x, batch.lengths)
            out.append(logits.float().cpu())
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return torch.cat(out).numpy()


def top_labels(scores: np.ndarray, labels: list[str], k: int) -> list[dict]:
    """The `k` best classes of one input's scores (K,), best first (ties: the lower index):
    [{"label", "score"}], scores rounded to 6 places as prediction records print them."""
    order = np.argsort(-scores, kind="stable")[:k]
    return [{"label": labels[i], "score": round(float(scores[i]), 6)} for i in order]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def aggregate(probs: np.ndarray, clip: np.ndarray, n_clips: int, how: str = "mean",
              heard: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """Window probabilities (W, K) with their clip index (W,) -> clip scores (n_clips, K).

    mean: average probability; max: per-class maximum over windows (renormalised);
    vote: fraction of windows whose top class is each class. `heard` (W,) bool: only these
    windows count (`heard_windows`); None: all.
    """
    if heard is not None and len(probs) and not heard.all():
        probs, clip = probs[heard], clip[heard]
    k = probs.shape[1]
    out = np.zeros((n_clips, k), dtype=np.float64)
    if how == "mean":
        np.add.at(out, clip, probs)
        out /= np.maximum(np.bincount(clip, minlength=n_clips), 1)[:, None]
    elif how == "max":
        out[:] = -np.inf
        np.maximum.at(out, clip, probs)
        out = out / out.sum(1, keepdims=True)
    elif how == "vote":
        np.add.at(out, (clip, probs.argmax(1)), 1.0)
        out /= np.maximum(out.sum(1, keepdims=True), 1)
    else:
        raise ValueError(f"unknown aggregate {how!r}; use one of {', '.join(AGGREGATES)}")
    return out.astype(np.float32)
