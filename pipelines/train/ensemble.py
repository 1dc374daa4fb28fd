"""`train.ensemble: N`: train N members of one recipe, one after the other, then save them as
one model that averages their class probabilities.

Member i (1-based) is exactly the single run `--seed <train.seed + i - 1>`: it trains in
run_dir/member-<i>/ through the ordinary run code (checkpoints, early stopping, its own
model.attn, history.jsonl and metrics.json). Every member uses the tokenizer the first one
fitted, so one token id means one token in all of them.

With a refit (`train.refit`, decided once for the ensemble) the members first train on the
training split only; validation then judges their ensemble while it is still held out (the
blend weight and the baseline's C, the temperature and min score, multi-label thresholds: kept
in members.json as `given`), and only then does each member train again on train + val for its
own best epoch count, replacing its model.attn. The saved ensemble averages the refitted members
with those choices, and the baseline refitted on train + val at the chosen C.

run_dir/
    model.attn      the ensemble: all members' weights; what `attn predict` uses
    members.json    the recipe, the members finished so far (resume skips those), and with a
                    refit what validation chose and how many members are refitted
    history.jsonl   every member's epochs, each line with its "member"
    metrics.json    the ensemble's test metrics, and each member's
    member-<i>/     member i's own run
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from attn.errors import ArtifactError, Interrupted

from ..data.prepared import PreparedData
from ..fsutil import atomic_write_text
from ..recipe.config import Recipe
from ..store.rundir import (
    CHECKPOINT,
    HISTORY,
    MEMBERS,
    METRICS,
    MODEL,
    drop_checkpoint,
    member_dir,
    point_latest,
    start_run,
)
from .distributed import World, barrier, resume_command
from .model import TrainResult, header_metrics, train_model

log = logging.getLogger("attn")


def read_members(run_dir: Path) -> dict[str, Any]:
    """The ensemble state in run_dir/members.json: the recipe, the labels, the members finished."""
    path = run_dir / MEMBERS
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        missing = [k for k in ("recipe", "labels", "members") if k not in state]
        if missing:
            raise KeyError(missing[0])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ArtifactError(f"{path}: unreadable ensemble state ({e})") from None
    return state


def train_ensemble(
    recipe: Recipe,
    prepared: PreparedData,
    run_dir: Path,
    *,
    device,
    callbacks=None,
    world: World = World(),
    auto: dict[str, Any] | None = None,
) -> TrainResult:
    """Train (or, when members.json exists, continue) an ensemble run: each member through
    `train_model`, then the ensemble's evaluation and artifact."""
    from ..recipe.build import member_recipe
    from ..recipe.load import recipe_to_dict
    from ..store.artifact import load_model
    from ..store.checkpoint import read_checkpoint

    n, labels = recipe.train.ensemble, list(prepared.labels)
    state = {"recipe": recipe_to_dict(recipe), "labels": labels, "members": []}
    if (run_dir / MEMBERS).exists():
        state = read_members(run_dir)
    elif world.main:
        atomic_write_text(run_dir / MEMBERS, json.dumps(state, indent=1) + "\n")
    tok, data_info = prepared.tokenizer, {}
    if tok is None and state["members"] and recipe.modality == "text":  # resumed: member 1's file holds it
        tok = load_model(member_dir(run_dir, 1) / MODEL).tokenizer
    for i in range(len(state["members"]), n):
        mdir, mrec = member_dir(run_dir, i + 1), first_phase(member_recipe(recipe, i))
        log.info("ensemble member %d of %d (train.seed %d)", i + 1, n, mrec.train.seed)
        resume_state = None
        if (mdir / CHECKPOINT).exists():
            ckpt = read_checkpoint(mdir / CHECKPOINT)
            resume_state = ckpt.state
            if tok is None and ckpt.tokenizer is not None:  # member 1, cut mid-training
                tok = ckpt.tokenizer
        elif world.main:
            start_run(mdir, mrec)
        try:
            res = train_model(mrec, prepared.with_tokenizer(tok), mdir, device=device, callbacks=callbacks,
                              resume_state=resume_state, world=world, point_latest=False, auto=auto)  # fmt: skip
        except Interrupted:
            raise Interrupted(
                f"interrupted in ensemble member {i + 1} of {n}; "
                f"{f'members 1-{i} and ' if i > 1 else 'member 1 and ' if i == 1 else ''}member {i + 1}'s "
                f"finished epochs are saved. Resume with: {resume_command(run_dir, world.size)}"
            ) from None
        data_info = res.data  # the same for every member: one split, one tokenizer
        if tok is None:
            tok = res.tokenizer  # the one member 1 fitted, for every later member and the ensemble
        state["members"].append({
            "member": i + 1, "seed": mrec.train.seed, "best_epoch": res.best_epoch, "epochs": res.epochs_run,
            "seconds": round(res.seconds, 1), "test_accuracy": (res.metrics or {}).get("accuracy"),
            "val_accuracy": _best_val(res.history),
        })  # fmt: skip
        if world.main:
            atomic_write_text(run_dir / MEMBERS, json.dumps(state, indent=1) + "\n")
            drop_checkpoint(mdir)  # finished: only its model.attn is needed
    prepared = prepared.with_tokenizer(tok)
    if world.distributed:
        if recipe.train.refit is True:
            log.warning("train.refit is skipped under torchrun (one process would refit, not all)")
        barrier(world)  # rank 0 may still be writing the last member's model file, which every rank reads next
        return _assemble(recipe, prepared, run_dir, device, state, world, data_info)
    from ..data.prepared import load_datasets
    from .refit import should_refit

    data = load_datasets(recipe, prepared)
    refit, why = should_refit(recipe, data)
    if refit:
        return _refit_members(recipe, prepared, data, run_dir, device, callbacks, state, why, data_info)
    return _assemble(recipe, prepared, run_dir, device, state, world, data_info, data=data)


