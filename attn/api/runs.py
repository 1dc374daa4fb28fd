"""The runs of the Python API: train, resume, tune, evaluate, and a run's report."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attn.errors import ConfigError

from .model import Model, device_spec, load

if TYPE_CHECKING:  # pragma: no cover - names for annotations only
    from attn.pipelines.recipe.config import Recipe
    from attn.pipelines.train.model import TrainResult
    from attn.pipelines.tune.run import TuneResult


def train(
    recipe: str | os.PathLike | dict | Recipe,
    overrides: Iterable[str] = (),
    out: str | os.PathLike | None = None,
    device: Any = "auto",
    callbacks=None,
    tensorboard: str | os.PathLike | None = None,
) -> TrainResult:
    """Train a recipe (a YAML file, a mapping shaped like one, or a Recipe) in a new run
    directory (`out`, else runs/<recipe>-<time>, and runs/latest points at it); returns the
    `TrainResult` (`.metrics`, `.model_path`, `.summary()`, ...).

    overrides: `--set`-style items, e.g. ["train.epochs=3", "model.dropout=0.3"].
    callbacks: an object with any of `on_epoch_begin(epoch, epochs, steps)`, `on_step(step,
        loss)`, `on_epoch_end(record)` (record: the epoch's losses and validation metrics),
        `on_train_end(metrics)`; raising in one stops training, keeping the last finished
        epoch's checkpoint.
    tensorboard: a folder for TensorBoard event files (needs attn[tensorboard]); the recipe's
        `train.tensorboard: true` writes them to <run>/tensorboard.
    The run directory also gets report.html (see `attn.report`).
    """
    from attn.pipelines.device import apply_env_threads
    from attn.pipelines.recipe.load import resolve_recipe
    from attn.pipelines.train.run import train as train_run

    apply_env_threads()
    r = resolve_recipe(recipe, override_list(overrides))
    path = os.fspath(recipe) if isinstance(recipe, (str, os.PathLike)) else None
    board = None if tensorboard is None else os.fspath(tensorboard)
    return train_run(r, path, out=None if out is None else os.fspath(out), device=device_spec(device),
                     callbacks=callbacks, tensorboard=board)  # fmt: skip


def resume(
    run_dir: str | os.PathLike,
    device: Any = "auto",
    callbacks=None,
    tensorboard: str | os.PathLike | None = None,
    threads: int | None = None,
) -> TrainResult:
    """Continue an interrupted run from its last saved epoch (exactly as if never stopped). On
    the CPU it trains on the run's own torch thread count; `threads` (or $ATTN_THREADS) picks
    another, and the run then no longer continues exactly (a warning says so)."""
    from attn.pipelines.device import env_threads
    from attn.pipelines.train.run import resume as resume_run

    threads = threads or env_threads()
    if threads is not None:  # on a GPU, or a checkpoint from before the count was kept, this is all there is
        import torch

        torch.set_num_threads(threads)
    return resume_run(os.fspath(run_dir), device=device_spec(device), callbacks=callbacks,
                      tensorboard=None if tensorboard is None else os.fspath(tensorboard), threads=threads)  # fmt: skip


def report(run_dir: str | os.PathLike | None = None) -> Path:
    """(Re)write a run's report.html (default runs/latest) and return its path: learning curves,
    confusion matrix, per-class metrics, the baseline, the data, the most confidently wrong
    test examples and the recipe, in one self-contained page."""
    from attn.pipelines.ship.report import write_report

    return write_report(Path("runs/latest") if run_dir is None else Path(run_dir))


def tune(
    recipe: str | os.PathLike | dict | Recipe | None = None,
    overrides: Iterable[str] = (),
    trials: int | None = None,
    timeout: float | str | None = None,
    jobs: int = 1,
    storage: str | None = None,
    study: str | None = None,
    out: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    refit: bool = False,
    pruner: str = "median",
    seed: int | None = None,
    first: Iterable[dict[str, Any]] = (),
    device: Any = "auto",
    threads: int | None = None,
    callbacks=None,
) -> TuneResult:
    """Search a recipe's hyperparameters with Optuna (TPE, seeded; median pruning): each trial is
    an ordinary training with the trial's values set, scored on the validation split
    (`train.monitor`). The space is the recipe's `tune:` section, else its family's default.

    trials: the study's total (default 20, or as many as `timeout` allows; with `resume`, the
        stored one). timeout: seconds or
        "90s"/"30m"/"2h": no trial starts after it, running ones are pruned at their next epoch.
    jobs: trial processes on this host. storage: an SQLAlchemy URL shared by several processes or
        hosts (default: SQLite in the tune directory); study: its name (default the recipe's stem).
    out: the tune directory (default tunes/<recipe>-<time>; one holding the same study is joined).
    resume: continue the tune directory after a crash or kill (`recipe` not needed).
    refit: retrain the best recipe on train+val (tune_dir/refit). pruner: median, halving, none.
    first: values to try before the sampler's own (after the recipe as written, trial 0), e.g.
        [{"train.lr": 3e-4, "model.layers": 2}]; keys of the space, values inside it.
    callbacks: the training hooks of `train`, plus `on_trial_begin(number, values)`,
        `on_trial_end(record)`, `on_status(status)`.
    Returns a `TuneResult` (`.best`, `.leaderboard()`, `.importances`, `.summary()`).
    """
    from attn.pipelines.recipe.load import resolve_recipe
    from attn.pipelines.tune.run import parse_duration
    from attn.pipelines.tune.run import tune as tune_study

    seconds = parse_duration(timeout)
    if resume is not None:
        if recipe is not None or override_list(overrides) or out or storage or study or list(first):
            raise ConfigError("resume continues a tune as it was set up: no recipe, overrides, out, storage, study "
                              "or first")  # fmt: skip
        return tune_study(resume=os.fspath(resume), trials=trials, timeout=seconds, jobs=jobs, refit=refit,
                          device=device_spec(device), threads=threads, callbacks=callbacks)  # fmt: skip
    if recipe is None:
        raise ConfigError("give a recipe to tune, or resume=DIR")
    r = resolve_recipe(recipe, override_list(overrides))
    path = os.fspath(recipe) if isinstance(recipe, (str, os.PathLike)) else None
    return tune_study(r, path, trials=trials, timeout=seconds, jobs=jobs, storage=storage, study=study,
                      out=None if out is None else os.fspath(out), refit=refit, pruner=pruner, seed=seed,
                      first=[dict(v) for v in first], device=device_spec(device), threads=threads,
                      callbacks=callbacks)  # fmt: skip


def evaluate(
    model: str | os.PathLike | Model | None = None,
    data: str | os.PathLike | None = None,
    recipe: str | os.PathLike | dict | Recipe | None = None,
    overrides: Iterable[str] = (),
    split: str | None = None,
    aggregate: str = "mean",
    device: Any = "cpu",
    min_score: float | None = None,
    threshold: float | None = None,
) -> dict[str, Any]:
    """Score a model on labelled data: a folder per class or a manifest (`data`), else the `split`
    (default test) of `recipe` (with `overrides`), else of the model's own recipe. Returns what
    metrics.json holds (accuracy, macro_f1, per_class, confusion, labels) plus `skipped`, the
    files that could not be read; a calibrated model (or one given `min_score`) adds
    `calibration` (ECE) and `abstention` (coverage and accuracy of the answers above
    `min_score`, default the model's stored one). `threshold`: a multi-label model's decision
    threshold for every class, instead of its stored ones. `overrides` without a `recipe` apply
    to the model's stored recipe (`data.text_column=Text` for `data` with other column names)."""
    from attn.pipelines.infer.evaluate import evaluate as evaluate_model
    from attn.pipelines.recipe.load import resolve_recipe

    m = model if isinstance(model, Model) else load(model, device)
    if m.exported:
        from attn.pipelines.infer.exported import only_predicts

        raise only_predicts(m.path, "attn evaluate")
    r = None if recipe is None else resolve_recipe(recipe, override_list(overrides))
    if r is None and overrides:  # the model's own recipe changed: DATA's column names, its data's folder
        r = resolve_recipe(m.recipe, override_list(overrides))
    return evaluate_model(m.loaded, data=None if data is None else os.fspath(data), recipe=r, split=split,
                          aggregate_how=aggregate, min_score=min_score, threshold=threshold)  # fmt: skip


def load_recipe(path: str | os.PathLike, overrides: Iterable[str] = ()) -> Recipe:
    """The recipe at `path` with `overrides` (`--set`-style items) applied: read, expanded
    (${VAR}s, `extends`), resolved and validated; a bad one is a ConfigError naming the key."""
    from attn.pipelines.recipe.load import load_recipe as load_file

    return load_file(os.fspath(path), override_list(overrides))


def main_process() -> bool:
    """Whether this process is the one that logs and prints: always, except under torchrun
    (several processes training one model), where rank 0 is."""
    from attn.pipelines.train.distributed import world_from_env

    return world_from_env().main


def override_list(overrides: Iterable[str] | str) -> list[str]:
    """`--set`-style overrides as a list: one "key=value" string is one override (list() made
    it one per character)."""
    return [overrides] if isinstance(overrides, str) else list(overrides)


def request_stop() -> None:
    """Ask a running training to stop at its next step (what a SIGTERM handler does beside
    raising KeyboardInterrupt, which code that wraps or swallows it could lose)."""
    from attn.pipelines.fsutil import STOP_REQUESTED

    STOP_REQUESTED.set()


def clear_stop() -> None:
    """Forget a stop asked for (one command's is not the next one's)."""
    from attn.pipelines.fsutil import STOP_REQUESTED

    STOP_REQUESTED.clear()
