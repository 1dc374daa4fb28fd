"""Sound events in long recordings (issue 21): a digits model trained by the general audio recipe
on FSDD (data section only: the manifest, and `data.events` naming the fsdd_scenes val recordings
the post-processing is tuned on after training), then `attn evaluate --events` on the fsdd_scenes
test recordings: sed_eval's event-based F1 and error rate (collars: onset 200 ms, offset the
larger of 200 ms and half the event) against the issue's bar.

    python -m bench --cases events     # one training run (about 11 minutes on 2 shared cores) + tuning
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path

from .common import REPO, attn_cmd, case, data_root

F1_BAR, ER_BAR = 0.90, 0.20


def events(quick: bool = False) -> list[dict]:
    root = data_root()
    if root is None or not (root / "fsdd_scenes" / "events.csv").exists():
        return [{"case": "events: fsdd_scenes", "skipped": "shared data (fsdd, fsdd_scenes) not found"}]
    scenes = root / "fsdd_scenes"
    with tempfile.TemporaryDirectory() as tmp:
        recipe = Path(tmp) / "digits_events.yaml"
        data = {"manifest": str(root / "fsdd" / "labels.csv"),
                "events": {"annotations": str(scenes / "events.csv"), "files": str(scenes / "files.csv"),
                           "split": "val"}}  # fmt: skip
        recipe.write_text(json.dumps({"extends": str(REPO / "recipes" / "audio.yaml"), "data": data}))
        out = Path(tmp) / "run"
        extra = ["--set", "train.epochs=2"] if quick else []
        t0 = time.perf_counter()
        r = subprocess.run([*attn_cmd(), "train", str(recipe), "--out", str(out), "--quiet", "--threads", "1",
                            "--format", "json", *extra], capture_output=True, text=True)  # fmt: skip
        wall = round(time.perf_counter() - t0)
        if r.returncode != 0:
            return [{"case": "events: fsdd_scenes", "error": r.stderr.strip()[-300:]}]
        t1 = time.perf_counter()
        ev = subprocess.run([*attn_cmd(), "evaluate", "-m", str(out / "model.attn"), "--events",
                             str(scenes / "events.csv"), "--files", str(scenes / "files.csv"), "--split", "test",
                             "--format", "json", "--quiet"], capture_output=True, text=True)  # fmt: skip
        if ev.returncode != 0:
            return [{"case": "events: fsdd_scenes", "error": ev.stderr.strip()[-300:]}]
        m = json.loads(ev.stdout)
        info = json.loads(subprocess.run([*attn_cmd(), "info", str(out / "model.attn"), "--format", "json"],
                                         capture_output=True, text=True, check=True).stdout)  # fmt: skip
        history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
        tuned = info["events"]
    return [
        case(
            "events: fsdd_scenes test, digits model by recipes/audio.yaml (data section only), "
            "post-processing tuned on val",
            "15 test recordings, 71 events", "the issue's bar", m["event_f1"], F1_BAR, "event-based F1",
            f"F1 >= {F1_BAR}, error rate <= {ER_BAR}", m["event_f1"] >= F1_BAR and m["event_error_rate"] <= ER_BAR,
            event_error_rate=round(m["event_error_rate"], 4), segment_f1=round(m["segment_f1"], 4),
            val_event_f1=round(tuned["tuned_on"]["event_f1"], 4), settings=tuned["settings"],
            epochs=len(history), train_wall_seconds=wall, evaluate_seconds=round(time.perf_counter() - t1),
            threads=1,
        )
    ]  # fmt: skip