def first_phase(recipe: Recipe) -> Recipe:
    """A member's recipe without the refit: the ensemble decides and runs it (see the module doc)."""
    return recipe.model_copy(update={"train": recipe.train.model_copy(update={"refit": False})})


def _refit_members(recipe: Recipe, prepared: PreparedData, data, run_dir: Path, dev, callbacks, state, why: str,
                   data_info) -> TrainResult:  # fmt: skip
    """Choose on validation with the first-phase members, refit each on train + val, assemble."""
    from dataclasses import replace

    from ..recipe.build import member_recipe
    from ..store.artifact import save_model
    from .refit import refit_on_train_and_val

    n, labels = recipe.train.ensemble, list(prepared.labels)
    dirs = [member_dir(run_dir, i + 1) for i in range(n)]
    if "given" not in state:  # once: a resumed run keeps what the held-out validation chose
        state["given"], state["refitted"] = choose_on_validation(recipe, data, dirs, dev), 0
        atomic_write_text(run_dir / MEMBERS, json.dumps(state, indent=1) + "\n")
    for i in range(state["refitted"], n):
        mrec, row = member_recipe(recipe, i), state["members"][i]
        log.info("ensemble member %d of %d: refit", i + 1, n)
        try:
            network, _, facts = refit_on_train_and_val(mrec, data, row["best_epoch"], dev, callbacks, None, None, why)
        except KeyboardInterrupt:
            raise Interrupted(
                f"interrupted in the refit of ensemble member {i + 1} of {n}; "
                f"{f'members 1-{i} are' if i > 1 else 'member 1 is' if i == 1 else 'no member is'} refitted. "
                f"Resume with: attn train --resume {run_dir}"
            ) from None
        # a multi-label member keeps the thresholds its first phase chose on validation, as a
        # single refitted run does (scored at 0.5, its test figures were not the model's)
        thresholds = _thresholds_of(dirs[i] / MODEL) if data.train.multi_label else None
        extra = {"epoch": row["best_epoch"], "train": {"refit": facts}}
        save_model(dirs[i] / MODEL, network, mrec, labels,
                   extra if thresholds is None else {**extra, "thresholds": thresholds},
                   tokenizer=data.tokenizer)  # fmt: skip
        row["refit"] = facts
        _rescore_member(row, network, data, dirs[i], dev, thresholds)
        state["refitted"] = i + 1
        atomic_write_text(run_dir / MEMBERS, json.dumps(state, indent=1) + "\n")
    both = prepared.splits["train"] + prepared.splits["val"]
    whole = PreparedData({"train": both, "val": [], "test": prepared.splits["test"]}, prepared.labels,
                         prepared.tokenizer)  # fmt: skip
    result = assemble(recipe, whole, run_dir, dev, state["members"], dirs, data_info=data_info,
                      given=state["given"], refit=True)  # fmt: skip
    if result.scored is not None:  # the report's data table: the splits as the recipe lists them
        result.scored = replace(result.scored, splits=prepared.splits)
    return result


