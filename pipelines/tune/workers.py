"""`attn tune --jobs J`: J worker processes on this host, each running trials against the one
study (the database hands out trial numbers), while this process reports progress from the
study itself.

Each worker gets an equal share of the CPU threads (torch.set_num_threads), or its own GPU when
the device is CUDA and there are several. A worker stops when its parent does (kill -9
included), so no orphan keeps training; its trial is then found interrupted by the next process
that opens the study and runs again.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import threading
import time
from typing import Any

from attn.errors import Interrupted, TrainingError

from .loop import Session, status, work
from .study import counts
from .trial import outcome

log = logging.getLogger("attn.tune")

POLL_SECONDS = 1.0


def run_workers(session, plan, jobs: int, device: str, threads: int | None, callbacks, t0: float) -> None:
    """Start `jobs` workers and wait for them, reporting each trial that ends (any process's)."""
    per_worker = max(1, (threads or os.cpu_count() or 1) // jobs)
    devices = _devices(device, jobs)
    ctx = mp.get_context("spawn")  # a fresh interpreter: no forked torch or database state
    procs = [ctx.Process(target=worker_main, args=(session.url, session.settings, plan, i, devices[i], per_worker,
                                                     os.getpid()), daemon=False)  # fmt: skip
             for i in range(jobs)]  # fmt: skip
    log.info("%d worker processes, %d CPU thread%s each%s", jobs, per_worker, "s" if per_worker > 1 else "",
             "" if devices[0] in ("cpu", "auto") else f", devices {', '.join(devices)}")  # fmt: skip
    for p in procs:
        p.start()
    seen: set[int] = {r["number"] for r in session.records() if r["state"] not in ("running", "waiting")}
    try:
        while True:
            alive = [p for p in procs if p.is_alive()]
            recs = session.records()
            for r in recs:
                if r["number"] not in seen and r["state"] not in ("running", "waiting"):
                    seen.add(r["number"])
                    log.info("trial %d %s", r["number"], outcome(r, plan.metric))
                    _call(callbacks, "on_trial_end", r)
            _call(callbacks, "on_status", status(counts(recs), recs, plan, session.settings["trials"], t0))
            if not alive:
                break
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        for p in procs:  # Ctrl-C reached them too (one process group); let them mark their trials
            p.join(timeout=30)
        raise Interrupted(f"interrupted; continue with: attn tune --resume {plan.tune_dir}") from None
    failed = [p.exitcode for p in procs if p.exitcode not in (0, None)]
    if failed:
        raise TrainingError(f"{len(failed)} of {jobs} tune workers failed (exit codes {failed}); see the log above")


def worker_main(url: str, settings: dict[str, Any], plan, index: int, device: str, threads: int, parent: int) -> None:
    """One worker process: the same loop as a single-process tune, on its own device and threads."""
    import optuna
    import torch

    from ..device import resolve_device

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    torch.set_num_threads(threads)
    session = Session(url, settings)
    session.open(worker=index + 1)
    try:
        work(session, plan, resolve_device(device), None, time.time())
    except Interrupted:
        raise SystemExit(130) from None
    except Exception as e:  # noqa: BLE001 - the parent reports the exit code; say why here
        logging.getLogger("attn").error("tune worker %d: %s", index, e)
        raise SystemExit(1) from None


def _exit_with_parent(parent: int) -> None:
    """Poll for the parent's death (its pid is no longer our parent) and exit at once."""
    while True:
        if os.getppid() != parent:
            os._exit(1)
        time.sleep(1.0)


def _devices(device: str, jobs: int) -> list[str]:
    """One device spec per worker: round-robin over the GPUs when the device is CUDA (not a
    numbered one) and there are several; else the same spec for all."""
    if device in ("auto", "cuda"):
        import torch

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n > 1:
            return [f"cuda:{i % n}" for i in range(jobs)]
    return [device] * jobs


def _call(callbacks, hook: str, *args) -> None:
    fn = getattr(callbacks, hook, None)
    if fn is not None:
        fn(*args)
