"""Calibrated scores and `unknown` (issue 20, part 2), as a user would get them: the general
recipes with only the data section set, trained from the command line, temperature scaling on
(the default) and, for ESC-10, `train.abstain.target_precision=0.95` and `train.abstain.novelty=0.95`.

Rows: test ECE after temperature scaling on SST-2 (text.yaml) and ESC-10 (audio.yaml), with ECE
at T = 1 as the reference; the ESC-10 model's share of FSDD test digits (spoken digits it never
saw, not environmental sounds) answered `unknown`; its accuracy on the ESC-10 test clips it
answers. T and the min score come from validation only (the model file says which).

    python -m bench --cases calibration                 # trains both (about 45 min on 2 busy cores)
    ATTN_BENCH_CALIB_RUNS=/work/runs/calib20 python -m bench --cases calibration
        # measures run directories trained that way instead (esc10-s<seed>/, sst2-s<seed>/); the
        # ESC-10 model there was trained before train.abstain.novelty and given its check after
        # training with attn.load(...).fit_novelty(0.95), which fits it the same way
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from .cases_general import train_run
from .common import attn_cmd, case, data_root

ECE_BAR = 0.03
UNKNOWN_BAR, ANSWERED_BAR = 0.80, 0.95
ESC10 = ("ESC-10", "audio.yaml", {"manifest": "esc10/labels.csv"},
         ("train.abstain.target_precision=0.95", "train.abstain.novelty=0.95"))  # fmt: skip
SST2 = ("SST-2", "text.yaml", {"train": "sst2/train.csv", "val": "sst2/val.csv", "test": "sst2/test.csv"}, ())
SEEDS = {"ESC-10": (0,), "SST-2": (0, 1, 2)}  # ESC-10 with its refit: ~25 min a seed on busy cores


def calibration(quick: bool = False) -> list[dict]:
    root = data_root()
    if root is None:
        return [{"case": "calibration", "skipped": "shared data not found"}]
    stored = os.environ.get("ATTN_BENCH_CALIB_RUNS")
    with tempfile.TemporaryDirectory() as tmp:
        runs = {}
        for name, recipe, data, sets in (ESC10, SST2):
            runs[name] = []
            for seed in SEEDS[name]:
                rd = Path(stored) / f"{name.lower().replace('-', '')}-s{seed}" if stored else None
                if rd is None:
                    r = train_run(Path(tmp), name, recipe, data, root, seed, quick, sets=sets)
                    if "error" in r:
                        return [{"case": f"calibration: {name}", "error": r["error"]}]
                    rd = Path(r["run_dir"])
                runs[name].append(
                    {"seed": seed, "run_dir": rd, "metrics": json.loads((rd / "metrics.json").read_text())}
                )
        rows = [ece_row(name, recipe, runs[name]) for name, recipe, *_ in (ESC10, SST2)]
        rows.append(unknown_row(runs["ESC-10"], root))
    return rows


def ece_row(name: str, recipe: str, runs: list[dict]) -> dict:
    cal = [r["metrics"]["calibration"] for r in runs]
    after, before = float(np.mean([c["ece"] for c in cal])), float(np.mean([c["ece_before"] for c in cal]))
    return case(
        f"calibration {name}: recipes/{recipe}, data section only (mean of {len(runs)} seed(s))",
        f"{name} test split, {cal[0]['binning']}", "the same model at T = 1", after, before, "test ECE",
        f"<= {ECE_BAR}", after <= ECE_BAR, higher_is_better=False, seeds=[r["seed"] for r in runs],
        temperatures=[c["temperature"] for c in cal], val_ece=[[c["val_ece_before"], c["val_ece"]] for c in cal],
        fitted_on=cal[0]["fitted_on"], test_accuracy=[r["metrics"]["accuracy"] for r in runs],
        ece_if_perfectly_calibrated=[_noise(c) for c in cal],
    )  # fmt: skip


def _noise(cal: dict) -> str | None:
    """The ECE range a perfectly calibrated model with the same test scores would show
    (calibration.ece_if_calibrated; older run directories lack it)."""
    n = cal.get("ece_if_calibrated")
    return None if not n else f"{n['p5']}-{n['p95']} (median {n['median']}, {n['clips']} clips)"


def unknown_row(runs: list[dict], root: Path) -> dict:
    """The ESC-10 model on FSDD's test digits: the share answered `unknown` at its stored min score."""
    items = [line.split(",")[0] for line in (root / "fsdd" / "labels.csv").read_text().splitlines()[1:]
             if line.rstrip().endswith(",test")]  # fmt: skip
    paths = "\n".join(str(root / "fsdd" / p) for p in items) + "\n"
    shares, answered, coverage, scores, checks = [], [], [], [], []
    for r in runs:
        model = str(r["run_dir"] / "model.attn")
        out = subprocess.run([*attn_cmd(), "predict", "-", "--model", model, "--format", "jsonl", "--quiet"],
                             input=paths, capture_output=True, text=True, check=True)  # fmt: skip
        recs = [json.loads(line) for line in out.stdout.splitlines()]
        shares.append(float(np.mean([rec["label"] == "unknown" for rec in recs])))
        ev = subprocess.run([*attn_cmd(), "evaluate", "--model", model, "--split", "test", "--format", "json",
                             "--quiet"], capture_output=True, text=True, check=True)  # fmt: skip
        ab = json.loads(ev.stdout)["abstention"]  # the model file as it is: min score and any novelty check
        both = ab.get("novelty") or ab
        answered.append(both["accuracy"])
        coverage.append(both["coverage"])
        scores.append(ab["min_score"])
        checks.append({k: ab["novelty"][k] for k in ("min_similarity", "neighbors")} if "novelty" in ab else None)
    share, acc = float(np.mean(shares)), float(np.mean(answered))
    cal = r["metrics"]["calibration"]
    return case(
        f"abstention: the ESC-10 model (min score for {cal['abstain']['target_precision']} validation "
        f"precision{', novelty check' if any(checks) else ''}) on FSDD test digits",
        f"{len(items)} FSDD test clips (never seen, not environmental sounds)",
        "-", share, 0.0, "share answered unknown",
        f">= {UNKNOWN_BAR} unknown, >= {ANSWERED_BAR} accurate on the ESC-10 test clips answered",
        share >= UNKNOWN_BAR and acc >= ANSWERED_BAR, min_scores=scores, novelty=checks,
        esc10_answered_accuracy=answered, esc10_test_coverage=coverage,
        val_precision=[r["metrics"]["calibration"]["abstain"]["val_precision"] for r in runs],
    )  # fmt: skip