def _thresholds_of(path: Path) -> list[float] | None:
    """The per-class thresholds stored in a model file's header, if any."""
    from ..store.container import read_container

    return read_container(path, header_only=True).header.get("thresholds")


def _rescore_member(row: dict[str, Any], network, data, mdir: Path, dev, thresholds=None) -> None:
    """A refitted member's test figures are its own, not its first phase's (the summary, the
    report's members table and the member's metrics.json showed the model it replaced)."""
    if not len(data.test):
        return
    from ..infer.evaluate import evaluation_report
    from ..infer.inference import window_logits

    logits = window_logits(network.to(dev).eval(), data.test, dev)
    rep = evaluation_report(logits, data.test, list(data.labels), thresholds=thresholds)
    row["first_phase_test_accuracy"], row["test_accuracy"] = row.get("test_accuracy"), rep["accuracy"]
    atomic_write_text(mdir / METRICS, json.dumps({**rep, "split": "test", "refit": True}, indent=2) + "\n")


def choose_on_validation(recipe: Recipe, data, dirs: list[Path], dev) -> dict[str, Any]:
    """What validation chooses for the ensemble of the models in `dirs` (first phase, validation
    held out), as `assemble`'s `given`: the baseline's C and the blend weight, the calibration
    (single-label) or the thresholds (multi-label), and the ensemble's validation accuracy."""
    from ..infer.evaluate import evaluation_report
    from ..infer.inference import window_logits
    from .model import fit_baseline, with_baseline

    model = _ensemble_of(dirs, recipe).to(dev).eval()
    baseline = fit_baseline(recipe, data, dev) if recipe.train.baseline else None
    final, blend = with_baseline(model, baseline, data, recipe, dev)
    val = evaluation_report(window_logits(model, data.val, dev), data.val, list(data.labels))
    log.info("ensemble of %d, first phase: val accuracy %.4f", len(dirs), val["accuracy"])
    given: dict[str, Any] = {"val_accuracy": val["accuracy"]}
    if baseline is not None:
        given["C"], given["blend_weight"] = float(baseline.C), float((blend or {}).get("weight", 0.0))
        if baseline.thresholds is not None:
            given["baseline_thresholds"] = [float(t) for t in baseline.thresholds]
    thresholds, calibration = _chosen_on_val(final, data, recipe, dev)
    if thresholds is not None:
        given["thresholds"] = [float(t) for t in thresholds]
    if calibration is not None:
        given["calibration"] = {**calibration, "fitted_on": "validation, first phase (before the refit on train + val)"}
    return given


def _ensemble_of(dirs: list[Path], recipe: Recipe):
    """The networks saved in `dirs` as one Ensemble (a member's own temperature and blend are
    dropped: the ensemble is calibrated and blended as one model)."""
    from attn.models.calibrated import untempered
    from attn.models.ensemble import Ensemble
    from attn.models.linear import Blend

    from ..store.artifact import load_model

    members = [untempered(load_model(d / MODEL).model) for d in dirs]
    members = [m.network if isinstance(m, Blend) else m for m in members]
    return Ensemble(members, multi_label=recipe.data.multi_label)


def _chosen_on_val(final, data, recipe: Recipe, dev):
    """(thresholds (K,) or None, calibration facts or None) of `final`, on data.val."""
    from ..infer.calibration import calibrate

    if data.train.multi_label:
        from ..infer.multilabel import thresholds_on_val

        return thresholds_on_val(final, data, dev)[0], None
    return None, calibrate(final, data, recipe, dev)


def _best_val(history: list[dict[str, Any]]) -> float | None:
    best = [h for h in history if h.get("best")]
    return best[-1].get("val_accuracy") if best else None


def _assemble(recipe: Recipe, prepared: PreparedData, run_dir: Path, dev, state, world: World, data_info, data=None):
    """Load the members' best weights into one Ensemble, evaluate it, write model.attn."""
    dirs = [member_dir(run_dir, i + 1) for i in range(recipe.train.ensemble)]
    return assemble(recipe, prepared, run_dir, dev, state["members"], dirs, world=world, data_info=data_info,
                    data=data)  # fmt: skip


