"""`attn tune`: an Optuna study over a recipe, every trial an ordinary training of it.

    tune(recipe, ...) -> TuneResult      a new tune directory (or join the study in --out)
    tune(resume=DIR) -> TuneResult       continue one after a crash, a kill or Ctrl-C

The tune directory:

    tunes/<recipe>-<time>/
      tune.json       the settings (recipe, space, metric, storage, study, budget): what --resume reads
      study.db        the Optuna study (SQLite), unless --storage names another database
      trials/trial-NNNN/   each trial's run directory (see tune/trial.py for what it keeps)
      trials.jsonl    one line per trial: state, value (the metric), values, epochs, seconds, error
      best.yaml       the best trial's resolved recipe (`attn train best.yaml` trains it again)
      best -> trials/trial-NNNN   the best trial's run directory (when it ran on this host)
      importances.json  Optuna's parameter importances (fANOVA)
      refit/          with refit: the best recipe retrained on train+val

Trials run in this process (jobs=1) or in `jobs` worker processes (each with its share of the CPU
threads, or its own GPU when there are several), all against one study; other `attn tune`
processes, on this host or others, may share the study through the same storage.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attn.errors import ConfigError, OutputError

from ..data.fingerprint import data_fingerprint
from ..fsutil import atomic_write_text, make_dirs
from ..recipe.config import Recipe
from ..recipe.keys import get as current
from ..recipe.space import TuneSpace, default_space
from ..store.rundir import METRICS
from .loop import BEST, Session, same_study, work, write_outputs
from .study import MAXIMIZE, MIN_IMPORTANCE_TRIALS, Counts, best_record, counts, leaderboard, storage_url
from .trial import Plan, trial_dir

log = logging.getLogger("attn.tune")

SETTINGS, DATABASE, IMPORTANCES, REFIT = "tune.json", "study.db", "importances.json", "refit"
STORAGE_URL = "storage.url"  # the --storage URL when it holds a password (mode 0600; tune.json has it masked)


@dataclass
class TuneResult:
    """How the study stands after this process's work (`summary()` is what `attn tune` prints)."""

    tune_dir: Path
    study: str
    storage: str
    metric: str
    maximize: bool
    requested: int | None  # None: as many as the time allows
    counts: Counts
    trials: list[dict[str, Any]]  # every trial of the study, as trials.jsonl
    best: dict[str, Any] | None  # the best complete trial's record (+ recipe, test metrics when local)
    importances: dict[str, float]
    seconds: float
    refit: dict[str, Any] | None = None  # TrainResult.summary() of the retrain on train+val
    space: dict[str, Any] = field(default_factory=dict)

    def leaderboard(self) -> list[dict[str, Any]]:
        return leaderboard(self.trials, self.maximize)

    def summary(self) -> dict[str, Any]:
        c = self.counts
        # why there are no importances: fANOVA needs MIN_IMPORTANCE_TRIALS complete trials that varied
        why_none = f"not estimated: it needs {MIN_IMPORTANCE_TRIALS} or more complete trials that vary the keys"
        return {
            "tune_dir": str(self.tune_dir),
            "study": self.study,
            "storage": self.storage,
            "metric": self.metric,
            "direction": "maximize" if self.maximize else "minimize",
            "trials": {
                "requested": self.requested,
                "complete": c.complete,
                "pruned": c.pruned,
                "failed": c.failed,
                "interrupted": c.interrupted,
                "running": c.running,
            },
            "best": self.best,
            "leaderboard": self.leaderboard(),
            "importances": self.importances,
            "importances_note": None if self.importances else why_none,
            "space": self.space,
            "refit": self.refit,
            "seconds": round(self.seconds, 1),
        }


