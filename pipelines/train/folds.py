"""Cross-validation: `train.folds: K` (or the folds of `data.fold_column`).

The labelled examples outside the test split are cut into K folds, stratified by label and
seeded (or taken from the data's own fold column, which keeps clips cut from one recording in
one fold, as ESC-50 and UrbanSound8K publish). Fold i trains on the others, chooses its epoch on
fold i and is scored on it: `fold-<i>/` holds its run. metrics.json gains `cv`: each fold's
scores, their mean and standard deviation, and the confusion matrix of every held-out
prediction pooled. This is how results on such sets are published, so they compare with papers.

The saved model (`train.folds_final`):
    refit      one model trained on all folds for the folds' median best epoch (no validation
               is left to choose one); its baseline is fitted beside it, not blended in
    ensemble   the K fold models averaged (`train.ensemble`'s model file), the baseline refitted
               on all folds at their median C and blended in at the folds' mean weight
Either way the temperature and the abstention min_score are fitted on the out-of-fold scores:
every non-test clip scored by the one fold model that did not train on it (each fold's blended
network, before its own temperature), K times the clips one validation split would give.
"""

from __future__ import annotations

import json
import logging
import statistics
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from attn.errors import ConfigError, Interrupted

from ..data.prepared import PreparedData
from ..data.sources import Item
from ..fsutil import atomic_write_text
from ..infer.calibration import ClipScores, calibrate_scores
from ..recipe.config import Recipe
from ..store.rundir import CHECKPOINT, METRICS, MODEL, RECIPE, drop_checkpoint, fold_dir, start_run
from .ensemble import assemble
from .model import TrainResult, train_model

log = logging.getLogger("attn")


def assign_folds(items: list[Item], recipe: Recipe, warn: bool = True) -> dict[str, list[Item]]:
    """{fold name: items}: data.fold_column's values, else `train.folds` stratified folds (each
    label's items, shuffled by data.split_seed, dealt round-robin)."""
    if recipe.data.fold_column:
        unnamed = [it for it in items if it.fold is None]
        if unnamed:
            raise ConfigError(f"{unnamed[0].where}: empty data.fold_column {recipe.data.fold_column!r} "
                              f"({len(unnamed)} rows): every training row needs a fold")  # fmt: skip
        folds: dict[str, list[Item]] = defaultdict(list)
        for it in items:
            folds[str(it.fold)].append(it)
        if len(folds) < 2:
            raise ConfigError(f"data.fold_column {recipe.data.fold_column!r} names {len(folds)} fold: need 2 or more")
        if recipe.train.folds and recipe.train.folds != len(folds):  # --folds K was silently overridden
            raise ConfigError(f"train.folds {recipe.train.folds} (--folds) but data.fold_column "
                              f"{recipe.data.fold_column!r} names {len(folds)} folds: give one of them")  # fmt: skip
        if warn:
            _warn_missing_classes(folds)
        return dict(sorted(folds.items()))
    k = recipe.train.folds
    rng = np.random.default_rng(recipe.data.split_seed)
    by_label: dict[str | None, list[Item]] = defaultdict(list)
    for it in sorted(items, key=lambda it: it.source):
        by_label[it.label].append(it)
    folds = {str(i + 1): [] for i in range(k)}
    start = 0
    for label in sorted(by_label, key=str):
        group = [by_label[label][i] for i in rng.permutation(len(by_label[label]))]
        for j, it in enumerate(group):  # continue the deal where the last label stopped: even fold sizes
            folds[str((start + j) % k + 1)].append(it)
        start += len(group)
    if any(not f for f in folds.values()):
        raise ConfigError(f"train.folds: {k} folds of {len(items)} examples leave a fold empty")
    return folds


def _again(run_dir: Path) -> str:
    """What to do after an interrupted cross-validation run (its folds and final model are fresh
    models each: there is no one state to go on from)."""
    return (
        f"a cross-validation run cannot be resumed; train it again: attn train {run_dir / RECIPE} --out NEW_DIR "
        f"(or remove {run_dir} first)"
    )


def _warn_missing_classes(folds: dict[str, list[Item]]) -> None:
    """A fold whose held-out examples include a class no other fold has: its model never saw that
    class, so its held-out score (and the folds' mean) says little (data.fold_column's folds are
    the user's; stratified folds deal every class round the folds)."""
    for name, held in folds.items():
        seen = {lab for other, items in folds.items() if other != name for it in items
                for lab in (it.labels if it.labels is not None else (it.label,))}  # fmt: skip
        missing = sorted({lab for it in held for lab in (it.labels if it.labels is not None else (it.label,))}
                         - seen, key=str)  # fmt: skip
        if missing:
            log.warning(
                "fold %s holds the only examples of %s: its model trains without them, so its held-out "
                "score (and the folds' mean) says little about them",
                name,
                ", ".join(map(str, missing)),
            )


