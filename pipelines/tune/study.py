"""The Optuna side of `attn tune`: the storage and the study, trials as plain records, what
counts towards the budget, and finding trials whose process died.

A study lives in a database (SQLite in the tune directory by default, or any SQLAlchemy URL
Optuna accepts), so every process that opens it, on this host or another, shares its trials:
Optuna numbers them in the database, so numbers never collide. Each running trial carries its
host, process id and a heartbeat (user attributes); a trial whose process is gone (same host)
or whose heartbeat stopped (any host) is marked failed ("interrupted") and its values are queued
to run again, so `attn tune --resume DIR` after a kill -9 retries it.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any

from attn.errors import ConfigError

HEARTBEAT_SECONDS = 30.0
STALE_SECONDS = 180.0  # a trial of another host whose heartbeat is older than this is dead
MAXIMIZE = {"val_accuracy": True, "val_macro_f1": True, "val_loss": False}


def storage_url(url: str) -> str:
    """`url` with any password replaced by ***, for messages."""
    head, at, tail = url.rpartition("@")
    if not at or "://" not in head:
        return url
    scheme, _, cred = head.partition("://")
    user = cred.split(":", 1)[0]
    return f"{scheme}://{user}:***@{tail}" if ":" in cred else url


def open_storage(url: str):
    """An Optuna RDBStorage for `url`; a URL that does not open is a ConfigError naming it."""
    import optuna

    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Several processes write one SQLite file: wait for the lock rather than fail at once.
        kwargs["connect_args"] = {"timeout": 120}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except Exception as e:  # noqa: BLE001 - SQLAlchemy and driver errors have no common base we can name
        raise ConfigError(f"--storage {storage_url(url)}: cannot open ({type(e).__name__}: {_line(e)})") from None


def make_sampler(seed: int, trials: int | None):
    """TPE, seeded. Startup trials (random) are a third of the budget, 3 to 10; the constant liar
    keeps parallel processes from sampling the same point."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=max(3, min(10, (trials or 30) // 3)), constant_liar=True
        )


def make_pruner(name: str):
    """median: stop a trial whose metric at an epoch is worse than the median of earlier trials at
    that epoch (after 3 finished trials, never at epoch 1); halving: successive halving (keep the
    best third at epochs 1, 3, 9, ...); none."""
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)  # epochs count from 1
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"--pruner {name!r}: expected median, halving or none")


def open_study(storage, name: str, metric: str, sampler, pruner, fingerprint: dict[str, Any]):
    """Create or load study `name`. A study that already exists must search the same space for
    the same metric (its `fingerprint`), else a ConfigError says what differs."""
    import optuna

    direction = "maximize" if MAXIMIZE[metric] else "minimize"
    try:
        study = optuna.create_study(storage=storage, study_name=name, direction=direction, sampler=sampler,
                                    pruner=pruner, load_if_exists=True)  # fmt: skip
    except Exception as e:  # noqa: BLE001 - the database refused: name the study and the cause
        raise ConfigError(f"study {name!r}: cannot open ({type(e).__name__}: {_line(e)})") from None
    have = study.user_attrs.get("attn")
    if have is None:
        study.set_user_attr("attn", fingerprint)
    elif what := [k for k in fingerprint if have.get(k, fingerprint[k]) != fingerprint[k]]:  # a key it lacks: older
        raise ConfigError(f"study {name!r} in this storage searches another {' and '.join(what)}; "
                          f"give another --study name (or --out directory)")  # fmt: skip
    return study


# -- trials as records -------------------------------------------------------------------------


def record(t) -> dict[str, Any]:
    """One trial as plain data (a line of trials.jsonl)."""
    a = t.user_attrs
    state = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running",
             "WAITING": "waiting"}.get(t.state.name, t.state.name.lower())  # fmt: skip
    value = t.value
    if value is None and t.intermediate_values and state == "pruned":  # where it stood when pruned; a
        value = t.intermediate_values[max(t.intermediate_values)]  # failed or interrupted trial has no score
    seconds = a.get("seconds")  # the trial's own clock: Optuna's start time of a queued trial is its queueing
    out = {
        "number": t.number,
        "state": state,
        "value": value,
        "values": a.get("values", t.params),
        "epochs": a.get("epochs", len(t.intermediate_values)),
        "best_epoch": a.get("best_epoch"),
        "seconds": seconds,
        "host": a.get("host"),
        "pid": a.get("pid"),
        "run_dir": a.get("run_dir"),
    }
    if a.get("error"):
        out["error"] = a["error"]
    if a.get("pruned"):
        out["pruned"] = a["pruned"]
    if a.get("interrupted"):
        out["interrupted"] = True
    if a.get("retry_of") is not None:
        out["retry_of"] = a["retry_of"]
    if a.get("baseline"):
        out["baseline"] = True
    return out


