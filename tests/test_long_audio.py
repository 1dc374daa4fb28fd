"""Long recordings: predicted in windows with bounded memory, with a per-window timeline."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import soundfile as sf

PEAK_RSS = """
import json, resource, sys
from attn.cli.app import app
try:
    app(sys.argv[1:])
except SystemExit as e:
    code = e.code
print(json.dumps({"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "code": code}),
      file=sys.stderr)
"""


def _long_wav(path, minutes: float, sr: int = 16000) -> None:
    """Written block by block, so the test itself never holds the recording in memory."""
    rng = np.random.default_rng(0)
    block = sr * 10
    with sf.SoundFile(str(path), "w", samplerate=sr, channels=1, subtype="PCM_16") as f:
        for i in range(int(minutes * 6)):
            t = (np.arange(block) + i * block) / sr
            f.write((0.3 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(block)).astype(np.float32))


def _predict(model, wav):
    r = subprocess.run([sys.executable, "-c", PEAK_RSS, "predict", "-m", str(model), str(wav), "--per-frame",
                        "--threads", "1"], capture_output=True, text=True, timeout=600)  # fmt: skip
    stats = json.loads(r.stderr.strip().splitlines()[-1])
    return json.loads(r.stdout), stats


def test_ten_minute_file_streams_with_flat_memory(trained_model, tmp_path):
    short, long = tmp_path / "one_minute.wav", tmp_path / "ten_minutes.wav"
    _long_wav(short, 1)
    _long_wav(long, 10)
    rec_short, mem_short = _predict(trained_model, short)
    rec_long, mem_long = _predict(trained_model, long)
    assert mem_short["code"] == mem_long["code"] == 0
    # The model's windows are 0.5 s every 0.25 s: 2399 windows cover 600 s.
    assert rec_long["windows"] == len(rec_long["frames"]) == 2399
    assert rec_long["duration"] == 600.0 and rec_long["frames"][-1]["end"] == 600.0
    assert rec_long["label"] == "sine" and rec_short["label"] == "sine"
    # Measured: +4 MB from 1 to 10 minutes when streaming; decoding the whole file first costs
    # +34 MB more (the 8 kHz signal plus its 2399 windows).
    assert mem_long["rss_mb"] - mem_short["rss_mb"] < 15, (mem_short, mem_long)


def test_a_sound_padded_with_silence_or_quiet_noise_keeps_its_label(trained_model, tmp_path):
    """A model names some label for every window, silence too: a short sound padded with seconds
    of silence was outvoted by it (FSDD digits with 2 s of silence before them: 49% right). A
    recording's windows 20 dB under its loudest take no part in its score, in predict, explain,
    evaluate and training's validation alike."""
    import attn
    from attn.pipelines.data.batching import WindowSet
    from attn.pipelines.data.synthetic import generate_clip
    from attn.pipelines.infer.inference import aggregate

    sr, m = 8000, attn.load(trained_model)
    rng = np.random.default_rng(0)
    for label in ("sine", "noise_burst"):  # 1 s: whole windows of it beside the ones half silent
        clip = generate_clip(label, np.random.default_rng(7), 1.0, sr).astype(np.float32)
        clip = clip / np.abs(clip).max() * 0.5
        quiet = (rng.standard_normal(4 * sr) * 10 ** (-60 / 20)).astype(np.float32)
        for name, x in (("alone", clip), ("silence", np.concatenate([np.zeros(3 * sr, np.float32), clip])),
                        ("noise", np.concatenate([quiet[: 2 * sr], clip, quiet[2 * sr :]]))):  # fmt: skip
            sf.write(tmp_path / f"{label}-{name}.wav", x, sr, subtype="FLOAT")
        recs = m.predict(sorted(str(p) for p in tmp_path.glob(f"{label}-*.wav")))
        assert {r["label"] for r in recs} == {label}, recs
        assert all(r["windows"] > 1 for r in recs if "alone" not in r["input"])
        assert m.explain(tmp_path / f"{label}-silence.wav")[0]["label"] == label
    # evaluation's clip scores count the same windows: a WindowSet of a padded clip
    ws = WindowSet([np.concatenate([np.zeros(sr, np.float32), clip[: sr // 2]])], np.array([0]), sr // 2, sr // 4)
    assert ws.heard.tolist() == [False, False, False, True, True]
    probs = np.array([[0.9, 0.1]] * 3 + [[0.2, 0.8]] * 2, dtype=np.float32)
    assert aggregate(probs, ws.all_windows[:, 0], 1, heard=ws.heard).argmax() == 1
    assert aggregate(probs, ws.all_windows[:, 0], 1).argmax() == 0