def check_alone(recipe: Recipe, distributed: bool = False, resuming: bool = False) -> None:
    """Cross-validation runs alone: not within an ensemble, under torchrun or as a resumed run."""
    if recipe.train.ensemble > 1 or distributed or resuming:
        raise ConfigError("train.folds (cross-validation) runs alone: not with train.ensemble, torchrun or --resume")


def check_folds(recipe: Recipe, prepared: PreparedData, distributed: bool = False) -> None:
    """The cross-validation's configuration errors before a run folder exists (exit 2 means
    nothing was done): what it cannot run with, and folds the data cannot give."""
    check_alone(recipe, distributed)
    assign_folds(prepared.splits["train"] + prepared.splits["val"], recipe, warn=False)


def train_folds(recipe: Recipe, prepared: PreparedData, run_dir: Path, *, device, callbacks=None,
                auto: dict[str, Any] | None = None) -> TrainResult:  # fmt: skip
    """One model per fold, then the saved model (see the module docstring)."""
    pool = prepared.splits["train"] + prepared.splits["val"]
    folds = assign_folds(pool, recipe)
    ensemble = recipe.train.folds_final == "ensemble"
    if ensemble and prepared.tokenizer is None and recipe.modality == "text":
        from ..data.text import fit_tokenizer

        # one tokenizer for every member, so one token id means one token in all of them (the
        # training texts of all folds: a fold model's held-out words get ids it never trains)
        prepared = prepared.with_tokenizer(fit_tokenizer(recipe.features, [it.source for it in pool]))
    member = recipe.model_copy(update={"train": recipe.train.model_copy(update={"folds": 0, "refit": False})})
    rows, results, confusion = [], [], None
    for i, (name, held) in enumerate(folds.items()):
        keep = {id(it) for it in held}
        split = {"train": [it for it in pool if id(it) not in keep], "val": held, "test": prepared.splits["test"]}
        log.info("fold %s (%d of %d): %d training, %d held-out examples", name, i + 1, len(folds), len(split["train"]),
                 len(held))  # fmt: skip
        fdir = start_run(fold_dir(run_dir, name))
        try:
            r = train_model(member, PreparedData(split, prepared.labels, prepared.tokenizer), fdir,
                            device=device, callbacks=callbacks, point_latest=False, score_val=True)  # fmt: skip
        except Interrupted:  # its "resume fold-N" hint would finish one fold as a run of its own
            raise Interrupted(f"interrupted in fold {name} ({i + 1} of {len(folds)}): {_again(run_dir)}") from None
        drop_checkpoint(fdir)  # a cross-validation run is never resumed: its resume state is dead weight
        results.append(r)
        rep = r.val_report or {}
        rows.append({"fold": name, "accuracy": rep.get("accuracy"), "macro_f1": rep.get("macro_f1"),
                     "count": rep.get("count"), "best_epoch": r.best_epoch,
                     **({"thresholds": r.thresholds} if r.thresholds else {})})  # fmt: skip
        cm = np.asarray(rep["confusion"]) if "confusion" in rep else None  # none for multi-label
        confusion = cm if confusion is None else confusion + cm
        log.info("fold %s: held-out accuracy %.4f, macro-F1 %.4f", name, rows[-1]["accuracy"], rows[-1]["macro_f1"])
    cv = _summary(rows, confusion, list(prepared.labels))
    given = _fitted_on_folds(results, recipe)
    whole = PreparedData({"train": pool, "val": [], "test": prepared.splits["test"]}, prepared.labels,
                         prepared.tokenizer)  # fmt: skip
    if ensemble:
        log.info("cross-validation: accuracy %.4f +- %.4f over %d folds; the saved model is their ensemble",
                 cv["accuracy_mean"], cv["accuracy_std"], len(rows))  # fmt: skip
        result = _fold_ensemble(recipe, whole, run_dir, device, folds, results, given)
    else:
        epochs = max(1, int(statistics.median(r["best_epoch"] for r in rows)))
        log.info("cross-validation: accuracy %.4f +- %.4f over %d folds; the saved model trains on all of them "
                 "for %d epoch%s (the folds' median best epoch)", cv["accuracy_mean"], cv["accuracy_std"], len(rows),
                 epochs, "" if epochs == 1 else "s")  # fmt: skip
        final = recipe.model_copy(update={"train": recipe.train.model_copy(
            update={"folds": 0, "refit": False, "epochs": epochs, "patience": 0})})  # fmt: skip
        try:
            blend = {"C": given["C"], "weight": given["blend_weight"]} if "blend_weight" in given else None
            result = train_model(final, whole, run_dir, device=device, callbacks=callbacks, auto=auto,
                                 thresholds=given.get("thresholds"), calibration=given.get("calibration"),
                                 blend_given=blend)  # fmt: skip
        except Interrupted:
            for part in (MODEL, CHECKPOINT):  # the final model half trained: predict must not use it
                (run_dir / part).unlink(missing_ok=True)
            raise Interrupted(f"interrupted in the final model's training, after the folds: "
                              f"{_again(run_dir)}") from None  # fmt: skip
    drop_checkpoint(run_dir)  # the final model's (for a fine-tuned encoder, ~4x its model file)
    metrics_path = run_dir / METRICS
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    metrics["cv"] = cv
    atomic_write_text(metrics_path, json.dumps(metrics, indent=2) + "\n")
    from ..store.artifact import update_header

    # attn info shows the cross-validation beside the saved model's own test figures
    final_is = "the folds' ensemble" if ensemble else "trained on all folds"
    update_header(run_dir / MODEL, cv={**{k: round(cv[k], 6) for k in ("accuracy_mean", "accuracy_std",
                                                                       "macro_f1_mean", "macro_f1_std")},
                                        "folds": len(rows), "final": final_is})  # fmt: skip
    result.cv = cv
    if result.scored is not None:  # the report's data table: the splits as the recipe lists them
        result.scored = replace(result.scored, splits=prepared.splits)
    return result


