"""Feature and data-pipeline cases: log-mel throughput and decode -> features for FSDD."""

from __future__ import annotations

import numpy as np

from .common import case, data_root, load_resolved, median_time


def _inputs(kind: str, quick: bool):
    """(clips float32 (n, samples), sample_rate, description)."""
    rng = np.random.default_rng(0)
    if kind == "short":
        n, sr = (400 if quick else 2000), 16000
        t = np.arange(sr) / sr
        f0 = rng.uniform(100, 2000, size=(n, 1))
        x = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.05 * rng.standard_normal((n, sr))
        return x.astype(np.float32), sr, f"{n} x 1 s @ 16 kHz, generated (tones + noise)"
    n, sr = (40 if quick else 200), 22050
    root = data_root()
    if root is not None:
        import soundfile as sf

        clips = [
            sf.read(p, dtype="float32")[0][: 30 * sr] for p in sorted((root / "gtzan_mini" / "audio").glob("*.wav"))
        ]
        clips = [np.pad(c, (0, 30 * sr - len(c))) for c in clips]
        x = np.stack([clips[i % len(clips)] for i in range(n)])
        return x, sr, f"{n} x 30 s @ 22.05 kHz, the 10 GTZAN-mini clips repeated"
    x = (0.1 * rng.standard_normal((n, 30 * sr))).astype(np.float32)
    return x, sr, f"{n} x 30 s @ 22.05 kHz, generated noise"


def logmel(quick: bool = False) -> list[dict]:
    import librosa
    import torch
    import torchaudio
    from threadpoolctl import threadpool_limits

    from attn.features.config import AudioFeatures
    from attn.features.transforms import AudioFrontend

    rows = []
    for kind, (n_fft, hop, mels, batch) in (("short", (512, 160, 64, 100)), ("long", (2048, 512, 128, 10))):
        x, sr, desc = _inputs(kind, quick)
        cfg = AudioFeatures(sample_rate=sr, n_fft=n_fft, hop_length=hop, n_mels=mels, frame_seconds=30)
        ours = AudioFrontend.from_config(cfg).eval()
        ta = torchaudio.transforms.MelSpectrogram(sr, n_fft=n_fft, hop_length=hop, n_mels=mels, norm="slaney",
                                                  mel_scale="slaney", pad_mode="constant")  # fmt: skip
        xt = torch.from_numpy(x)
        lengths = torch.full((batch,), x.shape[1])

        def run_ours():
            with torch.inference_mode():
                for i in range(0, len(x), batch):
                    ours(xt[i : i + batch], lengths[: len(xt[i : i + batch])])

        def run_ta():
            with torch.inference_mode():
                for i in range(0, len(x), batch):
                    10 * torch.log10(ta(xt[i : i + batch]).clamp_min(1e-10))

        def run_librosa():
            for clip in x:
                S = librosa.feature.melspectrogram(y=clip, sr=sr, n_fft=n_fft, hop_length=hop, n_mels=mels)
                librosa.power_to_db(S, top_db=None)

        t_ours, t_ta = median_time(run_ours), median_time(run_ta)
        with threadpool_limits(1):
            t_lib1 = median_time(run_librosa, repeats=1 if quick else 2)
        t_lib = median_time(run_librosa, repeats=1 if quick else 2)
        n = len(x)
        rows.append(case(f"logmel {kind}: attn vs librosa (1 BLAS thread)", desc, "librosa per clip, 1 thread",
                         n / t_ours, n / t_lib1, "clips/s", "≥ 4x", n / t_ours >= 4 * n / t_lib1))  # fmt: skip
        rows.append(case(f"logmel {kind}: attn vs librosa (default threads)", desc, "librosa per clip",
                         n / t_ours, n / t_lib, "clips/s", "≥ 4x", n / t_ours >= 4 * n / t_lib))  # fmt: skip
        rows.append(case(f"logmel {kind}: attn vs torchaudio", desc, "torchaudio MelSpectrogram + dB, batched",
                         n / t_ours, n / t_ta, "clips/s", "≥ 0.95x", n / t_ours >= 0.95 * n / t_ta))  # fmt: skip
    return rows


