"""The loop each `attn tune` process runs (the only process with jobs=1, each worker with
jobs > 1): open the study, fail trials whose process died, ask for a trial, run it, write the
tune directory's views of the study (trials.jsonl, best.yaml, the best link); until the study
has its trials or time is up.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from attn.errors import TrainingError

from ..fsutil import atomic_write_text
from .study import Counts, best_record, counts, record, write_jsonl
from .trial import TRIALS_DIR, Plan, clean_run_dir, describe, run_trial, trial_dir

log = logging.getLogger("attn.tune")

TRIALS, BEST, BEST_LINK = "trials.jsonl", "best.yaml", "best"
MAX_INTERNAL_FAILURES = 3  # trials in a row failing on something that is not a training error: stop


class Session:
    """A process's handle on the study: storage, sampler and pruner, opened from the settings."""

    def __init__(self, url: str, settings: dict[str, Any]) -> None:
        self.url, self.settings, self.storage, self.study = url, settings, None, None

    def open(self, worker: int) -> None:
        from .study import make_pruner, make_sampler, open_storage, open_study

        st = self.settings
        self.storage = open_storage(self.url)
        self.study = open_study(self.storage, st["study"], st["metric"], None, make_pruner(st["pruner"]),
                                fingerprint(st))  # fmt: skip
        # Seeded, but apart per worker and per start: a resumed or second process must not
        # replay the random startup points the first one already tried.
        self.study.sampler = make_sampler(st["seed"] + 1000 * worker + len(self.study.trials), st["trials"])

    def records(self) -> list[dict[str, Any]]:
        return [record(t) for t in self.study.get_trials(deepcopy=False)]


def work(s: Session, plan: Plan, device, callbacks, t0: float) -> None:
    """This process's loop: until the study has its trials (finished or running) or time is up,
    fail trials whose process died, ask for the next trial and run it."""
    from .study import fail_stale

    internal = 0
    while True:
        if plan.deadline is not None and time.time() >= plan.deadline:
            log.info("time is up: no new trials")
            break
        for n in fail_stale(s.study, s.storage):
            log.warning("trial %d was interrupted (its process is gone): marked failed, its values queued again", n)
            clean_run_dir(trial_dir(plan.tune_dir, n), keep_model=False)
        recs = s.records()
        c = counts(recs)
        _call(callbacks, "on_status", status(c, recs, plan, s.settings["trials"], t0))
        if s.settings["trials"] is not None and c.done + c.running >= s.settings["trials"]:
            break
        try:
            rec = run_trial(s.study, s.study.ask(), plan, device, callbacks)
        finally:  # Ctrl-C too: trials.jsonl shows the interrupted trial
            write_outputs(s, plan)
        internal = internal + 1 if rec["state"] == "failed" and _internal(s, rec) else 0
        if internal >= MAX_INTERNAL_FAILURES:
            raise TrainingError(f"{internal} trials in a row failed on an internal error; last: {rec.get('error')}")


def status(c: Counts, recs: list[dict[str, Any]], plan: Plan, requested: int | None, t0: float) -> dict[str, Any]:
    """What a progress display shows: trial counts, the best so far, time spent and left."""
    best = best_record(recs, plan.maximize)
    return {
        "requested": requested, "done": c.done, "complete": c.complete, "pruned": c.pruned, "failed": c.failed,
        "running": c.running, "metric": plan.metric,
        "best": None if best is None else {"number": best["number"], "value": best["value"]},
        "elapsed": time.time() - t0,
        "left": None if plan.deadline is None else max(0.0, plan.deadline - time.time()),
    }  # fmt: skip


def write_outputs(s: Session, plan: Plan) -> list[dict[str, Any]]:
    """trials.jsonl, best.yaml and the best link, from the study (all processes' trials)."""
    recs = s.records()
    tdir = Path(plan.tune_dir)
    atomic_write_text(tdir / TRIALS, write_jsonl(recs))
    best = best_record(recs, plan.maximize)
    if best is not None:
        from ..recipe.load import recipe_to_yaml

        head = (f"# attn tune: the best trial ({best['number']}) of study {s.settings['study']!r}, "
                f"{plan.metric} {best['value']:.4f}\n# {describe(best['values'])}\n")  # fmt: skip
        atomic_write_text(tdir / BEST, head + recipe_to_yaml(plan.recipe(best["values"], source="best trial")))
        here = trial_dir(tdir, best["number"])
        if best.get("run_dir") and Path(best["run_dir"]).resolve() == here.resolve() and here.exists():
            _link(tdir / BEST_LINK, Path(TRIALS_DIR) / here.name)
    return recs


def fingerprint(st: dict[str, Any]) -> dict[str, Any]:
    """What processes sharing a study must agree on: the space, the metric and the data (a tune
    set up before data fingerprints has none, and is compared without it)."""
    return {"space": st["space"], "metric": st["metric"], **({"data": st["data"]} if st.get("data") else {})}


def same_study(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two fingerprints (or settings) agree on every key both have."""
    fa, fb = fingerprint(a), fingerprint(b)
    return all(fa[k] == fb[k] for k in fa.keys() & fb.keys())


def _internal(s: Session, rec: dict[str, Any]) -> bool:
    return bool(s.study.get_trials(deepcopy=False)[rec["number"]].user_attrs.get("internal"))


def _link(link: Path, target: Path) -> None:
    tmp = link.parent / f".{link.name}-{os.getpid()}"
    try:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        tmp.symlink_to(target)
        os.replace(tmp, link)
    except OSError as e:
        log.warning("could not link %s (%s)", link, e.strerror or e)


def _call(callbacks, hook: str, *args) -> None:
    fn = getattr(callbacks, hook, None)
    if fn is not None:
        fn(*args)
