"""`attn train` and `attn train --resume`: a recipe in, a run directory out (see store/rundir.py for
what it holds).

`train` and `resume` set up the run (devices and the torchrun process group, the prepared
data, the run directory and its log) and hand it to `train_model` (one model) or
`train_ensemble` (train.ensemble > 1: N members, each through `train_model`).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from attn.errors import ArtifactError, ConfigError, InputError

from ..data.prepared import PreparedData, prepare_data
from ..recipe.config import Recipe
from ..store.rundir import (
    CHECKPOINT,
    LOG,
    MEMBERS,
    MODEL,
    RECIPE,
    TENSORBOARD,
    RunLog,
    claim,
    discard_unstarted,
    drop_checkpoint,
    drop_torn_writes,
    new_run_dir,
    release,
    start_run,
)
from .distributed import World, broadcast_text, join, leave, world_from_env
from .ensemble import read_members, train_ensemble
from .model import TrainResult, train_model

log = logging.getLogger("attn")

__all__ = ["TrainResult", "resume", "train"]


def train(
    recipe: Recipe,
    recipe_path: str | None = None,
    out: str | None = None,
    device: str = "auto",
    callbacks=None,
    tensorboard: str | None = None,
) -> TrainResult:
    """Train the recipe in a new run directory (`out`, else runs/<recipe stem>-<time>) and
    return what was written, report.html included. `callbacks`: see
    `attn.pipelines.train.callbacks.Callbacks`; `tensorboard`: a folder for TensorBoard event files
    (default <run>/tensorboard when the recipe sets train.tensorboard)."""
    from ..data.auto import resolve_auto

    if tensorboard or recipe.train.tensorboard:
        from .tensorboard import check_package

        check_package()  # a missing package is an error before any work
    world, dev = _devices(device)
    run_dir, created = None, out is None or not Path(out).exists()
    try:
        prepared = prepare_data(recipe)  # lists items and labels; config errors surface here
        recipe, prepared, auto = resolve_auto(recipe, prepared)  # numbers for `auto` and ms values
        if recipe.train.folds or recipe.data.fold_column:
            from .folds import check_folds

            check_folds(recipe, prepared, world.distributed)
        if world.main:
            run_dir = start_run(new_run_dir(recipe_path, out), recipe)
        if world.distributed:
            run_dir = Path(broadcast_text(None if run_dir is None else str(run_dir), world))
        assert run_dir is not None
        with RunLog(run_dir / LOG) if world.main else contextlib.nullcontext():
            log.info("run directory %s", run_dir)
            for key, c in auto.items():
                log.info("auto: %s = %s (%s)", key, c["value"], c["why"])
            _warn_unknown_label(prepared.labels, recipe)
            callbacks = _with_tensorboard(callbacks, recipe, run_dir, tensorboard, world)
            return _finish(_train(recipe, prepared, run_dir, dev, callbacks, None, world, auto), callbacks, world)
    except BaseException:
        # Failed before any epoch finished (data that cannot load, Ctrl-C in epoch 1): nothing
        # to resume, and a leftover folder would block the same --out.
        if world.main and run_dir is not None and discard_unstarted(run_dir, created):
            log.info("removed %s: no epoch finished, so there is nothing to resume", run_dir)
        raise
    finally:
        if world.main and run_dir is not None:
            release(run_dir)
        leave()


def _warn_unknown_label(labels, recipe: Recipe) -> None:
    """A class named as predict's abstention: the two read alike in a record's `label`."""
    from ..infer.calibration import UNKNOWN

    if UNKNOWN in labels and not recipe.data.multi_label:
        log.warning("a class is named %r, which is also what predict answers when it abstains (a score below "
                    "the min score): records tell them apart by best_label; consider renaming it", UNKNOWN)  # fmt: skip


def _cross_validation_run(rd: Path) -> Path | None:
    """The cross-validation run `rd` is, or holds as one of its folds (`fold-N/`), else None."""
    import yaml

    for d in (rd, rd.parent) if rd.name.startswith("fold-") else (rd,):
        try:
            raw = yaml.safe_load((d / RECIPE).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError, UnicodeDecodeError):
            continue
        train = raw.get("train") if isinstance(raw, dict) else None
        if isinstance(train, dict) and isinstance(train.get("folds"), int) and train["folds"] > 0:
            return d
    return None


def resume(run_dir: str, device: str = "auto", callbacks=None, tensorboard: str | None = None,
           threads: int | None = None) -> TrainResult:  # fmt: skip
    """Continue an interrupted run from its last saved epoch (an ensemble from its members).
    On the CPU it trains on the thread count the run had (the weights depend on it), unless
    `threads` chooses another: then it says the run no longer continues exactly."""
    from ..recipe.load import recipe_from_dict
    from ..store.checkpoint import read_checkpoint

    rd = Path(run_dir)
    if rd.is_file() and any((rd.parent / f).exists() for f in (CHECKPOINT, MODEL, RECIPE, MEMBERS)):
        rd = rd.parent  # a file of the run (its model.attn, last.ckpt) names the run
    elif not rd.is_dir():  # was "no last.ckpt to resume from: ... remove the folder" of a folder that is not there
        what = "not a run directory (a file)" if rd.exists() else "no such run directory"
        raise ConfigError(f"--resume {run_dir}: {what}")
    cv = _cross_validation_run(rd)
    if cv is not None:  # its folds and final model are fresh models each: there is no one state to go on from
        raise ConfigError(f"{cv}: a cross-validation run cannot be resumed; train it again (attn train "
                          f"{cv / RECIPE} --out NEW_DIR)")  # fmt: skip
    ckpt = None
    if (rd / MEMBERS).exists():  # an ensemble: its state names the recipe and the members done
        state = read_members(rd)
        recipe = recipe_from_dict(state["recipe"], source=f"{rd / MEMBERS} (stored recipe)")
        labels = list(state["labels"])
        where = f"after {len(state['members'])} of {recipe.train.ensemble} ensemble members"
    elif (rd.parent / MEMBERS).exists():
        raise ConfigError(f"{rd} is a member of the ensemble run {rd.parent}: attn train --resume {rd.parent}")
    else:
        if not (rd / CHECKPOINT).exists():
            if (rd / MODEL).exists():
                raise ConfigError(f"{rd}: no {CHECKPOINT} to resume from: the run finished (its model is "
                                  f"{rd / MODEL}), or stopped before it could save its state")  # fmt: skip
            raise ConfigError(f"{rd}: no {CHECKPOINT} to resume from: the run stopped before its first epoch was "
                              "saved; remove the folder and train again")  # fmt: skip
        ckpt = read_checkpoint(rd / CHECKPOINT)
        recipe, labels, where = ckpt.recipe, ckpt.labels, f"from epoch {ckpt.epoch}"
    world, dev = _devices(device)
    claimed = False
    try:
        if world.main:
            claim(rd, f"--resume {run_dir}")  # not while another process trains or resumes it
            claimed = True
            if gone := drop_torn_writes(rd):
                log.info("removed %d unfinished write(s) the interrupted run left", gone)
        prepared = prepare_data(recipe)
        if list(prepared.labels) != labels:
            raise InputError(f"{rd}: the data's labels changed since the run started; cannot resume")
        if ckpt is not None and ckpt.data is not None:
            from ..data.fingerprint import CONTENTS, data_fingerprint

            contents = ckpt.data.startswith(CONTENTS)  # a checkpoint from before it kept names only
            if data_fingerprint(recipe.data.model_dump(mode="json"), prepared, recipe.modality, contents) != ckpt.data:
                raise InputError(f"{rd}: the data changed since the run started (examples added, removed or "
                                 "relabelled); a resumed run continues exactly or not at all: train it "
                                 "again")  # fmt: skip
        if ckpt is not None and ckpt.tokenizer is not None:
            prepared = prepared.with_tokenizer(ckpt.tokenizer)
        with RunLog(rd / LOG) if world.main else contextlib.nullcontext():
            log.info("resuming %s %s", rd, where)
            if dev.type == "cpu":
                same_threads(ckpt.state["state"].get("threads") if ckpt is not None else _member_threads(rd), threads)
            callbacks = _with_tensorboard(callbacks, recipe, rd, tensorboard, world)
            result = _train(recipe, prepared, rd, dev, callbacks, None if ckpt is None else ckpt.state, world)
            return _finish(result, callbacks, world)
    finally:
        if claimed:
            release(rd)
        leave()


def _member_threads(rd: Path) -> int | None:
    """An ensemble run's thread count: its unfinished member's checkpoint header says it (None:
    no member checkpoint, or one from before the count was kept)."""
    from ..store.container import read_container

    for c in sorted(rd.glob(f"*/{CHECKPOINT}")):
        try:
            return read_container(c, header_only=True, what="checkpoint").header.get("threads")
        except ArtifactError:  # the member's resume reports a damaged checkpoint itself
            return None
    return None


def same_threads(was: int | None, threads: int | None) -> None:
    """Train on the run's own thread count: 1 thread and 2 sum floats in another order, and a
    quickstart run stopped after epoch 4 on 2 threads and resumed on 1 ended with other weights
    (24 of 35 tensors) and another temperature than either count alone. `threads` (--threads,
    $ATTN_THREADS) overrides, with a warning. `was` None: a checkpoint from before it was kept."""
    import torch

    if was is None:
        return
    if threads is not None and threads != was:
        torch.set_num_threads(threads)
        log.warning("the run trained on %d torch thread(s) and resumes on %d: it goes on, but not exactly as an "
                    "uninterrupted run would (float sums differ with the thread count); leave out --threads "
                    "(and $ATTN_THREADS) to resume on %d", was, threads, was)  # fmt: skip
    elif torch.get_num_threads() != was:
        log.info("on %d torch thread(s), as the run trained (the weights depend on the thread count)", was)
        torch.set_num_threads(was)


def _devices(device: str):
    """(World, torch.device): joins the process group under torchrun."""
    from ..device import resolve_device

    world = world_from_env()
    return world, (join(world, device) if world.distributed else resolve_device(device))


def _train(recipe: Recipe, prepared: PreparedData, run_dir: Path, dev, callbacks, resume_state, world: World,
           auto=None):  # fmt: skip
    if recipe.train.folds or recipe.data.fold_column:
        from .folds import check_alone, train_folds

        check_alone(recipe, world.distributed, resuming=resume_state is not None)
        return train_folds(recipe, prepared, run_dir, device=dev, callbacks=callbacks, auto=auto)
    if recipe.train.ensemble > 1:  # resumes from members.json and the members' checkpoints
        return train_ensemble(recipe, prepared, run_dir, device=dev, callbacks=callbacks, world=world, auto=auto)
    return train_model(recipe, prepared, run_dir, device=dev, callbacks=callbacks, resume_state=resume_state,
                       world=world, auto=auto)  # fmt: skip


def _with_tensorboard(callbacks, recipe: Recipe, run_dir: Path, tensorboard: str | None, world: World):
    """The caller's callbacks, plus TensorBoard logging on rank 0 when asked for."""
    from .callbacks import CallbackList

    if not world.main or not (tensorboard or recipe.train.tensorboard):
        return CallbackList(callbacks)
    from .tensorboard import TensorBoardCallback

    # --tensorboard DIR is a root several runs share (`tensorboard --logdir DIR` compares them), so
    # each run writes into DIR/<run name>; a resumed run appends to its own.
    where = Path(tensorboard) / run_dir.name if tensorboard else run_dir / TENSORBOARD
    return CallbackList(callbacks, TensorBoardCallback(where, recipe, run_dir))


