"""Saving a run's epochs: the trainer's checkpoint policy (after every epoch, or every few when
saving one takes longer than ~10% of an epoch: train/epoch_saver.EpochSaver) against saving after
every epoch, the policy before it. Both sides are whole `attn.train` runs of the general text
recipe on a small generated set, in this process, side by side."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from .common import case

WORDS = {"pos": ["great", "loved", "wonderful", "superb", "brilliant"],
         "neg": ["awful", "hated", "dull", "weak", "bad"]}  # fmt: skip


def _data(folder: Path) -> Path:
    import csv
    import random

    rng = random.Random(0)
    rows = [(f"{rng.choice(WORDS[lab])} film , {rng.choice(WORDS[lab])} cast", lab) for lab in WORDS for _ in range(40)]
    path = folder / "texts.csv"
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([("text", "label"), *rows])
    return path


def checkpoints(quick: bool = False) -> list[dict]:
    import attn
    from attn.pipelines.train import epoch_saver

    repeats = 1 if quick else 3
    with tempfile.TemporaryDirectory() as tmp:
        texts = _data(Path(tmp))
        sets = [f"data.train={texts}", "data.test=null"]  # the general recipe, data section only
        policy = epoch_saver.SAVE_SHARE
        times: dict[str, list[float]] = {"ours": [], "every": []}
        for i in range(repeats):
            for side, share in (("every", 1.0), ("ours", policy)):  # 1.0: a save is always due
                epoch_saver.SAVE_SHARE = share
                try:
                    t0 = time.perf_counter()
                    res = attn.train("recipes/text.yaml", sets, out=Path(tmp) / f"{side}{i}", device="cpu")
                    times[side].append(time.perf_counter() - t0)
                finally:
                    epoch_saver.SAVE_SHARE = policy
        epochs = res.epochs_run
    ours, every = statistics.median(times["ours"]), statistics.median(times["every"])
    return [case("checkpoint policy", f"recipes/text.yaml on 80 generated texts ({epochs} epochs), "
                 "whole attn.train run", "the same run saving after every epoch", ours, every, "s",
                 higher_is_better=False, repeats=repeats)]  # fmt: skip
