"""One trial of `attn tune`: an ordinary training of the recipe with the trial's values set, in
its own run directory, through the training seam (`train_model`), scored on validation.

    run_trial(study, trial, plan, device, callbacks) -> record of the finished trial

Each epoch's validation metric (`train.monitor`) is reported to Optuna from a training callback;
the pruner may stop the trial there (`optuna.TrialPruned`), as does the tune's deadline. What a
trial leaves in tune_dir/trials/trial-NNNN/: recipe.yaml, history.jsonl, train.log always;
model.attn and metrics.json (test split, as any run; never used to choose) when it completed;
the resume checkpoint never (a trial that stops is retried from the start, not resumed).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attn.errors import AttnError, ConfigError, Interrupted

from ..recipe.keys import with_values
from ..recipe.space import TuneSpace
from ..store.rundir import LOG, MODEL, RunLog, drop_checkpoint, start_run, write_recipe
from .study import Heartbeat, claim, record, requeue

log = logging.getLogger("attn.tune")

TRIALS_DIR = "trials"


@dataclass(frozen=True)
class Plan:
    """What every trial of a tune shares (picklable: worker processes get a copy)."""

    tune_dir: str
    base: dict[str, Any]  # the resolved recipe as plain data, without its tune section
    space: TuneSpace
    metric: str  # train.monitor
    maximize: bool
    deadline: float | None  # time.time() after which running trials are stopped (pruned)

    def recipe(self, values: dict[str, Any], source: str):
        """The trial's Recipe: the base with `values` set (a ConfigError if they do not fit together)."""
        from ..recipe.load import recipe_from_dict

        return recipe_from_dict(with_values(self.base, values), source=source)


def trial_dir(tune_dir: str | Path, number: int) -> Path:
    return Path(tune_dir) / TRIALS_DIR / f"trial-{number:04d}"


class Reporter:
    """Training callback: report each epoch's validation metric and prune when Optuna says so or
    when the tune's time is up."""

    def __init__(self, trial, metric: str, deadline: float | None) -> None:
        self.trial, self.metric, self.deadline, self.epochs, self.planned = trial, metric, deadline, 0, 0

    def on_epoch_begin(self, epoch: int, epochs: int, steps: int) -> None:
        self.planned = epochs

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        import optuna

        self.epochs = record["epoch"]
        value = record.get(self.metric)
        if value is None:
            raise ConfigError(f"attn tune scores trials on the validation split ({self.metric}); this recipe has no "
                              "validation examples (set data.val_fraction or a val manifest)")  # fmt: skip
        self.trial.report(float(value), record["epoch"])
        if record["epoch"] >= self.planned:  # a trial that ran all its epochs is kept, whatever the clock says
            return
        if self.deadline is not None and time.time() >= self.deadline:
            raise optuna.TrialPruned(f"stopped at epoch {record['epoch']}: the tune's time is up")
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {record['epoch']}: {self.metric} {value:.4f} behind the median")


