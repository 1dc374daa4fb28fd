"""CUDA equals CPU: the front-end, every registered model, predict, and an AMP training step.
Skipped without CUDA; `python -m bench.gpu_check` runs them on a GPU machine."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from attn.models import registry

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.fixture
def exact_cuda():
    """Full float32 on the GPU for the comparison (cuDNN convolutions default to TF32)."""
    conv, mm = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = conv, mm


@pytest.mark.parametrize("kind", ["logmel", "mfcc", "spectrogram"])
def test_frontend_on_cuda_equals_cpu(kind, exact_cuda):
    from attn.features.config import AudioFeatures
    from attn.features.transforms import AudioFrontend

    fe = AudioFrontend.from_config(AudioFeatures(kind=kind, sample_rate=16000, n_fft=512, hop_length=160, n_mels=64))
    torch.manual_seed(0)
    wave = torch.randn(4, 16000) * torch.tensor([[0.5], [0.1], [1e-3], [0.0]])  # loud to silent
    lengths = torch.tensor([16000, 12000, 8000, 400])
    a, la = fe.eval()(wave, lengths)
    b, lb = fe.to("cuda").eval()(wave.cuda(), lengths.cuda())
    assert torch.equal(la, lb.cpu())
    assert torch.allclose(a, b.cpu(), atol=1e-2, rtol=1e-4), (a - b.cpu()).abs().max()  # dB


@pytest.mark.parametrize("name", registry.names())
def test_every_model_on_cuda_equals_cpu(name, exact_cuda):
    from test_models import IN_DIM, small

    m = small(name).eval()
    torch.manual_seed(1)
    x, lens = torch.randn(3, 40, IN_DIM), torch.tensor([40, 25, 3])
    with torch.no_grad():
        a = m(x, lens)
        b = m.to("cuda")(x.cuda(), lens.cuda()).cpu()
    assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), (name, (a - b).abs().max())


def test_predict_on_cuda_equals_cpu(trained_model):
    """Defaults as a user runs them (TF32 convolutions allowed): probabilities within 1e-3."""
    import attn

    sr = 8000
    t = np.arange(sr) / sr
    clips = [((0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32), sr) for f in (220, 440, 880, 1500)]
    a = attn.load(trained_model, "cpu").predict(clips, top_k=3)
    b = attn.load(trained_model, "cuda").predict(clips, top_k=3)
    for ra, rb in zip(a, b, strict=True):
        assert ra["label"] == rb["label"]
        pa, pb = ({x["label"]: x["score"] for x in r["top_k"]} for r in (ra, rb))
        assert max(abs(pa[k] - pb[k]) for k in pa) < 1e-3, (ra, rb)


def test_amp_training_on_cuda_gives_finite_losses_and_a_loadable_model(tmp_path, tiny_recipe):
    from typer.testing import CliRunner

    from attn.cli.app import app

    r = CliRunner().invoke(app, ["train", str(tiny_recipe(epochs=2)), "--out", str(tmp_path / "run"), "--device",
                                 "cuda", "--set", "train.amp=true", "--format", "json", "--quiet"])  # fmt: skip
    assert r.exit_code == 0, r.output
    history = [json.loads(x) for x in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert len(history) == 2 and all(np.isfinite(h["train_loss"]) for h in history)
    assert json.loads(r.stdout)["test_accuracy"] is not None
