"""Pretrained audio encoders (wav2vec 2.0 family) as the audio front-end: tiny random checkpoints
the tests build with `transformers` and save as a user's would be (`save_pretrained`), loaded
through attn, trained, and predicted with the checkpoint gone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from attn.cli.app import app
from helpers import tone, write_wav

transformers = pytest.importorskip("transformers")
runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def make_audio_checkpoint(d: Path, kind: str = "wav2vec2", seed: int = 0) -> Path:
    torch.manual_seed(seed)
    cls = {"wav2vec2": transformers.Wav2Vec2Config, "hubert": transformers.HubertConfig}[kind]
    cfg = cls(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, conv_dim=(16, 16),
              conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
              feat_extract_norm="layer", do_stable_layer_norm=True)  # fmt: skip
    transformers.AutoModel.from_config(cfg).save_pretrained(str(d), safe_serialization=True)
    pre = {"sampling_rate": 16000, "do_normalize": True, "feature_extractor_type": "Wav2Vec2FeatureExtractor"}
    (d / "preprocessor_config.json").write_text(json.dumps(pre))
    return d


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_audio_checkpoint(tmp_path_factory.mktemp("tiny_wav2vec2"))


@pytest.mark.parametrize("kind", ["wav2vec2", "hubert"])
def test_hidden_states_match_transformers_with_its_feature_extractor(tmp_path, kind):
    from attn.features.config import EncoderConfig
    from attn.models.hf_audio import AudioEncoderFrontend
    from attn.pipelines.data.encoders import load_encoder_weights, resolve_encoder

    d = make_audio_checkpoint(tmp_path / kind, kind)
    ck = resolve_encoder(EncoderConfig(name=str(d)))
    ours = AudioEncoderFrontend({k: v for k, v in ck.config.items() if k != "feature_extractor"})
    load_encoder_weights(ours, EncoderConfig(name=str(d)))
    ours.eval()
    ref = transformers.AutoModel.from_pretrained(str(d)).eval()
    fe = transformers.Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True, return_attention_mask=True)
    wave = np.random.default_rng(0).standard_normal(4000).astype(np.float32) * 0.1
    inputs = fe(wave, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        want = ref(**inputs).last_hidden_state[0]
        got, frames = ours(torch.from_numpy(wave)[None], torch.tensor([len(wave)]))
    assert int(frames[0]) == want.shape[0]
    assert (got[0].T - want).abs().max().item() < 1e-4


@pytest.fixture(scope="module")
def trained(tmp_path_factory, checkpoint):
    tmp = tmp_path_factory.mktemp("audio_encoder_run")
    ck = shutil.copytree(checkpoint, tmp / "ck")
    recipe = tmp / "r.yaml"
    recipe.write_text(f"""
data:
  synthetic: {{classes: [sine, noise_burst], per_class: 30, seconds: 0.5, seed: 1}}
  val_fraction: 0.2
  test_fraction: 0.2
features:
  sample_rate: auto
  frame_seconds: 0.5
  hop_seconds: 0.25
  encoder: {{name: {ck}, finetune: all}}
model: {{name: pooled, pooling: mean, dropout: 0.0}}
train: {{epochs: 6, batch_size: 8, lr: 0.003, patience: 0, baseline: false, seed: 0}}
""")
    r = run("train", recipe, "--out", tmp / "run")
    assert r.exit_code == 0, r.output
    return tmp, ck


def test_an_audio_encoder_trains_and_predicts_without_its_checkpoint(trained):
    tmp, ck = trained
    metrics = json.loads((tmp / "run" / "metrics.json").read_text())
    assert metrics["accuracy"] >= 0.8, metrics["accuracy"]
    shutil.rmtree(ck)
    wav = write_wav(tmp / "t.wav", tone(440, 0.5, 16000), 16000)
    r = run("predict", "--model", tmp / "run", wav, "--format", "jsonl")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["label"] in ("sine", "noise_burst")
    info = json.loads(run("info", tmp / "run", "--format", "json").output)
    enc = info["recipe"]["features"]["encoder"]
    assert enc["config"]["model_type"] == "wav2vec2" and info["recipe"]["features"]["sample_rate"] == 16000


def test_a_rate_other_than_the_encoders_is_refused(tmp_path, checkpoint):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""
data: {{synthetic: {{classes: [sine, noise_burst], per_class: 10, seconds: 0.5}}}}
features: {{sample_rate: 8000, encoder: {{name: {checkpoint}}}}}
model: {{name: pooled}}
""")
    r = run("train", recipe, "--out", tmp_path / "run")
    assert r.exit_code == 2 and "16000 Hz" in r.output, r.output
    assert not (tmp_path / "run").exists()