def out_of_fold(results: list[TrainResult]) -> ClipScores:
    """Every fold's held-out scores, by the fold model that held them out, one after the other."""
    return ClipScores.concat([r.val_scores for r in results])


def _fitted_on_folds(results: list[TrainResult], recipe: Recipe) -> dict[str, Any]:
    """What validation would choose for the saved model, chosen on the folds instead: T and
    min_score on the out-of-fold scores; multi-label thresholds, the baseline's C and the blend
    weight from each fold's own choice on its held-out fold (the mean; C: the median)."""
    given: dict[str, Any] = {}
    chosen = [r.thresholds for r in results if r.thresholds]
    if chosen:  # multi-label: each fold's, on its held-out set
        given["thresholds"] = np.mean(chosen, axis=0).round(4).tolist()
    elif all(r.val_scores is not None for r in results):
        oof = out_of_fold(results)
        what = (f"out-of-fold: each of the {len(oof)} non-test examples scored by the one of the {len(results)} "
                "fold models that did not train on it")  # fmt: skip
        given["calibration"] = calibrate_scores(oof.logits, oof, recipe, fitted_on=what)
    bases = [r.baseline for r in results if r.baseline]
    if bases:
        given["C"] = float(statistics.median(b["C"] for b in bases))
        given["blend_weight"] = round(float(np.mean([b.get("blend_weight", 0.0) for b in bases])), 4)
    return given


def _fold_ensemble(recipe: Recipe, whole: PreparedData, run_dir: Path, device, folds, results, given) -> TrainResult:
    """The fold models as one `train.ensemble` model in run_dir (the ensemble's file format)."""
    as_ensemble = recipe.model_copy(update={"train": recipe.train.model_copy(update={"ensemble": len(folds)})})
    rows = [{"fold": name, "seed": recipe.train.seed, "best_epoch": r.best_epoch, "epochs": r.epochs_run,
             "seconds": round(r.seconds, 1), "test_accuracy": (r.metrics or {}).get("accuracy"),
             "val_accuracy": (r.val_report or {}).get("accuracy")}
            for name, r in zip(folds, results, strict=True)]  # fmt: skip
    dirs = [fold_dir(run_dir, name) for name in folds]
    result = assemble(as_ensemble, whole, run_dir, device, rows, dirs, given=given)
    result.best_epoch = int(statistics.median(r.best_epoch for r in results))
    return result


def _summary(rows: list[dict[str, Any]], confusion, labels: list[str]) -> dict[str, Any]:
    acc = [r["accuracy"] for r in rows]
    f1 = [r["macro_f1"] for r in rows]
    return {
        "folds": rows,
        "accuracy_mean": float(np.mean(acc)),
        "accuracy_std": float(np.std(acc)),
        "macro_f1_mean": float(np.mean(f1)),
        "macro_f1_std": float(np.std(f1)),
        "labels": labels,
        "confusion": None if confusion is None else confusion.tolist(),  # pooled over the held-out folds
    }
