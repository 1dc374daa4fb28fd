"""`unknown` for inputs unlike the training data: fitting `attn.models.novelty.Novelty` (issue 20).

A closed-set classifier's top score cannot say "none of these": ESC-10's model calls spoken
digits clock_tick with a score of 0.75. `train.abstain.novelty: 0.95` adds a second check. The
bank is the saved model's embeddings of the clips it was trained on (train, or train + val after
a refit; at most MAX_BANK of them, drawn with the recipe's seed); an input's similarity is the
cosine to its k-th nearest bank clip (`train.abstain.neighbors`, default 1). Its threshold keeps
that share of in-domain clips the bank never saw:
- validation clips, when validation is held out from the saved model (no refit);
- after a refit (validation is in the bank), each bank clip against the others (leave one out).
  Training clips sit closer to each other than unseen ones do, so this threshold is a little
  strict: it keeps somewhat fewer than the share of new in-domain clips.
The test split never takes part. Predict answers `unknown` below the threshold, whatever the score.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from attn.models.novelty import Novelty, kth_similarity, unit_rows

log = logging.getLogger("attn")

MAX_BANK = 4096  # training clips kept: (MAX_BANK, D) float16 in the model file


def embed_batch(model, x, lengths):
    """The vectors (B, D) float32 each window's prediction rests on: the network's penultimate
    layer (`Backbone.forward_features`), through the model's front end; an ensemble concatenates
    its members' vectors, a blended or tempered model gives its network's. Torch in, numpy out."""
    return embed_tensor(model, x, lengths).cpu().numpy()


def embed_tensor(model, x, lengths):
    """`embed_batch` as a float32 torch tensor (B, D) on the model's device (traceable: `attn
    export` puts it in the graph as the "embedding" output)."""
    import torch

    net = getattr(model, "network", model)  # a Blend's (or Tempered's) network
    members = list(getattr(net, "members", [net]))  # an Ensemble's members
    parts = []
    for m in members:
        feats, flen = m.frontend(x, lengths)  # (B, F, T)
        parts.append(m.backbone.forward_features(feats.transpose(1, 2), flen).float())
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def logits_and_embedding(model, x, lengths):
    """One forward pass of `model` for both its logits (B, K) and the `embed_tensor` vectors
    (B, D) float32 (torch tensors), where two calls would run every network twice. Every
    backbone's output is `head(forward_features(...))` (`models.base.Backbone`), so a pre-hook
    on each member's head catches the pooled vector on its way in."""
    import torch

    net = getattr(model, "network", model)
    members = list(getattr(net, "members", [net]))
    heads = [getattr(getattr(m, "backbone", None), "head", None) for m in members]
    if any(not isinstance(h, torch.nn.Module) for h in heads):  # not a Classifier: two passes
        return model(x, lengths), embed_tensor(model, x, lengths)
    seen: list = [None] * len(heads)

    def catch(i):
        def hook(_module, args):
            seen[i] = args[0]

        return hook

    handles = [h.register_forward_pre_hook(catch(i)) for i, h in enumerate(heads)]
    try:
        logits = model(x, lengths)
    finally:
        for h in handles:
            h.remove()
    if any(v is None for v in seen):  # a head the forward never reached
        return logits, embed_tensor(model, x, lengths)
    parts = [v.float() for v in seen]  # each (B, D_i)
    return logits, parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def clip_embeddings(model, ws, device, batch_size: int = 64) -> np.ndarray:
    """(N, D): each clip of the WindowSet `ws` as the mean of its heard windows' `embed_batch`
    vectors (`WindowSet.heard`: the windows its score rests on; a long recording's quiet stretches
    would otherwise pull its vector toward silence, which predict's novelty check, `attn embed`
    and the bank must all agree on)."""
    import torch

    model.eval()
    out = []
    with torch.inference_mode():
        for batch in ws.batches(ws.all_windows, batch_size):
            batch = batch.to(device)
            out.append(embed_batch(model, batch.x, batch.lengths))
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    win = np.concatenate(out)  # (W, D)
    clip = ws.all_windows[:, 0]
    heard = getattr(ws, "heard", None)
    if heard is not None:  # every clip keeps its loudest window, so none is left empty
        win, clip = win[heard], clip[heard]
    sums = np.zeros((len(ws), win.shape[1]), dtype=np.float64)
    np.add.at(sums, clip, win)
    return (sums / np.maximum(np.bincount(clip, minlength=len(ws)), 1)[:, None]).astype(np.float32)


def fit_novelty(model, data, recipe, device, refit: bool) -> Novelty | None:
    """The novelty check for `model`, the model to save (already refitted when `refit`), from its
    training clips and, without a refit, the validation clips (see the module doc); None when the
    recipe does not ask for one."""
    keep, k = recipe.train.abstain.novelty, recipe.train.abstain.neighbors
    if keep is None:
        return None
    if data.train.multi_label:
        log.warning("train.abstain.novelty is for single-label models; a multi-label model answers no labels "
                    "when no class passes its threshold, and stores no novelty check")  # fmt: skip
        return None
    held_out = data.val if len(data.val) and not refit else None
    seen = data.train.merged(data.val) if refit and len(data.val) else data.train
    emb = clip_embeddings(model, seen, device)
    if len(emb) > MAX_BANK:
        emb = emb[np.sort(np.random.default_rng(recipe.train.seed).choice(len(emb), MAX_BANK, replace=False))]
    if len(emb) < 2:
        log.warning("train.abstain.novelty: %d training clip(s), too few to judge novelty; no check stored", len(emb))
        return None
    bank = unit_rows(emb).astype(np.float16).astype(np.float32)  # as the model file will hold it
    if held_out is not None:
        sims, on = Novelty(bank, 0.0, k).similarity(clip_embeddings(model, held_out, device)), "validation"
    else:
        sims = kth_similarity(bank, unit_rows(bank), k, leave_one_out=True)
        on = "training clips, leave one out" + (" (validation is in the refit's training data)" if refit else "")
    # At least `keep` of them reach it; rounded down to the 6 places the header keeps, so they still do.
    threshold = np.floor(float(np.quantile(sims, 1.0 - keep, method="lower")) * 1e6) / 1e6
    info: dict[str, Any] = {"min_similarity": float(threshold), "neighbors": k, "keep": keep, "bank": len(bank),
                            "fitted_on": on, "kept": float((sims >= threshold).mean())}  # fmt: skip
    log.info("abstain: novelty threshold %.4f (cosine to the %s nearest of %d training clips; keeps %.1f%% of %s)",
             threshold, _nth(k), len(bank), 100 * info["kept"], on)  # fmt: skip
    return Novelty(bank, threshold, k, info)


def _nth(k: int) -> str:
    return {1: "1st", 2: "2nd", 3: "3rd"}.get(k, f"{k}th")


def split_similarity(model, ws, device) -> tuple[np.ndarray, Novelty] | None:
    """(similarities (N,) of the clips of `ws`, the check) for a model with a novelty check, else None."""
    nov = getattr(model, "novelty", None)
    return None if nov is None else (nov.similarity(clip_embeddings(model, ws, device)), nov)


def novelty_report(probs: np.ndarray, y: np.ndarray, sims: np.ndarray, novelty: Novelty,
                   min_score: float | None) -> dict[str, Any]:  # fmt: skip
    """metrics.json's `abstention.novelty`: of labelled clips with scores (N, K) and similarities
    (N,), the share the novelty check keeps, and the share answered (kept and top score >= the
    min score) with its accuracy."""
    kept = sims >= novelty.min_similarity
    answered = kept & (probs.max(1) >= (min_score if min_score is not None else 0.0))
    correct = probs.argmax(1) == y
    return {"min_similarity": novelty.min_similarity, "neighbors": novelty.neighbors, "kept": float(kept.mean()),
            "coverage": float(answered.mean()), "answered": int(answered.sum()),
            "accuracy": float(correct[answered].mean()) if answered.any() else None}  # fmt: skip


def novelty_for(loaded, keep: float, neighbors: int = 1) -> Novelty:
    """A novelty check for an already trained model (`loaded`), fitted on the data its recipe
    names as training with `train.abstain.novelty: keep` would have (its header says whether it
    was refitted on train + val). The caller stores it (`Model.fit_novelty`)."""
    from pydantic import ValidationError

    from attn.errors import ConfigError, InputError

    from ..data.prepared import load_datasets, prepare_data
    from ..recipe.config import AbstainConfig

    try:
        abstain = AbstainConfig.model_validate({**loaded.recipe.train.abstain.model_dump(), "novelty": keep,
                                                "neighbors": neighbors})  # fmt: skip
    except ValidationError as e:
        err = e.errors()[0]
        raise ConfigError(f"novelty {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
    recipe = loaded.recipe.model_copy(update={"train": loaded.recipe.train.model_copy(update={"abstain": abstain})})
    if recipe.data.multi_label:
        raise ConfigError("a novelty check is for single-label models")
    data = load_datasets(recipe, prepare_data(recipe))
    refit = bool(((loaded.header.get("train") or {}).get("data") or {}).get("refit"))
    check = fit_novelty(loaded.model, data, recipe, loaded.device, refit)
    if check is None:
        raise InputError("too few training clips to fit a novelty check")
    return check
