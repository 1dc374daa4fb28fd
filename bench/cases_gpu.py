"""GPU cases (skipped without CUDA): feature throughput and training samples/s with AMP."""

from __future__ import annotations

from .common import case, data_root, load_resolved, median_time


def gpu(quick: bool = False) -> list[dict]:
    import torch

    if not torch.cuda.is_available():
        return [{"case": "GPU", "skipped": "no CUDA device"}]
    import os

    from attn.features.config import AudioFeatures
    from attn.features.transforms import AudioFrontend

    dev = torch.device("cuda")
    rows = []
    cfg = AudioFeatures(sample_rate=16000, n_fft=512, hop_length=160, n_mels=64)
    x = torch.randn(2000, 16000) * 0.1
    fe_gpu, fe_cpu = AudioFrontend.from_config(cfg).to(dev).eval(), AudioFrontend.from_config(cfg).eval()
    lengths = torch.full((200,), 16000)

    def run(fe, device):
        with torch.inference_mode():
            for i in range(0, len(x), 200):
                fe(x[i : i + 200].to(device, non_blocking=True), lengths.to(device))
        if device.type == "cuda":
            torch.cuda.synchronize()

    t_gpu = median_time(lambda: run(fe_gpu, dev))
    t_cpu = median_time(lambda: run(fe_cpu, torch.device("cpu")), repeats=1)
    rows.append(case("GPU log-mel (incl. host->device copy)", "2000 x 1 s @ 16 kHz", "same module on CPU",
                     2000 / t_gpu, 2000 / t_cpu, "clips/s"))  # fmt: skip
    root = data_root()
    if root is None:
        return rows
    os.environ.setdefault("ATTN_DATA", str(root))
    from attn.pipelines.recipe.build import build_model
    from attn.pipelines.train.trainer import Trainer

    from .cases_train import _sets

    for path in ("recipes/digits.yaml", "recipes/digits_transformer.yaml"):
        r = load_resolved(path)
        ws, labels, _ = _sets(r, quick)
        speeds = {}
        for amp in (True, False):
            r2 = r.model_copy(update={"train": r.train.model_copy(update={"amp": amp})})
            tr = Trainer(build_model(r2, len(labels)), r2.train, ws, None, labels, dev)
            speeds[amp] = len(ws) / median_time(lambda tr=tr: (tr.train_epoch(0), torch.cuda.synchronize()), repeats=2)
        rows.append(case(f"GPU training with AMP: {path}", f"{len(ws)} clips", "same on GPU without AMP",
                         speeds[True], speeds[False], "samples/s"))  # fmt: skip
    return rows