def assemble(recipe: Recipe, prepared: PreparedData, run_dir: Path, dev, rows: list[dict[str, Any]],
             dirs: list[Path], *, world: World = World(), data_info=None,
             given: dict[str, Any] | None = None, data=None, refit: bool = False) -> TrainResult:  # fmt: skip
    """The models saved in `dirs` (their networks: a member's own temperature and blend are
    dropped) as one Ensemble, with the recipe's baseline blended in, calibrated, evaluated and
    written to run_dir/model.attn; `rows` describe the members (metrics.json, the summary).

    `given` (train.folds' fold ensemble, or an ensemble refitted on train + val: where no
    validation split is left) supplies what validation would choose: `calibration` (T and
    min_score), `thresholds` (multi-label), the baseline's `C`, `baseline_thresholds` and the
    `blend_weight`. `data`: `prepared`'s Datasets when the caller has them; `refit`: the members
    trained on validation too (the novelty check says so). `recipe.train.ensemble` must be
    len(dirs): the model file rebuilds that many members."""
    from attn.models.calibrated import Tempered
    from attn.models.linear import Blend

    from ..data.prepared import load_datasets
    from ..infer.evaluate import evaluation_report
    from ..infer.inference import window_logits
    from ..recipe.build import count_parameters
    from ..store.artifact import save_model
    from .model import baseline_facts, final_metrics, fit_baseline, with_baseline

    n, labels, given = len(dirs), list(prepared.labels), given or {}
    if recipe.train.ensemble != n:
        raise ValueError(f"recipe.train.ensemble is {recipe.train.ensemble}, not the {n} members given")
    model = _ensemble_of(dirs, recipe).to(dev).eval()
    history = []
    for row, d in zip(rows, dirs, strict=True):
        lines = (d / HISTORY).read_text(encoding="utf-8").splitlines()
        key = "fold" if "fold" in row else "member"
        history += [{key: row[key], **json.loads(line)} for line in lines if line.strip()]
    metrics, seconds, baseline, blend = None, sum(m["seconds"] for m in rows), None, None
    seconds += sum(m.get("refit", {}).get("seconds", 0.0) for m in rows)
    scored = None
    if world.main:
        data = data if data is not None else load_datasets(recipe, prepared)
        data_info = data_info or data.info
        baseline = (fit_baseline(recipe, data, dev, c=given.get("C"), thresholds=given.get("baseline_thresholds"))
                    if recipe.train.baseline else None)  # fmt: skip
        more = {"members": rows}
        if len(data.val):
            val = evaluation_report(window_logits(model, data.val, dev), data.val, labels)
            log.info("ensemble of %d: val accuracy %.4f", n, val["accuracy"])
            more["val_accuracy"] = val["accuracy"]
        elif "val_accuracy" in given:  # before a refit, while validation was held out
            more["val_accuracy"] = given["val_accuracy"]
        if baseline is not None and "blend_weight" in given:  # chosen where validation was held out
            w = float(given["blend_weight"])
            final, blend = Blend(model, baseline.module, w, baseline.summary()).eval(), {"weight": w}
        else:
            final, blend = with_baseline(model, baseline, data, recipe, dev)
        thresholds, calibration = given.get("thresholds"), given.get("calibration")
        thresholds = None if thresholds is None else np.asarray(thresholds, dtype=float)
        if thresholds is None and calibration is None:
            thresholds, calibration = _chosen_on_val(final, data, recipe, dev)
        from ..infer.novelty import fit_novelty

        novelty = fit_novelty(final, data, recipe, dev, refit=refit)
        if calibration is not None or novelty is not None:
            final = Tempered(final, (calibration or {}).get("temperature", 1.0), calibration or {}, novelty)
        metrics, scored = final_metrics(
            final,
            data,
            run_dir,
            dev,
            baseline,
            blend,
            more,
            recipe=recipe,
            listed=prepared.splits,
            thresholds=thresholds,
        )
        atomic_write_text(run_dir / HISTORY, "".join(json.dumps(h) + "\n" for h in history))
        extra = {
            "metrics": header_metrics(metrics),
            "train": {"members": rows, "seconds": round(seconds, 1)},
            **({} if thresholds is None else {"thresholds": [float(t) for t in thresholds]}),
        }
        save_model(run_dir / MODEL, final, recipe, labels, extra, tokenizer=prepared.tokenizer)
        point_latest(run_dir)
    return TrainResult(
        run_dir=run_dir,
        model_path=run_dir / MODEL,
        metrics=metrics,
        history=history,
        best_epoch=0,
        epochs_run=sum(m["epochs"] for m in rows),
        stopped_early=False,
        seconds=seconds,
        labels=labels,
        parameters=count_parameters(model),
        data=data_info or {},
        members=rows,
        baseline=baseline_facts(baseline, blend),
        scored=scored,
    )
