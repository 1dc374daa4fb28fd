"""Train one model: `train_model(recipe, prepared, run_dir)`, the seam every caller goes through
(`attn train`, each member of an ensemble, `attn.train` from Python, a tuner's trials).

In order: load the splits (`load_datasets`), build the model (`init_model`: seeded, with word
vectors and masked-token pretraining when the recipe asks), fit it with a checkpoint and, on
improvement, the artifact after every epoch or every few short ones (`EpochSaver`), evaluate
the best weights on the test split, else validation (`final_metrics`), and write the final
artifact.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from attn.errors import ConfigError, Interrupted, OutputError

from ..data.prepared import Datasets, PreparedData
from ..fsutil import atomic_write_text
from ..recipe.config import Recipe
from ..ship.examples import Scored
from ..store import rundir
from ..store.rundir import METRICS, MODEL
from .distributed import World, resume_command
from .epoch_saver import EpochSaver
from .init_model import init_model
from .refit import interruptible_finish, interruptible_refit, refit_on_train_and_val, should_refit

log = logging.getLogger("attn")


@dataclass
class TrainResult:
    """What a training run wrote and how it went (`summary()` is what `attn train` prints)."""

    run_dir: Path
    model_path: Path
    metrics: dict[str, Any] | None  # metrics.json: on the test split, else validation; None without either
    history: list[dict[str, Any]]  # one record per epoch (history.jsonl)
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    seconds: float
    labels: list[str]
    parameters: int
    thresholds: list[float] | None = None  # multi-label: per-class decision thresholds stored in the model
    data: dict[str, Any] = field(default_factory=dict)  # examples per split, skipped files, vectors, ...
    members: list[dict[str, Any]] = field(default_factory=list)  # train.ensemble: one entry per member
    baseline: dict[str, Any] | None = None  # the classical baseline's scores (train.baseline)
    val_report: dict[str, Any] | None = None  # with score_val: the saved model on validation
    val_scores: Any = None  # with score_val: its untempered validation scores (a calibration.ClipScores)
    cv: dict[str, Any] | None = None  # train.folds: each fold's held-out scores, their mean and spread
    # What training scored for report.html (the evaluated split's windows and logits); the run
    # drops it once the report is written, so a returned result does not hold decoded audio.
    scored: Scored | None = field(default=None, repr=False)
    tokenizer: Any = field(default=None, repr=False)  # text: the tokenizer the model was trained with

    def summary(self) -> dict[str, Any]:
        m = self.metrics or {}
        return {
            "run_dir": str(self.run_dir),
            "model": str(self.model_path),
            "test_accuracy": m.get("accuracy"),
            "test_macro_f1": m.get("macro_f1"),
            "best_epoch": self.best_epoch,
            "epochs": self.epochs_run,
            "stopped_early": self.stopped_early,
            "train_seconds": round(self.seconds, 1),
            "parameters": self.parameters,
            "labels": self.labels,
            "data": self.data,
            **({"baseline": self.baseline} if self.baseline else {}),
            **({"members": self.members} if self.members else {}),
            **({"cv": {k: v for k, v in self.cv.items() if k != "confusion"}} if self.cv else {}),
        }


def train_model(
    recipe: Recipe,
    prepared: PreparedData,
    run_dir: Path,
    *,
    device,
    callbacks=None,
    resume_state: dict[str, Any] | None = None,
    world: World = World(),
    point_latest: bool = True,
    auto: dict[str, Any] | None = None,
    score_val: bool = False,
    thresholds=None,
    calibration: dict[str, Any] | None = None,
    blend_given: dict[str, Any] | None = None,
) -> TrainResult:
    """Train one model of `recipe` (train.ensemble 1) from prepared data in an existing `run_dir`.

    Args:
        device: a torch.device.
        callbacks: `attn.pipelines.train.callbacks.Callbacks` hooks (progress, per-epoch records); an
            exception raised in one stops training, keeping the last saved epoch's checkpoint.
        resume_state: a checkpoint's trainer state: continue from its epoch instead of starting.
        world: the torchrun process group; only rank 0 writes files and reports metrics.
        point_latest: point runs/latest at run_dir when done.
        auto: what `resolve_auto` chose for the recipe's auto keys (kept in the run's facts).
        score_val: also score the saved model on validation (`TrainResult.val_report`: a
            cross-validation fold's held-out scores and confusion matrix).
        thresholds: multi-label: the per-class thresholds to store when there is no validation
            split to choose them on (train.folds' final model: the folds' held-out choices).
        calibration: T and min_score fitted elsewhere, to store instead of fitting them on
            validation (train.folds' final model: fitted on the out-of-fold scores).
        blend_given: {"C", "weight"} chosen elsewhere: the baseline fitted at C and blended in at
            that weight when there is no validation split (train.folds' final model: the folds'
            choices, so the temperature fitted on their blended scores fits the model saved).
    """
    import torch

    from attn.models.calibrated import Tempered

    from ..data.encoder_cache import cache_folder, save_states
    from ..data.prepared import load_datasets
    from ..infer.calibration import calibrate
    from ..infer.novelty import fit_novelty
    from ..recipe.build import count_parameters
    from ..store.artifact import save_model
    from .trainer import Trainer

    if recipe.train.ensemble > 1:
        raise ValueError("train_model trains one model; train.ensemble > 1 goes through train_ensemble")
    data = load_datasets(recipe, prepared)
    given_c = (blend_given or {}).get("C")
    # given thresholds (CV's final model: the folds' mean) score the baseline too: no val is left to choose its own
    baseline = fit_baseline(recipe, data, device, given_c, thresholds) if recipe.train.baseline and world.main else None
    model, facts = init_model(recipe, data, device, fresh=resume_state is None)
    if auto:
        facts["auto"] = auto
    labels = list(data.labels)
    trainer = Trainer(model, recipe.train, data.train, data.val, labels, device, callbacks, world=world)
    if resume_state is not None:
        was = resume_state["state"].get("processes")  # None: a checkpoint from before it was kept
        if was is not None and int(was) != world.size:
            # a run of 2 processes resumed by 1 took twice the steps an epoch at the same rate: its
            # schedule no longer ended where it did (LR 2.4e-4 at the end, not 1e-6); by 3, an epoch at LR 0
            raise ConfigError(f"{run_dir}: this run trained with {was} process(es) (its batch is batch_size x "
                              f"processes, its schedule counts their steps); resume it with {was}: "
                              f"{resume_command(run_dir, int(was))}")  # fmt: skip
        trainer.load_state_dict(resume_state)
    total, trained = count_parameters(model), count_parameters(model, trainable_only=True)
    # on the CPU, the torch threads too: timings on 1 thread and on 2 differ 3x on busy cores
    where = f"cpu ({torch.get_num_threads()} torch thread(s))" if device.type == "cpu" else str(device)
    log.info("model %s: %d parameters%s on %s; %d steps/epoch", recipe.model.name, total,
             f" ({trained} trained)" if trained != total else "", where, trainer.steps_per_epoch)  # fmt: skip
    from ..data.fingerprint import data_fingerprint, split_fingerprints

    split_prints = split_fingerprints(prepared.splits, recipe.modality)  # read once: the model file keeps them too
    fingerprint = data_fingerprint(recipe.data.model_dump(mode="json"), prepared, recipe.modality, True, split_prints)
    saver = EpochSaver(run_dir, recipe, labels, data.tokenizer, write=world.main, data=fingerprint)
    if resume_state is not None:
        saver.rewrite_history(trainer.state.history)
        trainer.saved_epoch = trainer.state.epoch
    try:
        st = trainer.fit(saver)
    except KeyboardInterrupt:
        if not world.main:  # only process 0 saves, so only it knows the epoch on disk
            raise Interrupted(f"interrupted (process {world.rank}); process 0 says which epoch is saved") from None
        if not trainer.saved_epoch:
            raise Interrupted("interrupted during epoch 1, before any epoch finished: nothing to resume") from None
        if trainer.state.epoch >= recipe.train.epochs or trainer.state.done:  # between the last epoch and the finish
            raise Interrupted(
                f"interrupted after the last epoch ({trainer.state.epoch}); state after epoch "
                f"{trainer.saved_epoch} is saved. Finish with: {resume_command(run_dir, world.size)}"
            ) from None
        raise Interrupted(
            f"interrupted during epoch {trainer.state.epoch + 1}; state after epoch {trainer.saved_epoch} is saved. "
            f"Resume with: {resume_command(run_dir, world.size)}"
        ) from None
    except OutputError as e:  # a full disk mid-run: the last checkpoint written is whole (atomic writes)
        if world.main and not trainer.saved_epoch and run_dir.is_dir():
            # epoch 1's network was written but its state was not: a model without blend, calibration or scores
            # that --resume took for a finished run; without it the folder goes, as for any failure in epoch 1
            (run_dir / MODEL).unlink(missing_ok=True)
        if not (world.main and trainer.saved_epoch and run_dir.is_dir()):
            raise
        raise OutputError(f"{e}; state after epoch {trainer.saved_epoch} is saved: once it can be written, resume "
                          f"with: attn train --resume {run_dir}") from None  # fmt: skip

    folder = cache_folder(recipe)
    if folder is not None and world.main:  # the frozen encoder's states, for the next run
        save_states(model.frontend, folder)
    trainer.load_best()
    metrics, blend, val_report, scored, val_scores = None, None, None, None, None
    thresholds = None if thresholds is None else np.asarray(thresholds, dtype=float)
    refit, why = should_refit(recipe, data)
    if refit and world.distributed:
        log.warning("train.refit is skipped under torchrun (one process would refit, not all)")
        refit = False
    with interruptible_finish(run_dir, st.epoch):  # Ctrl-C in the blend, scores or saves: how to finish
        if world.main:  # rank 0 evaluates and writes
            final, blend = with_baseline(
                trainer.model, baseline, data, recipe, device, (blend_given or {}).get("weight")
            )
            # T and min_score, on validation; a multi-label model's sigmoids get per-class thresholds instead
            if calibration is None and not data.train.multi_label:
                calibration = calibrate(final, data, recipe, device)
            elif data.train.multi_label and recipe.train.calibrate:
                log.info("calibration: none for a multi-label model (each class's sigmoid gets a decision threshold "
                         "chosen on validation instead)")  # fmt: skip
            untempered_final = final
            chosen_on = baseline  # validation scores of the baseline validation could judge
            if data.train.multi_label and thresholds is None:  # chosen before a refit: validation is held out here
                from ..infer.multilabel import thresholds_on_val

                thresholds, facts["thresholds"] = thresholds_on_val(final, data, device)
            if refit:  # the blend weight stays the one validation chose before val joined the training data
                with interruptible_refit(run_dir, st.epoch):
                    final, baseline, facts["refit"] = refit_on_train_and_val(
                        recipe, data, st.best_epoch, device, callbacks, baseline, blend, why)  # fmt: skip
                if calibration is not None:  # validation is in the refit's training data: carry the first phase's
                    calibration["fitted_on"] = "validation, first phase (before the refit on train + val)"
            novelty = fit_novelty(final, data, recipe, device, refit)  # on the model saved, after any refit
            if calibration is not None or novelty is not None:
                final = Tempered(final, (calibration or {}).get("temperature", 1.0), calibration or {}, novelty)
            metrics, scored = final_metrics(final, data, run_dir, device, baseline, blend, recipe=recipe,
                                            listed=prepared.splits, thresholds=thresholds)  # fmt: skip
            if chosen_on is not None:
                compare_with_baseline(st.history, chosen_on, blend, recipe.train.monitor)
            warn_one_class(metrics, labels, recipe.train)
            extra = {
                "epoch": st.best_epoch,
                "metrics": header_metrics(metrics),
                "train": {
                    "epochs_run": st.epoch,
                    "seconds": round(st.seconds, 1),
                    "data": facts,
                    **run_place(device),
                    "splits": split_prints,
                },
                **({} if thresholds is None else {"thresholds": [float(t) for t in thresholds]}),
            }
            save_model(run_dir / MODEL, final, recipe, labels, extra, tokenizer=data.tokenizer,
                       plain_recipe=saver.checkpoint.plain_recipe)  # fmt: skip
            if score_val and len(data.val) and not refit:  # a refit trained on validation: no held-out scores
                from ..infer.calibration import ClipScores
                from ..infer.evaluate import evaluation_report
                from ..infer.inference import window_logits

                logits = window_logits(untempered_final, data.val, device)  # (W, K) before T
                val_scores = ClipScores.of(logits, data.val, data.items["val"], run_dir.name)
                t = calibration["temperature"] if calibration is not None else 1.0
                val_report = evaluation_report(logits / t, data.val, labels, thresholds=thresholds)
            if point_latest:
                rundir.point_latest(run_dir)
    return TrainResult(
        run_dir=run_dir,
        model_path=run_dir / MODEL,
        metrics=metrics,
        history=st.history,
        best_epoch=st.best_epoch,
        epochs_run=st.epoch,
        stopped_early=st.stopped_early,
        seconds=st.seconds,
        labels=labels,
        parameters=count_parameters(model),
        data=facts,
        baseline=baseline_facts(baseline, blend),
        val_report=val_report,
        val_scores=val_scores,
        scored=scored,
        thresholds=None if thresholds is None else [float(t) for t in thresholds],
        tokenizer=data.tokenizer,
    )


HEADER_METRICS = ("accuracy", "macro_f1", "count", "split", "multi_label", "micro_f1", "macro_map", "exact_match")


def header_metrics(metrics: dict | None) -> dict | None:
    """The test figures a model file's header keeps (`attn info`): a multi-label model's own too,
    where its "accuracy" (exact-set match) was shown alone."""
    return None if metrics is None else {k: metrics[k] for k in HEADER_METRICS if k in metrics}


def fit_baseline(recipe: Recipe, data: Datasets, device, c: float | None = None, thresholds=None):
    """The classical baseline of `attn.pipelines.train.baseline` on the model's own splits."""
    from .baseline import fit_baseline as fit

    return fit(recipe, data, device, c=c, thresholds=thresholds)


def run_place(device) -> dict[str, Any]:
    """Where a run trained, for the model file: the device, and on the CPU torch's thread count
    (the weights depend on it: float sums run in another order; `attn info` shows it)."""
    import torch

    return {"device": str(device), **({"threads": torch.get_num_threads()} if device.type == "cpu" else {})}


def baseline_facts(baseline, blend: dict[str, Any] | None) -> dict[str, Any] | None:
    """The baseline's scores and the weight it was blended in with (TrainResult.baseline)."""
    if baseline is None:
        return None
    return {**baseline.summary(), "blend_weight": (blend or {}).get("weight", 0.0)}


def with_baseline(network, baseline, data: Datasets, recipe: Recipe, device, given_weight: float | None = None):
    """(the model to save, blend facts or None): the trained network alone, or (`train.blend`) a
    `Blend` of it and the baseline, weight chosen on validation; without a validation split,
    `given_weight` (train.folds' final model: the folds' mean), else 0."""
    from attn.models.linear import Blend

    from ..infer.inference import window_logits
    from .baseline import choose_blend

    if baseline is None:
        return network, None
    weight, facts = 0.0, {}
    if recipe.train.blend and len(data.val):
        amp = device.type == "cuda" and recipe.train.amp
        net = window_logits(network, data.val, device, amp=amp)
        base = window_logits(baseline.module, data.val, device)
        weight, facts = choose_blend(net, base, data.val)
        loss = (f"log-loss {facts['val_log_loss_network']:.4f} -> {facts['val_log_loss_blend']:.4f}, "
                if "val_log_loss_network" in facts else "")  # fmt: skip
        what = "macro_map" if "val_macro_map_network" in facts else "accuracy"  # multi-label: its sigmoids' mAP
        shown = "macro mAP" if what == "macro_map" else what
        log.info("blend: baseline weight %.2f, chosen by validation log-loss (%s%s %.4f -> %.4f)", weight, loss,
                 shown, facts[f"val_{what}_network"], facts[f"val_{what}_blend"])  # fmt: skip
    elif recipe.train.blend and given_weight is not None:
        weight = float(given_weight)
        log.info("blend: baseline weight %.2f, the folds' mean (each chose its own on its held-out fold)", weight)
    return Blend(network, baseline.module, weight, baseline.summary()).eval(), {"weight": weight, **facts}


def compare_with_baseline(history: list[dict[str, Any]], baseline, blend: dict[str, Any] | None,
                          monitor: str = "val_accuracy") -> None:  # fmt: skip
    """One warning line when the network scores below the baseline on validation: by macro-F1
    when the run monitors it (imbalanced classes, where accuracy rewards naming the majority),
    else by accuracy."""
    best = [h for h in history if h.get("best")]
    base = baseline.scores.get("val")
    key, name = ("val_macro_f1", "macro_f1") if monitor == "val_macro_f1" else ("val_accuracy", "accuracy")
    if not best or base is None or key not in best[-1] or name not in base:
        return
    model_score, base_score = best[-1][key], base[name]
    if model_score < round(base_score, 6) - 1e-9:  # history rounds to 6 places: 1/3 there is 0.333333
        weight = (blend or {}).get("weight", 0.0)
        log.warning(
            "the network scores below the %s baseline on validation (%s %.4f vs %.4f)%s; "
            "more epochs, train.augment, or a smaller model may help (test scores: metrics.json)",
            baseline.kind, name.replace("_f1", "-F1"), model_score, base_score,
            f"; the saved model blends the baseline in with weight {weight:.2f}" if weight else "",
        )  # fmt: skip


def warn_one_class(metrics: dict[str, Any] | None, labels: list[str], train=None) -> None:
    """One warning line when the saved model names one class for every scored example of several
    classes: on a 90/10 split it scored 0.90 ('accuracy') without a word, macro-F1 0.47. It
    suggests the settings for imbalanced classes that the run (`train`, resolved) did not use."""
    cm = np.asarray((metrics or {}).get("confusion") or [])
    if metrics is None or metrics.get("multi_label") or cm.ndim != 2 or not cm.size:
        return
    named, true = np.flatnonzero(cm.sum(0)), np.flatnonzero(cm.sum(1))
    if len(named) == 1 and len(true) > 1:
        tries = [f"--set {k}={v}" for k, v, now in (
            ("train.class_weights", "balanced", getattr(train, "class_weights", None)),
            ("train.monitor", "val_macro_f1", getattr(train, "monitor", None))) if now != v]  # fmt: skip
        followed = (
            "it trained with balanced class weights and the macro-F1 monitor: the smaller classes need more examples"
        )
        advice = "try " + " and ".join(tries) if tries else followed
        log.warning(f"the saved model names {labels[int(named[0])]!r} for every one of the {int(cm.sum())} "
                    f"{metrics.get('split', 'test')} examples (accuracy {metrics.get('accuracy', 0):.4f} is that "
                    f"class's share): with classes this imbalanced, {advice}")  # fmt: skip


def final_metrics(
    model,
    data: Datasets,
    run_dir: Path,
    device,
    baseline=None,
    blend=None,
    extra: dict[str, Any] | None = None,
    *,
    recipe: Recipe,
    listed: dict[str, list],
    thresholds=None,
) -> tuple[dict[str, Any] | None, Scored | None]:
    """Metrics of the model to save on `data.eval_split`, written to metrics.json with the
    baseline's scores beside them (and, when blended, the blend weight and the network's own
    scores, and `extra`); None when there is neither a test nor a validation split. With them,
    what the report needs of that scoring (`listed`: the items per split as the recipe lists
    them), so report.html decodes and scores nothing again."""
    from ..infer.evaluate import evaluation_report
    from ..infer.inference import window_logits

    split = data.eval_split
    if split is None:
        log.warning("no test or validation examples: metrics.json not written")
        return None, None
    if split != "test":
        log.warning("no test examples: reporting metrics on the validation split")
    ws = data.split(split)
    logits = window_logits(model, ws, device)  # (W, K)
    metrics = evaluation_report(logits, ws, list(data.labels), thresholds=thresholds)
    metrics["split"] = split
    if getattr(model, "calibration", None) is not None:  # a Tempered model: ECE and coverage on this split
        from ..infer.calibration import calibration_report
        from ..infer.novelty import split_similarity

        metrics.update(calibration_report(logits, ws, model.calibration, novelty=split_similarity(model, ws, device)))
    if baseline is not None:
        metrics["baseline"] = baseline.summary()
    if blend is not None and blend["weight"] > 0:
        net = evaluation_report(window_logits(model.network, ws, device), ws, list(data.labels),
                                thresholds=thresholds)  # fmt: skip
        metrics["blend"] = {**blend, "network_accuracy": net["accuracy"], "network_macro_f1": net["macro_f1"]}
    metrics.update(extra or {})
    atomic_write_text(run_dir / METRICS, json.dumps(metrics, indent=2) + "\n")
    log.info("%s accuracy %.4f, macro-F1 %.4f (%d examples)", split, metrics["accuracy"], metrics["macro_f1"],
             metrics["count"])  # fmt: skip
    if "macro_map" in metrics:
        log.info("%s micro-F1 %.4f, macro mAP %.4f", split, metrics["micro_f1"], metrics["macro_map"])
    scored = None
    if split in data.items:
        scored = Scored(listed, split, ws, data.items[split], logits, list(data.labels), recipe)
    return metrics, scored
