"""`attn evaluate`: a trained model against labelled data -> the metrics of metrics.json.

`evaluation_report` turns window logits into those metrics for every caller: `attn evaluate`,
training's validation and final test, and the ensemble.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from typing import Any

import numpy as np

from attn.errors import ConfigError, InputError

from ..data.batching import WindowSet
from ..data.items import label_index
from ..recipe.config import Recipe
from .inference import aggregate, softmax
from .metrics import classification_report

log = logging.getLogger("attn")


def evaluation_items(loaded, data: str | None, recipe: Recipe | None, split: str | None):
    """The labelled items to score: a folder or manifest given on the command line, else the
    test split of `recipe` (or of the recipe stored in the model)."""
    from ..data.sources import read_manifest, scan_folder, split_items

    model_recipe: Recipe = loaded.recipe
    if data is not None:  # read as `recipe` (the stored one with --set items) says: its columns, extensions
        reading = recipe or model_recipe
        if os.path.isdir(data) and model_recipe.modality == "text":
            raise ConfigError(f"{data}: a text model evaluates a CSV/TSV/JSONL manifest, not a folder")
        if os.path.isdir(data):
            items = scan_folder(data, reading.data.extensions)
        elif os.path.isfile(data):
            items = read_manifest(data, reading.data, model_recipe.modality)
        else:
            raise ConfigError(f"{data}: no such file or folder")
        if split is not None:
            if not any(it.split for it in items):
                raise ConfigError(f"{data}: --split {split} given but the data has no split column")
            items = [it for it in items if it.split == split]
        return items, data
    source = recipe or model_recipe
    from ..data.sources import list_items

    if split not in (None, "train", "val", "test"):
        raise ConfigError(f"split {split!r}: use train, val or test")
    d, wanted = source.data, split or "test"
    if d.train is not None and getattr(d, wanted) is not None and wanted != "train":
        # a split given as its own file is read alone: `--recipe text.yaml --set data.test=t.csv` was
        # refused for the shipped recipe's placeholder train file, which scoring never reads
        items = read_manifest(getattr(d, wanted), d, source.modality, base=d.root, split_column=False)
        where = f"{'recipe' if recipe else 'stored recipe'} {wanted} split"
        items = [replace(it, split=wanted) for it in items]
        if recipe is None:
            check_split_unchanged(loaded, wanted, items, where)
        return items, where
    splits = split_items(list_items(source.data, source.modality), source.data)
    if split == "val" and ((loaded.header.get("train") or {}).get("data") or {}).get("refit"):
        log.warning("the model was refitted on train + val: its scores on the val split are on its own training "
                    "data (the held-out figures are the first phase's, in train.log and metrics.json)")  # fmt: skip
    where = f"{'recipe' if recipe else 'stored recipe'} {wanted} split"
    if recipe is None:
        check_split_unchanged(loaded, wanted, splits[wanted], where)
    return splits[wanted], where


def check_split_unchanged(loaded, split: str, items: list, where: str) -> bool:
    """Warn when the stored recipe's `split` is no longer the one the model was held out from:
    data added to a folder or manifest that is carved into splits moves examples between them
    (20 FSDD clips added put 15 of the model's training clips in its test split). False when it
    changed; True when it is the same, or the model file is from before splits were kept."""
    from ..data.fingerprint import split_fingerprints

    then = ((loaded.header.get("train") or {}).get("splits") or {}).get(split)
    if then is None:
        return True
    now = split_fingerprints({split: items}, loaded.recipe.modality)[split]
    if now == then:
        return True
    log.warning("%s: not the %s split this model was %s when it trained (%s examples then, %d now: the data "
                "changed since, and examples it trained on may be among them); the figures below may be "
                "optimistic", where, split, "scored on" if split == "test" else "trained with",
                then.split(":")[0], len(items))  # fmt: skip
    return False


def evaluate(
    loaded,
    data: str | None = None,
    recipe: Recipe | None = None,
    split: str | None = None,
    aggregate_how: str = "mean",
    batch_size: int = 64,
    min_score: float | None = None,
    threshold: float | None = None,
) -> dict[str, Any]:
    """Score `loaded` (a LoadedModel) on labelled data; returns metrics.json-shaped data plus
    `skipped` (files that could not be read). A calibrated model (or any, given `min_score`)
    adds `calibration` (ECE) and `abstention` (coverage and accuracy at `min_score`, default
    the stored one; with a novelty check, `abstention.novelty`: coverage and accuracy with it).
    A multi-label model is scored at `threshold` for every class when given (as predict
    --threshold answers), else at its stored thresholds."""
    from .calibration import check_min_score
    from .multilabel import VOTE_MULTI, model_thresholds, single_label_options

    check_min_score(min_score)
    single_label_options(loaded, min_score, None)
    thresholds = model_thresholds(loaded, threshold)  # checked before the data is read
    items, where = evaluation_items(loaded, data, recipe, split)
    if not items:
        raise InputError(f"{where}: no labelled examples to evaluate")
    index = label_index(loaded.labels)
    multi = (recipe or loaded.recipe).data.multi_label
    if multi and aggregate_how == "vote":
        raise ConfigError(VOTE_MULTI)
    unknown = [it for it in items if (it.label not in index if not multi else set(it.labels or ()) - set(index))]
    if unknown and multi:  # as training treats a label only in val/test: ignored there, and said
        names = sorted({lab for it in unknown for lab in it.labels if lab not in index})
        shown = ", ".join(map(repr, names[:5])) + (" ..." if len(names) > 5 else "")
        log.warning("%s: label(s) %s are not ones the model was trained on: ignored in %d example(s)", where, shown,
                    len(unknown))  # fmt: skip
    elif unknown:
        first = unknown[0]
        names = sorted({lab for it in unknown for lab in (it.labels if multi else (it.label,)) if lab not in index})
        raise InputError(
            f"{first.where or where}: label {names[0]!r} is not one the model was trained on "
            f"({len(unknown)} example(s) with unknown label(s) {', '.join(map(repr, names[:5]))}; "
            f"model labels: {', '.join(loaded.labels)})"
        )
    ws, _, skipped, logits = score_items(loaded, items, (recipe or loaded.recipe).data, where, batch_size)
    rep = evaluation_report(logits, ws, loaded.labels, aggregate_how, thresholds=thresholds)
    facts = getattr(loaded.model, "calibration", None)
    if not multi and (facts is not None or min_score is not None):  # single-label scores only
        from .calibration import calibration_report
        from .novelty import split_similarity

        rep.update(calibration_report(logits, ws, facts or {"temperature": 1.0}, min_score,
                                      novelty=split_similarity(loaded.model, ws, loaded.device)))  # fmt: skip
    if loaded.baseline is not None:  # scored as the model is: the same aggregation, and --threshold if given
        rep["baseline"] = baseline_report(loaded, ws, batch_size, aggregate_how, threshold)
    rep["skipped"] = skipped
    rep["data"] = where
    # which split was scored, as metrics.json names it (a DATA file: its rows, or those of --split)
    rep["split"] = split or ("test" if data is None else "all rows")
    return rep


def score_items(loaded, items: list, data_cfg, where: str, batch_size: int = 64):
    """Run `loaded` over labelled items: (WindowSet, the items it holds, how many files could not be
    read, window logits (W, K)). `data_cfg` says how to read audio files; `where` names the data in
    an error."""
    from ..data.clips import load_clips
    from ..data.prepared import targets
    from .inference import window_logits

    f = loaded.recipe.features
    skipped = 0
    if loaded.recipe.modality == "text":
        from ..data.text import encode_texts

        ids, cut = encode_texts(loaded.tokenizer, [it.source for it in items], f.tokenizer.max_len)
        ws = WindowSet(ids, targets(items, loaded.labels), f.tokenizer.max_len, f.tokenizer.max_len,
                       truncate=True)  # fmt: skip
        if cut:
            log.info("%d text(s) cut to max_len=%d tokens", cut, f.tokenizer.max_len)
    else:
        loaded_clips = load_clips(items, data_cfg, f.sample_rate)
        for err in loaded_clips.errors:
            log.warning("skipped: %s", err)
        if not loaded_clips.items:
            raise InputError(f"{where}: none of the {len(items)} files could be read ({loaded_clips.errors[0]})")
        items = loaded_clips.items
        ws = WindowSet(loaded_clips.clips, targets(items, loaded.labels), f.frame_samples,
                       f.hop_samples)  # fmt: skip
        skipped = len(loaded_clips.errors)
    return ws, items, skipped, window_logits(loaded.model, ws, loaded.device, batch_size)


def baseline_report(loaded, ws, batch_size: int = 64, how: str = "mean", threshold: float | None = None) -> dict:
    """The model file's baseline scored on the same windows: kind, accuracy, macro_f1. Multi-label:
    at its own stored thresholds (as metrics.json scored it), or at `threshold` for every class."""
    from .inference import window_logits

    info = loaded.model.info
    thresholds = info.get("thresholds") if threshold is None else np.full(len(loaded.labels), float(threshold))
    rep = evaluation_report(window_logits(loaded.baseline, ws, loaded.device, batch_size), ws, loaded.labels, how,
                            thresholds=thresholds)  # fmt: skip
    out = {"kind": info.get("kind"), "accuracy": rep["accuracy"], "macro_f1": rep["macro_f1"]}
    return out | ({"macro_map": rep["macro_map"]} if "macro_map" in rep else {})


def evaluation_report(logits: np.ndarray, ws: WindowSet, labels: list[str], how: str = "mean",
                      thresholds=None) -> dict[str, Any]:  # fmt: skip
    """Metrics for window logits over a labelled WindowSet (clip level, plus window level);
    multi-label targets: `multilabel.multilabel_report` at `thresholds` (default 0.5)."""
    clip = ws.all_windows[:, 0]
    y = ws.labels
    if ws.multi_label:
        from .multilabel import multilabel_evaluation

        return multilabel_evaluation(logits, ws, labels, thresholds, how)
    if len(logits) == 0:
        return {**classification_report([], [], labels), "loss": float("nan")}
    probs = softmax(logits)
    yw = y[clip]
    ll = -np.log(np.clip(probs[np.arange(len(clip)), yw], 1e-12, None))
    clip_scores = aggregate(probs, clip, len(ws), how, heard=ws.heard)
    rep = classification_report(y, clip_scores.argmax(1), labels)
    rep["loss"] = float(ll.mean())
    if len(clip) > len(ws):
        rep["windows"] = int(len(clip))
        rep["window_accuracy"] = float((probs.argmax(1) == yw).mean())
    return rep
