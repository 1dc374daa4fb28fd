"""Thread policy on a small, shared machine: what `--threads` should default to.

A short training epoch (the quick-start recipe, 100 clips per class, 1 epoch) and a predict run
(400 one-second clips with the model just trained), each in a fresh process, under four
policies:
    default   torch's own choice (one intra-op thread per physical core)
    1         torch.set_num_threads(1)
    1+interop torch.set_num_threads(1) and torch.set_num_interop_threads(1)
    auto      what the CLI does when neither --threads nor $ATTN_THREADS is given
              (attn.cli.common.auto_threads: the cores other work leaves free, at least 1)
on the cores as found (a shared machine: its load average is recorded) and with two CPU hogs
(`python -c 'while 1: pass'`) started beside them. Each figure is the median of `repeats` runs;
the ratio is torch's default time over the policy's (> 1: the policy is faster).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from contextlib import contextmanager

from .common import REPO, case

POLICIES = ("default", "1", "1+interop", "auto")
WORKER = r"""
import json, sys, time
mode, policy, out, recipe = sys.argv[1:5]
import torch
if policy == "1+interop":
    torch.set_num_interop_threads(1)
if policy.startswith("1"):
    torch.set_num_threads(1)
elif policy == "auto":
    from attn.cli.common import auto_threads
    torch.set_num_threads(auto_threads())
import attn
if mode == "train":
    r = attn.train(recipe, overrides=["train.epochs=1", "data.synthetic.per_class=100"], out=out, device="cpu")
    seconds = r.seconds
else:
    import numpy as np
    m = attn.load(out)
    rng, sr = np.random.default_rng(0), 16000
    t = np.arange(sr) / sr
    clips = [((0.3 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t)).astype(np.float32), sr) for _ in range(400)]
    t0 = time.perf_counter()
    m.predict(clips)
    seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "threads": torch.get_num_threads()}))
"""


@contextmanager
def hogs(n: int):
    """`n` busy processes (pure Python loops), stopped on exit."""
    procs = [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def _run(mode: str, policy: str, out: str, cwd: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("ATTN_THREADS", "OMP_NUM_THREADS")}
    r = subprocess.run([sys.executable, "-c", WORKER, mode, policy, out, str(REPO / "recipes" / "quickstart.yaml")],
                       cwd=cwd, env=env, capture_output=True, text=True, timeout=900)  # fmt: skip
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-800:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def thread_policy(quick: bool = False) -> list[dict]:
    repeats = 1 if quick else 2
    work = tempfile.mkdtemp(prefix="attn-threads-")  # runs/latest of these runs lands here, not in the repo
    model = os.path.join(work, "model")
    _run("train", "1", model, work)  # the model the predict runs load
    rows = []
    for condition, n_hogs in (("cores as found", 0), ("+2 CPU hogs", 2)):
        with hogs(n_hogs):
            times: dict[tuple[str, str], list[float]] = {}
            threads: dict[tuple[str, str], int] = {}
            for i in range(repeats):
                for mode in ("train", "predict"):
                    for policy in POLICIES:  # interleaved: a change in the machine's load hits all alike
                        out = os.path.join(work, f"{mode}-{policy}-{n_hogs}-{i}") if mode == "train" else model
                        got = _run(mode, policy, out, work)
                        times.setdefault((mode, policy), []).append(got["seconds"])
                        threads[(mode, policy)] = got["threads"]
            load = round(os.getloadavg()[0], 1)  # at the end: the 1-minute average lags the hogs' start
        for mode, what in (("train", "1 training epoch, quickstart, 480 clips"), ("predict", "predict 400 x 1 s")):
            ref = statistics.median(times[(mode, "default")])
            for policy in POLICIES[1:]:
                t = statistics.median(times[(mode, policy)])
                rows.append(case(f"threads ({condition}): {mode}, {policy} vs torch default", what,
                                 f"torch default ({threads[(mode, 'default')]} threads)", t, ref, "s",
                                 higher_is_better=False, threads=threads[(mode, policy)], load_avg=load,
                                 runs=repeats))  # fmt: skip
    return rows
