"""`attn listen --events` with the post-processing stored in the digits model (tuned on the
fsdd_scenes val recordings at training: the noise-floor gate, classify: segments): each test
recording streamed through the command as raw PCM on stdin (as fast as it is read, not
--realtime), its events scored as `attn evaluate --events` scores a file's (sed_eval, the same
collars), beside `attn evaluate --events` on the files themselves; then the real-time factor and
the peak memory of an hour of stream with --events.

    python -m bench --cases listen_events     # about 10 minutes on 2 shared cores
"""

from __future__ import annotations

import json
import os
import subprocess
import time

from .cases_listen import _digits_model, _env, _scenes_pcm, memory_case
from .common import attn_cmd, case, data_root

F1_BAR, ER_BAR = 0.90, 0.20


def _stream(model: str, path: str) -> tuple[list[dict], float]:
    """The events `attn listen --events` writes for one recording streamed as f32le PCM (the
    samples soundfile decodes, as predict reads the file): (records, wall seconds)."""
    import soundfile as sf

    x, sr = sf.read(path, dtype="float32", always_2d=True)
    t0 = time.perf_counter()
    r = subprocess.run([*attn_cmd(), "listen", "-m", model, "--events", "--pcm", "f32le", "--rate", str(sr),
                        "--channels", str(x.shape[1]), "--threads", "1", "--quiet"],
                       input=x.astype("<f4").tobytes(), capture_output=True, env=_env(), check=True)  # fmt: skip
    return [json.loads(line) for line in r.stdout.decode().splitlines()], time.perf_counter() - t0


def live_accuracy(model: str, scenes, split: str = "test") -> tuple[dict, dict, float]:
    """(live metrics, offline metrics, live wall seconds) on the split's recordings."""
    import attn
    from attn.pipelines.data.annotations import load_annotated
    from attn.pipelines.infer.events import Event
    from attn.pipelines.infer.events_predict import event_metrics

    m = attn.load(model)
    reference = load_annotated(str(scenes / "events.csv"), str(scenes / "files.csv"), split)
    estimated, wall = {}, 0.0
    for name in reference.files:
        records, seconds = _stream(model, name)
        wall += seconds
        estimated[name] = [Event(r["label"], r["start"], r["end"], r["score"]) for r in records]
    live = event_metrics(reference, estimated, m.labels)
    offline = m.evaluate_events(scenes / "events.csv", scenes / "files.csv", split)
    return live, offline, wall


def listen_events(quick: bool = False) -> list[dict]:
    root = data_root()
    if root is None or not (root / "fsdd_scenes" / "events.csv").exists():
        return [{"case": "listen_events", "skipped": "shared data (fsdd_scenes) not found"}]
    import attn

    model, what = _digits_model(root)
    settings = (attn.load(model).info().get("events") or {}).get("settings")
    load0 = os.getloadavg()[0]
    live, offline, wall = live_accuracy(model, root / "fsdd_scenes")
    pcm = _scenes_pcm(root)
    minutes = 10.0 if quick else 60.0
    load1 = os.getloadavg()[0]
    common = {"model": what, "settings": settings, "load_avg_before": round(load0, 2),
              "load_avg_after": round(load1, 2), "threads": 1}  # fmt: skip
    f1, er = live["event_f1"], live["event_error_rate"]
    return [
        case(
            "listen --events: fsdd_scenes test, the model's stored post-processing, streamed",
            f"15 test recordings, {live['reference_events']} events, f32le PCM on stdin",
            "attn evaluate --events on the files",
            f1,
            offline["event_f1"],
            "event-based F1",
            f"F1 >= {F1_BAR}, error rate <= {ER_BAR}",
            f1 >= F1_BAR and er <= ER_BAR,
            event_error_rate=round(er, 4),
            offline_event_error_rate=round(offline["event_error_rate"], 4),
            segment_f1=round(live["segment_f1"], 4),
            offline_segment_f1=round(offline["segment_f1"], 4),
            estimated_events=live["estimated_events"],
            stream_wall_seconds=round(wall, 1),
            **common,
        ),  # fmt: skip
        memory_case("listen --events", "events", model, pcm, minutes, common, events=True),
    ]
