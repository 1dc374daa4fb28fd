"""`attn features`: the exact feature tensor the model computes for one file, as .npy."""

from __future__ import annotations

import io

import numpy as np

from attn.errors import ConfigError
from attn.features.config import TextFeatures


def file_features(path: str, frontend, cfg, device) -> tuple[np.ndarray, list[int]]:
    """(windows, bins, frames) float32 and each window's valid frame count."""
    import torch

    from attn.features.audio import iter_windows, seekable, stream_audio

    with seekable(path) as local:  # a pipe or FIFO is read once, into a temporary file
        blocks = stream_audio(local, cfg.sample_rate, name=path)
        wins = list(iter_windows(blocks, cfg.frame_samples, cfg.hop_samples))
    x = torch.from_numpy(np.stack([w for _, w, _ in wins]))
    lengths = torch.tensor([n for _, _, n in wins])
    width = int(lengths.max())
    with torch.inference_mode():
        feats, flen = frontend.to(device).eval()(x[:, :width].to(device), lengths.to(device))
    return feats.float().cpu().numpy(), flen.cpu().tolist()


def export_features(path: str, out: str, model: str | None, recipe: str | None, overrides: list[str], device):
    from attn.features.transforms import AudioFrontend

    from ..fsutil import atomic_write_bytes

    if recipe is not None:
        from ..data.auto import resolve_auto
        from ..data.prepared import prepare_data
        from ..recipe.load import load_recipe

        r = load_recipe(recipe, overrides)
        if isinstance(r.features, TextFeatures):
            raise ConfigError(f"{recipe}: a text recipe has no audio features; `attn tokenize --recipe {recipe} "
                              "TEXT` shows the tokens its model would see")  # fmt: skip
        if not r.features.resolved:  # auto / ms values: resolved from the training data as `attn train` would
            r = resolve_auto(r, prepare_data(r))[0]
        cfg = r.features
        frontend = AudioFrontend.from_config(cfg)
    else:
        from ..store.artifact import load_model, resolve_model_path

        model_path = resolve_model_path(model)
        loaded = load_model(model_path, device, purpose="attn features")
        cfg = loaded.recipe.features
        if isinstance(cfg, TextFeatures):
            raise ConfigError(f"{model_path}: a text model has no audio features; `attn tokenize -m {model_path} "
                              "TEXT` shows the tokens it sees")  # fmt: skip
        frontend = loaded.model.frontend
    feats, frames = file_features(path, frontend, cfg, device)
    buf = io.BytesIO()
    np.save(buf, feats.astype(np.float32))
    atomic_write_bytes(out, buf.getvalue())
    return feats.shape, frames
