"""The training loss: cross-entropy (or, multi-label, binary cross-entropy per class) with label
smoothing, balanced class weights and mixup's two labels per row."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..data.batching import WindowSet


def class_weights(train_set: WindowSet, num_classes: int, device: torch.device) -> torch.Tensor:
    """`train.class_weights: balanced` as a (K,) tensor: single-label, w_k = N / (K n_k), so every
    class carries the same total weight in the loss; multi-label, BCE's pos_weight n_neg / n_pos
    per class, so positives and negatives weigh the same in total."""
    y = train_set.labels
    if train_set.multi_label:
        pos = y.sum(0).astype(np.float64)
        w = np.where(pos > 0, (len(y) - pos) / np.maximum(pos, 1), 1.0)
    else:
        counts = np.bincount(y[y >= 0], minlength=num_classes).astype(np.float64)
        w = np.where(counts > 0, counts.sum() / (num_classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(w, dtype=torch.float32, device=device)


def training_loss(
    logits: torch.Tensor,
    y: torch.Tensor,
    mix,
    weights: torch.Tensor | None,
    label_smoothing: float,
    multi_label: bool,
    union: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy of logits (B, K) against labels y (B,) (class-weighted with `weights`); with
    mixup (`mix`: lam (B,), perm (B,)), each row's loss against both of its labels, weighted by
    its mixing weight. Multi-label: binary cross-entropy per class (`weights` as pos_weight)
    against mixed multi-hot targets y (B, K); rows where `union` (B,) is set (mix_union) take the
    union of both label sets instead."""
    ls = label_smoothing
    if multi_label:
        # y: (B, K) multi-hot; mixup mixes the targets as it mixed the inputs
        if mix is not None:
            lam, perm = mix
            mixed = lam[:, None] * y + (1 - lam[:, None]) * y[perm]
            y = mixed if union is None else torch.where(union[:, None], torch.maximum(y, y[perm]), mixed)
        if ls:
            y = y * (1 - ls) + 0.5 * ls
        return F.binary_cross_entropy_with_logits(logits, y, pos_weight=weights)
    if mix is None:
        return F.cross_entropy(logits, y, weight=weights, label_smoothing=ls)
    lam, perm = mix
    a = F.cross_entropy(logits, y, weight=weights, label_smoothing=ls, reduction="none")
    b = F.cross_entropy(logits, y[perm], weight=weights, label_smoothing=ls, reduction="none")
    if weights is None:
        return (lam * a + (1 - lam) * b).mean()
    # weighted mean, as F.cross_entropy's own reduction: divide by the summed row weights
    wa, wb = weights[y], weights[y[perm]]
    return (lam * a + (1 - lam) * b).sum() / (lam * wa + (1 - lam) * wb).sum()