def pipeline(quick: bool = False) -> list[dict]:
    """FSDD decode (+ resample) + frame + features, and loader cost inside a training step."""
    import time

    import torch

    from attn.pipelines.data.clips import load_clips
    from attn.pipelines.data.prepared import PreparedData, load_datasets
    from attn.pipelines.data.sources import list_items, split_items
    from attn.pipelines.recipe.build import build_model

    root = data_root()
    if root is None:
        return [{"case": "data pipeline", "skipped": "FSDD not found"}]
    import os

    os.environ.setdefault("ATTN_DATA", str(root))
    rows = []
    for sr, note in ((8000, "native 8 kHz"), (16000, "resampled to 16 kHz")):
        r = load_resolved("recipes/digits.yaml", [f"features.sample_rate={sr}", f"features.hop_length={sr // 100}",
                                                  f"features.n_fft={sr // 250 * 8}"])  # fmt: skip
        items = list_items(r.data)
        if quick:
            items = items[:600]
        t0 = time.perf_counter()
        loaded = load_clips(items, r.data, sr)
        t_decode = time.perf_counter() - t0
        from attn.features.transforms import AudioFrontend
        from attn.pipelines.data.batching import WindowSet

        ws = WindowSet(loaded.clips, np.zeros(len(loaded.clips)), r.features.frame_samples, r.features.hop_samples)
        fe = AudioFrontend.from_config(r.features)
        t0 = time.perf_counter()
        with torch.inference_mode():
            for b in ws.batches(ws.all_windows, 64):
                fe(b.x, b.lengths)
        t_feat = time.perf_counter() - t0
        n = len(items)
        rows.append(case(f"FSDD decode + frame + features ({note})", f"{n} FSDD files", "-",
                         n / (t_decode + t_feat), 0, "files/s", decode_files_per_s=round(n / t_decode, 1)))  # fmt: skip

    # A run's startup decode, resampling to 16 kHz: from an audio cache filled by an earlier run
    # vs decoding again (the cache is keyed by a hash of each file's bytes, computed every time).
    import tempfile

    r = load_resolved("recipes/digits.yaml", ["features.sample_rate=16000"])
    items = list_items(r.data)[: 600 if quick else None]
    with tempfile.TemporaryDirectory() as cache:
        cached = r.data.model_copy(update={"cache_dir": cache})
        load_clips(items, cached, 16000)  # the earlier run: fills the cache
        t_plain = median_time(lambda: load_clips(items, r.data, 16000), repeats=3)
        t_cached = median_time(lambda: load_clips(items, cached, 16000), repeats=3)
    n = len(items)
    rows.append(case("FSDD startup decode at 16 kHz: audio cache vs decoding", f"{n} FSDD files",
                     "soundfile + soxr resampling", n / t_cached, n / t_plain, "files/s"))  # fmt: skip

    # Loader share of a training step: batches built from clips each step vs pre-built tensors.
    r = load_resolved("recipes/digits.yaml")
    splits = split_items(list_items(r.data), r.data)
    if quick:
        splits = {k: v[:300] for k, v in splits.items()}
    ws = load_datasets(r, PreparedData(splits, tuple(str(i) for i in range(10)))).train
    torch.manual_seed(0)
    model = build_model(r, 10)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    gen = np.random.default_rng(0)
    steps = 10 if quick else 30
    windows = ws.random_windows(gen)
    order = gen.permutation(len(windows))

    def step(b):
        loss = torch.nn.functional.cross_entropy(model(b.x, b.lengths), b.y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    prebuilt = [b for _, b in zip(range(steps), ws.batches(windows, 32, order), strict=False)]
    model.train()
    t_pre = median_time(lambda: [step(b) for b in prebuilt], repeats=2)
    t_loader = median_time(lambda: [step(b) for _, b in zip(range(steps), ws.batches(windows, 32, order),
                                                             strict=False)], repeats=2)  # fmt: skip
    t_collate = median_time(lambda: [None for _, b in zip(range(steps), ws.batches(windows, 32, order),
                                                          strict=False)], repeats=3)  # fmt: skip
    share = t_collate / t_loader
    rows.append(case("training step: real loader vs pre-built batches", "digits CNN, batch 32, FSDD",
                     "same steps on pre-built tensors", steps / t_loader, steps / t_pre, "steps/s", "loader ≤ 10%",
                     share <= 0.10, loader_share=round(share, 4)))  # fmt: skip
    return rows
