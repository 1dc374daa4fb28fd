"""Shared helpers for the benchmark cases: timing, data location, machine facts."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def data_root() -> Path | None:
    root = Path(os.environ.get("ATTN_DATA") or REPO.parent / "shared" / "data")
    return root if (root / "fsdd" / "labels.csv").exists() else None


def median_time(fn, repeats: int = 3, warmup: int = 1) -> float:
    """Median wall seconds of `fn()` over `repeats` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def command_time(cmd: list[str], repeats: int = 5, cwd=None, env=None, stdin=None) -> float:
    """Median wall seconds of a whole command (process start included)."""
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        r = subprocess.run(cmd, cwd=cwd, env=env, input=stdin, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if r.returncode not in (0, 1):
            raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr[-500:]}")
    return statistics.median(times[1:])  # the first run warms the page cache


def attn_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("attn")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "attn.cli"]


def machine() -> dict:
    import torch

    return {
        "cpu_cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def case(name: str, measured: str, reference: str, ours: float, ref: float, unit: str, goal: str = "",
         met: bool | None = None, higher_is_better: bool = True, **extra) -> dict:  # fmt: skip
    """One row of the table: ratio > 1 always means attn is better."""
    ratio = (ours / ref if higher_is_better else ref / ours) if ours and ref else None
    return {"case": name, "measured": measured, "reference": reference, "attn": round(ours, 4),
            "ref": round(ref, 4), "unit": unit, "ratio": None if ratio is None else round(ratio, 3),
            "goal": goal, "met": met, **extra}  # fmt: skip


def load_resolved(path: str, overrides: list[str] | None = None):
    """A shipped recipe with its `auto` and millisecond values resolved from its training data,
    as `attn train` resolves them."""
    from attn.pipelines.data.auto import resolve_auto
    from attn.pipelines.data.prepared import prepare_data
    from attn.pipelines.recipe.load import load_recipe

    r = load_recipe(path, overrides or [])
    return resolve_auto(r, prepare_data(r))[0]