@dataclass(frozen=True)
class Counts:
    complete: int = 0
    pruned: int = 0
    failed: int = 0  # by their own error; interrupted trials are retried and not counted
    interrupted: int = 0
    running: int = 0
    waiting: int = 0

    @property
    def done(self) -> int:
        """Trials that count towards --trials."""
        return self.complete + self.pruned + self.failed


def counts(records: list[dict[str, Any]]) -> Counts:
    n = {k: 0 for k in Counts.__dataclass_fields__}
    for r in records:
        kind = "interrupted" if r.get("interrupted") else r["state"]
        if kind in n:
            n[kind] += 1
    return Counts(**n)


def leaderboard(records: list[dict[str, Any]], maximize: bool) -> list[dict[str, Any]]:
    """Finished trials best first: complete ones by value, then pruned ones, then failures."""
    rank = {"complete": 0, "pruned": 1, "failed": 2, "running": 3, "waiting": 4}

    def key(r):
        v = r["value"]
        v = float("inf") if v is None else (-v if maximize else v)
        return (rank.get(r["state"], 5) + (1 if r.get("interrupted") else 0), v, r["number"])

    return sorted(records, key=key)


def best_record(records: list[dict[str, Any]], maximize: bool) -> dict[str, Any] | None:
    done = [r for r in records if r["state"] == "complete" and r["value"] is not None]
    if not done:
        return None
    return sorted(done, key=lambda r: (-r["value"] if maximize else r["value"], r["number"]))[0]


MIN_IMPORTANCE_TRIALS = 5  # fANOVA over fewer complete trials gives every key the same share: noise


def importances(study) -> dict[str, float]:
    """Optuna's fANOVA parameter importances over the complete trials ({} with fewer than
    MIN_IMPORTANCE_TRIALS: one complete trial gave every key an equal, meaningless share)."""
    import optuna

    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(done) < MIN_IMPORTANCE_TRIALS:
        return {}

    try:
        ev = optuna.importance.FanovaImportanceEvaluator(seed=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = optuna.importance.get_param_importances(study, evaluator=ev)
    except (RuntimeError, ValueError):  # fewer than two complete trials, or nothing varied
        return {}
    return {k: round(float(v), 4) for k, v in got.items()}


# -- who runs which trial ------------------------------------------------------------------------

HOST = socket.gethostname()


def claim(trial) -> None:
    """Mark a trial as run by this process (pid, host, heartbeat; until all are set, another
    process judges it by its start time)."""
    trial.set_user_attr("pid", os.getpid())
    trial.set_user_attr("heartbeat", time.time())
    trial.set_user_attr("host", HOST)


class Heartbeat:
    """While a trial runs, refresh its heartbeat every HEARTBEAT_SECONDS from a thread."""

    def __init__(self, trial) -> None:
        self.trial, self.stop = trial, threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while not self.stop.wait(HEARTBEAT_SECONDS):
            try:
                self.trial.set_user_attr("heartbeat", time.time())
            except Exception:  # noqa: BLE001 - a missed beat is retried; the trial must go on
                pass

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_stale(study, storage) -> list[int]:
    """Mark running trials whose process is gone as failed ("interrupted") and queue their values
    to run again. Returns the numbers of the trials marked."""
    import optuna
    from optuna.trial import TrialState

    marked = []
    study_id = storage.get_study_id_from_name(study.study_name)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        a = t.user_attrs
        if a.get("pid") == os.getpid() and a.get("host") == HOST:
            continue
        if a.get("host") == HOST and isinstance(a.get("pid"), int):
            stale = not _alive(a["pid"])  # on this host the process table knows
        else:  # another host's, or one claimed a moment ago: its last sign of life
            started = t.datetime_start.timestamp() if t.datetime_start is not None else time.time()
            stale = time.time() - float(a.get("heartbeat") or started) > STALE_SECONDS
        if not stale:
            continue
        tid = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        try:
            storage.set_trial_user_attr(tid, "interrupted", True)
            if not storage.set_trial_state_values(tid, TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:  # another process got there first
            continue
        requeue(study, t.number, a.get("values"), t.params, baseline=bool(a.get("baseline")))
        marked.append(t.number)
    return marked


def requeue(study, number: int, values: Any, params: dict[str, Any], baseline: bool = False) -> None:
    """Queue an interrupted trial's parameters to run again as a new trial (the recipe as
    written stays marked as such in its new run)."""
    attrs: dict[str, Any] = {"retry_of": number, **({"baseline": True} if baseline else {})}
    if values is not None:
        attrs["values"] = values
    study.enqueue_trial(params, user_attrs=attrs)


def write_jsonl(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in sorted(records, key=lambda r: r["number"]))


def _line(e: BaseException) -> str:
    return " ".join(str(e).split())[:300]