def tune(
    recipe: Recipe | None = None,
    recipe_path: str | None = None,
    *,
    trials: int | None = None,
    timeout: float | None = None,
    jobs: int = 1,
    storage: str | None = None,
    study: str | None = None,
    out: str | None = None,
    resume: str | None = None,
    refit: bool = False,
    pruner: str = "median",
    seed: int | None = None,
    first: list[dict[str, Any]] | None = None,
    device: str = "auto",
    threads: int | None = None,
    callbacks=None,
) -> TuneResult:
    """Run (or continue, or join) a study; see the module docstring. `timeout` in seconds stops
    starting trials and prunes the running ones at their next epoch (resuming without `trials` or
    `timeout` gives the stored budget again); `first`: values (dotted key ->
    value, a subset of the space) to run before the sampler's own; `callbacks`: the training
    hooks (trials run in this process) and any of `on_trial_begin(number, values)`,
    `on_trial_end(record)`, `on_status(status)`."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # its INFO lines would duplicate ours
    t0 = time.time()
    if jobs < 1:
        raise ConfigError(f"--jobs {jobs}: give at least 1")
    from ..device import resolve_device

    resolve_device(device)  # an unusable --device before the study exists (one was left behind, then joined)
    if resume is not None:
        settings = _read_settings(Path(resume))
        settings["storage"] = _stored_url(Path(resume), settings["storage"])
        if trials is not None:
            settings["trials"] = trials
        if timeout is None and trials is None:  # the stored budget, afresh (never an endless tune)
            timeout = settings.get("timeout")
        refit = refit or settings.get("refit", False)
    else:
        if recipe is None:
            raise ConfigError("give a recipe to tune, or a tune directory to resume")
        _check_single(recipe)
        settings = _new_settings(recipe, recipe_path, trials, timeout, storage, study, pruner, seed, refit, first or [])
        resume = _tune_dir(out, recipe_path, settings)
    tdir = Path(resume)
    settings["refit"], settings["timeout"] = refit, timeout
    _write_settings(tdir, settings)
    base = Recipe.model_validate(settings["recipe"])
    space = TuneSpace.model_validate(settings["space"])
    _check_data(base)
    plan = Plan(str(tdir), settings["recipe"], space, settings["metric"], MAXIMIZE[settings["metric"]],
                None if timeout is None else t0 + timeout)  # fmt: skip
    url = settings["storage"] or f"sqlite:///{(tdir / DATABASE).resolve()}"
    s = Session(url, settings)
    s.open(worker=0)
    if not s.study.trials:
        # Trial 0 is the recipe as written (when it lies in the space): the untuned score to beat,
        # in the same leaderboard; then the values asked for first.
        if settings["baseline"] is not None:
            s.study.enqueue_trial(settings["baseline"], user_attrs={"baseline": True})
        for values in settings["first"]:
            s.study.enqueue_trial(values)
    log.info("tuning %s: study %r in %s, %s trials%s; %s on the validation split", settings["recipe_path"] or "recipe",
             settings["study"], storage_url(url), settings["trials"] or "unlimited",
             f", {timeout / 60:.1f} min" if timeout else "", settings["metric"])  # fmt: skip
    if jobs == 1:
        work(s, plan, resolve_device(device), callbacks, t0)
    else:
        from .workers import run_workers

        run_workers(s, plan, jobs, device, threads, callbacks, t0)
    return finish(s, plan, tdir, refit, device, callbacks, time.time() - t0)


def finish(s: Session, plan: Plan, tdir: Path, refit: bool, device: str, callbacks, seconds: float) -> TuneResult:
    from .study import importances

    recs = write_outputs(s, plan)
    imp = importances(s.study)
    atomic_write_text(tdir / IMPORTANCES, json.dumps(imp, indent=2) + "\n")
    best = best_record(recs, plan.maximize)
    if best is not None:
        best = {**best, "recipe": str(tdir / BEST)}
        metrics = trial_dir(tdir, best["number"]) / METRICS
        if metrics.exists():  # reported beside the choice, never used to make it
            m = json.loads(metrics.read_text(encoding="utf-8"))
            best["test_accuracy"], best["test_macro_f1"], best["test_split"] = m["accuracy"], m["macro_f1"], m["split"]
    refit_summary = None
    if refit and best is not None:
        from .refit import refit_best

        refit_summary = refit_best(plan, best, tdir / REFIT, device, callbacks).summary()
    c = counts(recs)
    said = "none" if best is None else f"trial {best['number']}, {plan.metric} {best['value']:.4f}"
    log.info("study %r: %d complete, %d pruned, %d failed; best %s", s.settings["study"], c.complete, c.pruned,
             c.failed, said)  # fmt: skip
    return TuneResult(tdir, s.settings["study"], storage_url(s.url), plan.metric, plan.maximize, s.settings["trials"],
                      c, recs, best, imp, seconds, refit_summary, plan.space.model_dump())  # fmt: skip


def parse_duration(value: float | str | None) -> float | None:
    """Seconds from a number or "90", "90s", "30m", "2h", "1h30m"; None stays None."""
    import re

    if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
        if value is not None and value <= 0:
            raise ConfigError(f"timeout {value}: must be positive")
        return None if value is None else float(value)
    text = str(value).strip().lower()
    parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?", text)
    if not text or parts is None or not any(parts.groups()):
        raise ConfigError(f"timeout {value!r}: expected seconds or a duration such as 90s, 30m, 2h, 1h30m")
    h, m, sec = (float(g) if g else 0.0 for g in parts.groups())
    total = 3600 * h + 60 * m + sec
    if total <= 0:
        raise ConfigError(f"timeout {value!r}: must be positive")
    return total


# -- settings and the tune directory -------------------------------------------------------------


def _new_settings(
    recipe: Recipe, recipe_path, trials, timeout, storage, study, pruner, seed, refit, first
) -> dict[str, Any]:
    from ..data.auto import resolve_auto
    from ..data.prepared import prepare_data
    from .study import make_pruner

    make_pruner(pruner)  # a bad name fails here, before anything is written
    # `auto` keys get their numbers once, from the training split: every trial then trains (and
    # is scored on, for train.monitor) the same resolved recipe with only its own values changed.
    recipe, prepared, chosen = resolve_auto(recipe, prepare_data(recipe))
    for key, c in chosen.items():
        log.info("auto: %s = %s (%s)", key, c["value"], c["why"])
    space = recipe.tune if recipe.tune is not None else default_space(recipe)
    plain = recipe.model_dump(mode="json")
    plain.pop("tune", None)
    inside = all(d.contains(current(plain, k)) for k, d in space.params.items())
    baseline = {k: d.as_param(current(plain, k)) for k, d in space.params.items()} if inside else None
    queued = []
    for values in first:
        bad = [k for k in values if k not in space.params or not space.params[k].contains(values[k])]
        if bad:
            raise ConfigError(f"first trial {values}: {bad[0]} is not a key of the search space or lies outside it")
        queued.append({k: space.params[k].as_param(v) for k, v in values.items()})
    if trials is not None and trials < 1:
        raise ConfigError(f"--trials {trials}: give at least 1")
    return {
        "version": 1,
        "recipe_path": recipe_path,
        "recipe": plain,
        "space": space.model_dump(),
        "space_source": "recipe" if recipe.tune is not None else "default",
        "baseline": baseline,
        "first": queued,
        "metric": recipe.train.monitor,
        "data": data_fingerprint(plain["data"], prepared, recipe.modality),
        "storage": storage,
        "study": study or (Path(recipe_path).stem if recipe_path else "attn"),
        "trials": trials if trials is not None else (None if timeout else 20),
        "pruner": pruner,
        "seed": recipe.train.seed if seed is None else seed,
        "refit": refit,
    }


def _tune_dir(out: str | None, recipe_path: str | None, settings: dict[str, Any]) -> str:
    """--out (joining the tune already there when it searches the same study), else a new
    tunes/<recipe>-<time>."""
    import datetime as dt

    if out is not None:
        p = Path(out)
        if (p.exists() or p.is_symlink()) and not p.is_dir():
            raise OutputError(f"--out {out}: cannot write (not a directory)")
        if (p / SETTINGS).exists():
            have = _read_settings(p)
            if have.get("data", settings["data"]) != settings["data"]:
                raise ConfigError(f"--out {out}: holds a tune of other data (its items or labels differ, e.g. "
                                  "data.* set otherwise); trials on different data cannot share one leaderboard: "
                                  "choose another directory")  # fmt: skip
            if not same_study(have, settings) or have["study"] != settings["study"]:
                raise ConfigError(f"--out {out}: holds another tune (other space, metric or study); "
                                  f"choose another directory, or continue it with --resume {out}")  # fmt: skip
            settings["seed"] = have["seed"]
            log.info("joining the tune in %s", out)
        elif p.exists() and any(p.iterdir()):
            raise ConfigError(f"--out {out}: directory exists and is not a tune directory")
        make_dirs(p)
        return str(p)
    stem = Path(recipe_path).stem if recipe_path else "tune"
    make_dirs("tunes")
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        p = Path("tunes") / (f"{stem}-{stamp}" + (f"-{i + 1}" if i else ""))
        try:
            p.mkdir()
            return str(p)
        except FileExistsError:
            continue
    raise ConfigError("tunes/: could not find a free directory name")


def _write_settings(tdir: Path, settings: dict[str, Any]) -> None:
    """tune.json, with a storage password masked: the file is meant to be read and shared (its
    recipe and space), the password not. The full URL goes to storage.url, readable by its owner
    alone, for --resume."""
    url = settings["storage"]
    shown = storage_url(url) if url else url
    atomic_write_text(tdir / SETTINGS, json.dumps({**settings, "storage": shown}, indent=2) + "\n")
    if shown != url:
        atomic_write_text(tdir / STORAGE_URL, url + "\n", mode=0o600)


def _stored_url(tdir: Path, shown: str | None) -> str | None:
    """The storage URL a tune directory was set up with (see `_write_settings`)."""
    if shown is None:  # SQLite in the tune directory: without it, the trials so far are gone
        if not (tdir / DATABASE).exists():
            raise ConfigError(f"{tdir}: {DATABASE} is missing, so the trials so far are gone and there is nothing to "
                              "resume; start a new tune with another --out")  # fmt: skip
        return None
    if storage_url(shown) != shown or "***" not in shown:
        return shown  # no password (or written before passwords were masked)
    try:
        return (tdir / STORAGE_URL).read_text(encoding="utf-8").strip()
    except OSError as e:
        raise ConfigError(
            f"{tdir}: tune.json's storage password is masked and {STORAGE_URL} cannot be read "
            f"({e.strerror or e}); start the tune again with --storage"
        ) from None


def _read_settings(tdir: Path) -> dict[str, Any]:
    path = tdir / SETTINGS
    if not path.is_file():
        raise ConfigError(f"{tdir}: not a tune directory (no {SETTINGS})")
    try:
        st = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: cannot read ({e})") from None
    if st.get("version") != 1:
        raise ConfigError(f"{path}: written by another version of attn tune")
    return st


def _check_single(recipe: Recipe) -> None:
    """Trials are single models scored on one validation split: an ensemble failed in every
    trial, and folds were ignored by the trials yet kept in best.yaml."""
    t = recipe.train
    for key, value, off in (("train.ensemble", t.ensemble, 1), ("train.folds", t.folds, 0)):
        if value != off:
            raise ConfigError(f"attn tune compares single models on one validation split, so a recipe with {key} "
                              f"{value} cannot be tuned as it is: tune it without (--set {key}={off}), then attn "
                              f"train best.yaml --set {key}={value}")  # fmt: skip


def _check_data(recipe: Recipe) -> None:
    """Trials are scored on the validation split: it must exist (checked before any training)."""
    from ..data.prepared import prepare_data

    prepared = prepare_data(recipe)
    if not prepared.splits.get("val"):
        raise ConfigError(f"attn tune scores trials on the validation split ({recipe.train.monitor}); this recipe "
                          "has no validation examples (set data.val_fraction or a val manifest)")  # fmt: skip


__all__ = ["TuneResult", "tune"]