def _finish(result: TrainResult, callbacks, world: World) -> TrainResult:
    """After training (rank 0): the callbacks' on_train_end, then report.html."""
    if not world.main:
        return result
    from ..ship.report import write_report
    from .refit import interruptible_finish

    with interruptible_finish(result.run_dir, result.epochs_run):  # a stop here: said, with the resume
        callbacks.on_train_end(result.metrics)
        _tune_events(result)
        try:
            log.info("report %s", write_report(result.run_dir, result.scored))
        except Exception as e:  # noqa: BLE001 - the model is saved; a failed report must not fail the run
            log.warning("report.html not written (%s: %s); retry with: attn report %s", type(e).__name__,
                        " ".join(str(e).split()), result.run_dir)  # fmt: skip
    result.scored = None  # the decoded split goes with it
    # Finished: the resume state is dead weight (a fine-tuned encoder's is ~4x its model file,
    # 360 MB for MiniLM), as folds, ensemble members and tuning trials already drop theirs.
    drop_checkpoint(result.run_dir)
    return result


def _tune_events(result: TrainResult) -> None:
    """With `data.events`: tune the events post-processing on its annotated recordings and store
    it in the model ("events" in the header: `attn info` shows it, `attn predict --events` uses it)."""
    from ..store.container import read_container

    if not (read_container(result.model_path, header_only=True).header["recipe"].get("data") or {}).get("events"):
        return
    from ..infer.events_predict import tune_events
    from ..store.artifact import load_model, update_header

    loaded = load_model(result.model_path)
    ev = loaded.recipe.data.events

    tuned = tune_events(loaded, ev.annotations, ev.files, ev.split, ev.hop_seconds)
    update_header(result.model_path, events=tuned)
    result.data["events"] = tuned
