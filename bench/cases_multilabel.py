"""Multi-label tagging (issue 20) with the general recipes, only the data section set: test
macro-F1 and macro mAP against the one-vs-rest baseline the same run fitted.

    python -m bench --cases multilabel          # ESC-10 mixtures (audio), GoEmotions (text, text_pretrained)
    python -m bench --cases multilabel --quick  # 2 epochs each: a smoke run

`rows_from_runs` builds the same rows from run directories trained by hand with the same recipes
(what BENCHMARKS.md records when the runs were made outside the bench)."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from .common import REPO, attn_cmd, case, data_root

# (set, general recipe, data section (paths relative to the shared data folder), macro-F1 bar, mAP bar)
SETS = [
    ("ESC-10 mixtures", "audio.yaml",
     {"manifest": "esc10_mix/labels.csv", "label_column": "labels", "multi_label": True}, 0.75, 0.85),
    ("GoEmotions", "text.yaml", {"manifest": "goemotions/data.csv", "multi_label": True}, 0.42, None),
    ("GoEmotions", "text_pretrained.yaml", {"manifest": "goemotions/data.csv", "multi_label": True}, 0.46, None),
]  # fmt: skip


def multilabel(quick: bool = False) -> list[dict]:
    root = data_root()
    if root is None:
        return [{"case": "multi-label", "skipped": "shared data not found"}]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, recipe, data, f1_bar, map_bar) in enumerate(SETS):
            run, wall, err = train(Path(tmp) / f"run{i}", recipe, data, root, quick)
            rows.append({"case": f"{name}: recipes/{recipe}", "error": err} if err else
                        row(name, recipe, run, wall, f1_bar, map_bar))  # fmt: skip
    return rows


def train(out: Path, recipe: str, data: dict, root: Path, quick: bool) -> tuple[Path, float, str | None]:
    section = {k: str(root / v) if k == "manifest" else v for k, v in data.items()}
    path = out.with_suffix(".yaml")
    path.write_text(json.dumps({"extends": str(REPO / "recipes" / recipe), "data": section}))
    extra = ["--set", "train.epochs=2"] if quick else []
    t0 = time.perf_counter()
    r = subprocess.run([*attn_cmd(), "train", str(path), "--out", str(out), "--quiet", "--threads", "1", *extra],
                       capture_output=True, text=True)  # fmt: skip
    return out, round(time.perf_counter() - t0), (r.stderr.strip()[-300:] if r.returncode else None)


def row(name: str, recipe: str, run: Path, wall: float, f1_bar: float, map_bar: float | None) -> dict:
    """One table row from a run directory's metrics.json and history.jsonl."""
    m = json.loads((run / "metrics.json").read_text())
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines() if line.strip()]
    best = [h for h in history if h.get("best")][-1]
    base = m["baseline"]
    met = m["macro_f1"] >= f1_bar and m["macro_f1"] > base["macro_f1"]
    goal = f"macro-F1 >= {f1_bar:g}"
    if map_bar is not None:
        met = met and m["macro_map"] >= map_bar and m["macro_map"] > base.get("macro_map", 0)
        goal += f", macro mAP >= {map_bar:g}"
    return case(
        f"{name}: recipes/{recipe}, data section only (seed 0)", name, "in-run one-vs-rest baseline",
        m["macro_f1"], base["macro_f1"], "test macro-F1", goal + ", beat the baseline", met,
        macro_map=round(m["macro_map"], 4), micro_f1=round(m["micro_f1"], 4),
        baseline_macro_map=base.get("macro_map"), exact_match=round(m["exact_match"], 4),
        blend_weight=(m.get("blend") or {}).get("weight", 0.0), best_epoch=f"{best['epoch']}/{len(history)}",
        val_loss=best.get("val_loss"), wall_seconds=wall, threads=1, load_avg=round(os.getloadavg()[0], 1),
    )  # fmt: skip


def rows_from_runs(runs: list[tuple[int, str, float]]) -> list[dict]:
    """Rows for runs trained by hand: (index into SETS, run directory, wall seconds)."""
    return [row(SETS[i][0], SETS[i][1], Path(d), wall, SETS[i][3], SETS[i][4]) for i, d, wall in runs]
