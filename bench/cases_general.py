"""The general recipes on every developer set, as a user would run them: a recipe that extends
recipes/audio.yaml or recipes/text.yaml and changes only the data section, trained from the
command line. Each row: attn's mean test accuracy over seeds against the baseline the same runs
fitted, with the bar it has to reach and the slowest run's wall time.

    python -m bench --cases general            # 3 seeds for text, 1 for audio (about an hour on 2 cores)
    python -m bench --cases general --quick    # 1 seed each, a few epochs: a smoke run
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import REPO, attn_cmd, case, data_root

# (set, general recipe, data section relative to the shared data folder, text?, test-accuracy bar)
SETS = [
    ("FSDD", "audio.yaml", {"manifest": "fsdd/labels.csv"}, False, 0.99),
    ("ESC-10", "audio.yaml", {"manifest": "esc10/labels.csv"}, False, 0.90),
    ("TREC", "text.yaml", {"train": "trec/train.csv", "test": "trec/test.csv"}, True, 0.906),
    ("SST-2", "text.yaml", {"train": "sst2/train.csv", "val": "sst2/val.csv", "test": "sst2/test.csv"}, True, 0.83),
]
SEEDS = {True: (0, 1, 2), False: (0,)}
TIME_LIMIT = 600  # seconds of training per run on this machine (the bar)


def general(quick: bool = False) -> list[dict]:
    root = data_root()
    if root is None:
        return [{"case": "general recipes", "skipped": "shared data not found"}]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, general_recipe, data, text, bar in SETS:
            runs = [train_run(Path(tmp), name, general_recipe, data, root, seed, quick) for seed in
                    (SEEDS[text][:1] if quick else SEEDS[text])]  # fmt: skip
            rows.append(recipe_row(name, general_recipe, runs, bar, TIME_LIMIT))
    return rows


def recipe_row(name: str, recipe: str, runs: list[dict], bar: float, time_limit: float, **extra) -> dict:
    """One table row for a recipe's runs over seeds (`train_run` results): mean test accuracy
    against the in-run baseline's, the bar, the slowest run, each run's facts."""
    bad = [r for r in runs if "error" in r]
    if bad:
        return {"case": f"{name}: recipes/{recipe}", "error": bad[0]["error"]}
    acc = float(np.mean([r["test"] for r in runs]))
    base = float(np.mean([r["baseline_test"] for r in runs]))
    slowest = max(r["wall"] for r in runs)
    return case(
        f"{name}: recipes/{recipe}, data section only (mean of {len(runs)} seed(s))",
        name, "in-run baseline, same runs", acc, base, "test accuracy",
        f">= {bar:g}, beat the baseline, <= {time_limit} s",
        acc >= bar and acc > base and slowest <= time_limit,
        seeds=[r["seed"] for r in runs], tests=[round(r["test"], 4) for r in runs],
        vals=[r["val"] for r in runs], network_tests=[round(r["network_test"], 4) for r in runs],
        blend_weights=[r["blend_weight"] for r in runs], baseline=runs[0]["baseline_kind"],
        epochs=[f"{r['best_epoch']}/{r['epochs']}" for r in runs], wall_seconds=[r["wall"] for r in runs], **extra,
    )  # fmt: skip


def train_run(tmp: Path, name: str, general_recipe: str, data: dict, root: Path, seed: int, quick: bool,
              epochs: int = 2, sets: tuple[str, ...] = ()) -> dict:  # fmt: skip
    recipe = tmp / f"{name}.yaml"
    section = {k: str(root / v) for k, v in data.items()}
    recipe.write_text(json.dumps({"extends": str(REPO / "recipes" / general_recipe), "data": section}))
    out = tmp / f"{name}-{seed}"
    extra = (["--set", f"train.epochs={epochs}"] if quick else []) + [a for s in sets for a in ("--set", s)]
    t0 = time.perf_counter()
    r = subprocess.run([*attn_cmd(), "train", str(recipe), "--seed", str(seed), "--out", str(out), "--quiet",
                        "--format", "json", *extra], capture_output=True, text=True)  # fmt: skip
    wall = round(time.perf_counter() - t0)
    if r.returncode != 0:
        return {"error": r.stderr.strip()[-300:]}
    metrics = json.loads((out / "metrics.json").read_text())
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    best = [h for h in history if h.get("best")][-1]
    blend = metrics.get("blend") or {}
    return {
        "seed": seed, "test": metrics["accuracy"], "val": best.get("val_accuracy"), "wall": wall,
        "network_test": blend.get("network_accuracy", metrics["accuracy"]), "blend_weight": blend.get("weight", 0.0),
        "baseline_test": metrics["baseline"]["accuracy"], "baseline_kind": metrics["baseline"]["kind"],
        "best_epoch": best["epoch"], "epochs": len(history), "run_dir": str(out),
    }  # fmt: skip


def esc10_refit(quick: bool = False) -> list[dict]:
    """Issue 24's ESC-10 bar: the general audio recipe, data section only, seed 0. `refit: auto`
    sees validation (fold 4) hold 25% of the labels: early stopping picks the epoch count there,
    then the network and the baseline are trained again on folds 1-4; the test is fold 5 (80 clips,
    1.25 points each). ~10 min on 2 idle cores."""
    root = data_root()
    if root is None:
        return [{"case": "ESC-10 with the refit", "skipped": "shared data not found"}]
    with tempfile.TemporaryDirectory() as tmp:
        run = train_run(Path(tmp), "ESC-10", "audio.yaml", {"manifest": "esc10/labels.csv"}, root, 0, quick)
    if "error" in run:
        return [{"case": "ESC-10 with the refit", "error": run["error"]}]
    return [case(
        "ESC-10 with the refit: recipes/audio.yaml, data section only (seed 0)", "ESC-10, test fold 5 (80 clips)",
        "in-run baseline, same run", run["test"], run["baseline_test"], "test accuracy", ">= 0.92, beat the baseline",
        run["test"] >= 0.92 and run["test"] > run["baseline_test"], val=run["val"], network_test=run["network_test"],
        blend_weight=run["blend_weight"], epochs=f"{run['best_epoch']}/{run['epochs']}", wall_seconds=run["wall"],
    )]  # fmt: skip