def run_trial(study, trial, plan: Plan, device, callbacks=None) -> dict[str, Any]:
    """Run one asked trial to its end and tell the study how it went. A trial that fails (NaN
    loss, out of memory, any AttnError) is recorded as failed with its message; Ctrl-C marks it
    interrupted, queues its values again and raises Interrupted."""
    import optuna
    from optuna.trial import TrialState

    from ..data.prepared import prepare_data
    from ..train.callbacks import CallbackList
    from ..train.model import train_model

    claim(trial)
    values = plan.space.suggest(trial)
    trial.set_user_attr("values", values)
    run_dir = trial_dir(plan.tune_dir, trial.number)
    trial.set_user_attr("run_dir", str(run_dir.resolve()))
    reporter = Reporter(trial, plan.metric, plan.deadline)
    t0 = time.time()
    _call(callbacks, "on_trial_begin", trial.number, values)
    state, value, attrs = TrialState.FAIL, None, {}
    try:
        start_run(run_dir)
        with RunLog(run_dir / LOG), Heartbeat(trial):
            log.info("trial %d: %s", trial.number, describe(values))
            recipe = plan.recipe(values, source=f"trial {trial.number}")
            # A trial is scored on validation, so it never refits on it (`refit: auto` turned on for
            # small sets and failed every trial); `attn tune --refit` trains the best one on train + val.
            recipe = recipe.model_copy(update={"train": recipe.train.model_copy(update={"refit": False})})
            write_recipe(run_dir, recipe)
            prepared = prepare_data(recipe)
            result = train_model(recipe, prepared, run_dir, device=device, callbacks=CallbackList(reporter, callbacks),
                                 point_latest=False)  # fmt: skip
        best = result.history[result.best_epoch - 1] if result.best_epoch else {}
        if plan.metric not in best:
            raise ConfigError(f"attn tune scores trials on {plan.metric}; this run reported none")
        value, state = float(best[plan.metric]), TrialState.COMPLETE
        attrs = {"epochs": result.epochs_run, "best_epoch": result.best_epoch}
    except optuna.TrialPruned as e:
        state, attrs = TrialState.PRUNED, {"epochs": reporter.epochs, "pruned": str(e)}
    except (Interrupted, KeyboardInterrupt):
        if _finish(study, trial, TrialState.FAIL, None, {"interrupted": True, "seconds": round(time.time() - t0, 1)}):
            requeue(study, trial.number, values, trial.params, baseline=bool(trial.user_attrs.get("baseline")))
        clean_run_dir(run_dir, keep_model=False)
        raise Interrupted(f"interrupted during trial {trial.number} (its values will run again); "
                          f"continue with: attn tune --resume {plan.tune_dir}") from None  # fmt: skip
    except Exception as e:  # noqa: BLE001 - a failed trial is recorded; `internal` ones also stop the tune
        attrs = {"epochs": reporter.epochs, "error": failure_message(e)}
        if not (isinstance(e, (AttnError, MemoryError)) or _out_of_memory(e)):
            attrs["internal"] = True
        _free_memory(device)
    _finish(study, trial, state, value, {**attrs, "seconds": round(time.time() - t0, 1)})
    clean_run_dir(run_dir, keep_model=state == TrialState.COMPLETE)
    rec = record(study.get_trials(deepcopy=False)[trial.number])
    log.info("trial %d %s", trial.number, outcome(rec, plan.metric))
    _call(callbacks, "on_trial_end", rec)
    return rec


def _finish(study, trial, state, value, attrs: dict[str, Any]) -> bool:
    """Record the trial's facts and tell the study; False when another process had already
    marked it interrupted (its heartbeat went quiet), which then stands."""
    import optuna

    try:
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        study.tell(trial, value, state=state)
    except optuna.exceptions.UpdateFinishedTrialError:
        log.warning("trial %d was marked interrupted by another process while it ran; it runs again", trial.number)
        return False
    return True


def failure_message(e: BaseException) -> str:
    if isinstance(e, AttnError):
        return str(e)
    if _out_of_memory(e) or isinstance(e, MemoryError):
        return f"out of memory ({' '.join(str(e).split())[:200]})"
    return f"internal error: {type(e).__name__}: {' '.join(str(e).split())[:300]}"


def describe(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_short(v)}" for k, v in values.items())


def outcome(rec: dict[str, Any], metric: str) -> str:
    v = "n/a" if rec["value"] is None else f"{rec['value']:.4f}"
    if rec["state"] == "complete":
        return f"complete: {metric} {v} (best epoch {rec['best_epoch']} of {rec['epochs']})"
    if rec["state"] == "pruned":
        return f"pruned: {rec.get('pruned', '')}"
    return f"failed: {rec.get('error', 'interrupted')}"


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _out_of_memory(e: BaseException) -> bool:
    return isinstance(e, RuntimeError) and ("out of memory" in str(e).lower() or "can't allocate" in str(e).lower())


def _free_memory(device) -> None:
    if getattr(device, "type", None) == "cuda":
        import torch

        torch.cuda.empty_cache()


def clean_run_dir(run_dir: Path, keep_model: bool) -> None:
    """Drop what only a finished or resumable run needs: the checkpoint always, the model of a
    trial that did not complete (its weights are from an epoch the tune did not accept)."""
    drop_checkpoint(run_dir)
    if not keep_model:
        try:
            (run_dir / MODEL).unlink(missing_ok=True)
        except OSError:
            pass


def _call(callbacks, hook: str, *args) -> None:
    fn = getattr(callbacks, hook, None)
    if fn is not None:
        fn(*args)
