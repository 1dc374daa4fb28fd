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


def encoder_recipe(path: Path, ck: Path, epochs: int, frame_seconds: float = 0.5) -> Path:
    """A recipe training a pooled head over checkpoint `ck` on generated 0.5 s clips (16 kHz)."""
    path.write_text(f"""
data:
  synthetic: {{classes: [sine, noise_burst], per_class: 30, seconds: 0.5, seed: 1}}
  val_fraction: 0.2
  test_fraction: 0.2
features:
  sample_rate: auto
  frame_seconds: {frame_seconds}
  hop_seconds: 0.25
  encoder: {{name: {ck}, finetune: all}}
model: {{name: pooled, pooling: mean, dropout: 0.0}}
train: {{epochs: {epochs}, batch_size: 8, lr: 0.003, patience: 0, baseline: false, seed: 0}}
""")
    return path


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
    r = run("train", encoder_recipe(tmp / "r.yaml", ck, epochs=6), "--out", tmp / "run")
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


def test_a_checkpoint_of_the_other_modality_is_refused_before_any_data_is_read(tmp_path, checkpoint):
    """An audio recipe given a text encoder ended in `internal error: KeyError: 'feature_extractor'`;
    a text recipe given an audio encoder said its tokenizer was missing, after the baseline."""
    from encoders import make_checkpoint

    bert = make_checkpoint(tmp_path / "bert")
    recipe = encoder_recipe(tmp_path / "r.yaml", bert, epochs=1)
    r = run("train", recipe, "--out", tmp_path / "run")
    assert r.exit_code == 2 and "a text encoder (bert), and an audio recipe needs an audio encoder" in r.output
    assert not (tmp_path / "run").exists()
    (tmp_path / "t.csv").write_text("text,label\ngood,pos\nbad,neg\n" * 10)
    text = tmp_path / "t.yaml"
    text.write_text(f"data: {{train: {tmp_path / 't.csv'}}}\n"
                    f"features: {{kind: text, encoder: {{name: {checkpoint}}}}}\n"
                    "model: {name: pooled}\n")  # fmt: skip
    r = run("train", text, "--out", tmp_path / "run")
    assert r.exit_code == 2 and "an audio encoder (wav2vec2), and a text recipe needs a text encoder" in r.output
    assert not (tmp_path / "run").exists()


def make_ast_checkpoint(d: Path, seed: int = 0, max_length: int = 100) -> Path:
    """A tiny Audio Spectrogram Transformer saved as the published ones are: the audio-
    classification model (its head is left out by attn) and an ASTFeatureExtractor config."""
    torch.manual_seed(seed)
    cfg = transformers.ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                                 num_mel_bins=32, max_length=max_length, frequency_stride=8, time_stride=8)  # fmt: skip
    transformers.ASTForAudioClassification(cfg).save_pretrained(str(d), safe_serialization=True)
    transformers.ASTFeatureExtractor(num_mel_bins=32, max_length=max_length, mean=-3.0, std=4.0).save_pretrained(str(d))
    return d


def test_ast_reads_filter_banks_as_its_feature_extractor_makes_them(tmp_path):
    from attn.features.config import EncoderConfig
    from attn.models.hf_audio import build_audio_frontend
    from attn.pipelines.data.encoders import load_encoder_weights, resolve_encoder

    d = make_ast_checkpoint(tmp_path / "ast")
    ck = resolve_encoder(EncoderConfig(name=str(d)))
    assert ck.config["feature_extractor"] == {"sampling_rate": 16000, "do_normalize": True, "mean": -3.0, "std": 4.0}
    ours = build_audio_frontend(ck.config)
    load_encoder_weights(ours, EncoderConfig(name=str(d)))
    ours.eval()
    ref = transformers.ASTModel.from_pretrained(str(d)).eval()
    fe = transformers.ASTFeatureExtractor.from_pretrained(str(d))
    rng = np.random.default_rng(0)
    # shorter than max_length (padded), longer (cut), and one Kaldi frame: each from its own valid samples
    waves = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (8000, 5000, 20000, 400)]
    x = torch.zeros(len(waves), 20000)
    for i, w in enumerate(waves):
        x[i, : len(w)] = torch.from_numpy(w)
    lengths = torch.tensor([len(w) for w in waves])
    inputs = fe(waves, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        want = ref(**inputs).pooler_output  # AST's own read-out: (class + distillation token) / 2
        banks = ours.fbank(x, lengths)
        got, steps = ours(x, lengths)
    assert (banks - inputs["input_values"]).abs().max().item() < 1e-5
    assert got.shape == (4, 32, 1) and steps.tolist() == [1, 1, 1, 1]
    assert (got[:, :, 0] - want).abs().max().item() < 1e-5
    # finetune N: the top N layers and the final layer norm train, the patch embedding does not
    top = build_audio_frontend(ck.config, finetune=1)
    trains = {n for n, p in top.encoder.named_parameters() if p.requires_grad}
    assert trains and all(n.startswith(("layers.1.", "encoder.layer.1.", "layernorm.")) for n in trains)


def test_ast_trains_and_predicts_without_its_checkpoint(tmp_path):
    ck = make_ast_checkpoint(tmp_path / "ck")
    # a random tiny AST learns more slowly than the tiny wav2vec 2.0 above: 20 epochs (~2 s)
    r = run("train", encoder_recipe(tmp_path / "r.yaml", ck, epochs=20), "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["accuracy"] >= 0.8
    # a window longer than the encoder's position embeddings cover (100 frames: 1.015 s) is refused
    encoder_recipe(tmp_path / "long.yaml", ck, epochs=20, frame_seconds=2.0)
    r = run("train", tmp_path / "long.yaml", "--out", tmp_path / "long")
    assert r.exit_code == 2 and "longer than the 1.015 s" in r.output, r.output
    shutil.rmtree(ck)
    wav = write_wav(tmp_path / "t.wav", tone(440, 0.5, 16000), 16000)
    r = run("predict", "--model", tmp_path / "run", wav, "--format", "jsonl")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["label"] in ("sine", "noise_burst")
    info = json.loads(run("info", tmp_path / "run", "--format", "json").output)
    assert info["recipe"]["features"]["encoder"]["config"]["model_type"] == "audio-spectrogram-transformer"


def test_ast_exports_filter_banks_encoder_and_head_as_one_graph(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")

    ck = make_ast_checkpoint(tmp_path / "ck")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""
data: {{synthetic: {{classes: [sine, noise_burst], per_class: 8, seconds: 0.5, seed: 1}}}}
features: {{sample_rate: auto, frame_seconds: 0.5, encoder: {{name: {ck}}}}}
model: {{name: pooled}}
train: {{epochs: 1, batch_size: 8, baseline: false}}
""")
    assert run("train", recipe, "--out", tmp_path / "run", "-q").exit_code == 0
    rng = np.random.default_rng(2)
    # shorter than one 25 ms Kaldi window, a whole window, longer than the encoder reads (cut)
    exports_the_same(tmp_path, [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (300, 8000, 40000)])


def exports_the_same(tmp_path: Path, clips: list[np.ndarray]) -> None:
    """The run in tmp_path/run exported to ONNX predicts each 16 kHz clip as the model does."""
    import attn

    m = attn.load(tmp_path / "run")
    assert m.export(tmp_path / "m.onnx").max_abs_diff < 1e-4
    onnx = attn.load(tmp_path / "m.onnx")
    for x in clips:
        want, got = m.predict((x, 16000))[0], onnx.predict((x, 16000))[0]
        assert got["label"] == want["label"] and abs(got["score"] - want["score"]) < 1e-4


def make_whisper_checkpoint(d: Path, seed: int = 0, seconds: int = 2) -> Path:
    """A tiny Whisper (encoder and decoder, as published) reading `seconds` per input instead of
    30 (max_source_positions and the extractor's chunk_length agree, as in a real checkpoint)."""
    torch.manual_seed(seed)
    cfg = transformers.WhisperConfig(d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=4,
                                     decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
                                     num_mel_bins=16, max_source_positions=50 * seconds, vocab_size=100,
                                     max_target_positions=32, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                                     decoder_start_token_id=1)  # fmt: skip
    transformers.WhisperForConditionalGeneration(cfg).save_pretrained(str(d), safe_serialization=True)
    transformers.WhisperFeatureExtractor(feature_size=16, chunk_length=seconds).save_pretrained(str(d))
    return d


def test_whispers_encoder_reads_the_log_mel_its_feature_extractor_makes(tmp_path):
    from attn.errors import ConfigError
    from attn.features.config import EncoderConfig
    from attn.models.hf_audio import build_audio_frontend
    from attn.pipelines.data.encoders import load_encoder_weights, resolve_encoder

    d = make_whisper_checkpoint(tmp_path / "whisper")
    ck = resolve_encoder(EncoderConfig(name=str(d)))
    assert ck.config["feature_extractor"]["do_normalize"] is False  # Whisper's default, unlike wav2vec 2.0's
    ours = build_audio_frontend(ck.config)
    load_encoder_weights(ours, EncoderConfig(name=str(d)))
    ours.eval()
    ref = transformers.WhisperModel.from_pretrained(str(d)).encoder.eval()
    fe = transformers.WhisperFeatureExtractor.from_pretrained(str(d))
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (8000, 5000, 40000)]  # the last is cut
    x = torch.zeros(len(waves), 40000)
    for i, w in enumerate(waves):
        x[i, : len(w)] = torch.from_numpy(w)
    lengths = torch.tensor([len(w) for w in waves])
    inputs = fe(waves, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        want = ref(inputs["input_features"]).last_hidden_state
        mel = ours.log_mel(x, lengths)
        got, steps = ours(x, lengths)
    assert (mel - inputs["input_features"]).abs().max().item() < 1e-4
    assert (got.transpose(1, 2) - want).abs().max().item() < 1e-4
    assert steps.tolist() == [25, 16, 100]  # one step per 20 ms of the clip's own samples, at most the 2 s
    # an extractor that does not fit the encoder is refused before anything trains
    pre = d / "preprocessor_config.json"
    pre.write_text(json.dumps({**json.loads(pre.read_text()), "chunk_length": 30}))
    from attn.pipelines.data import encoders

    encoders._checkpoint.cache_clear()
    with pytest.raises(ConfigError, match="does not belong to this checkpoint"):
        resolve_encoder(EncoderConfig(name=str(d)))


def test_whisper_trains_predicts_and_exports_without_its_checkpoint(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")

    ck = make_whisper_checkpoint(tmp_path / "ck")
    r = run("train", encoder_recipe(tmp_path / "r.yaml", ck, epochs=8), "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["accuracy"] >= 0.8
    shutil.rmtree(ck)
    assert "(whisper, 2 layers x 32, finetune all" in run("info", tmp_path / "run").output
    exports_the_same(
        tmp_path, [tone(440, 0.5, 16000), np.random.default_rng(3).standard_normal(4000).astype(np.float32)]
    )


@pytest.mark.parametrize("kind", ["wav2vec2", "ast"])
def test_a_frozen_audio_encoder_keeps_each_windows_states(tmp_path, kind):
    """Training reads every clip each epoch; a frozen encoder gives it the same states, so only
    the first sight of a window runs the encoder, and what comes back is what it would compute."""
    from attn.features.config import EncoderConfig
    from attn.models.hf_audio import build_audio_frontend
    from attn.pipelines.data.encoders import load_encoder_weights, resolve_encoder

    d = (make_ast_checkpoint if kind == "ast" else make_audio_checkpoint)(tmp_path / kind)
    ck = resolve_encoder(EncoderConfig(name=str(d)))
    fe = build_audio_frontend(ck.config, finetune="frozen")
    load_encoder_weights(fe, EncoderConfig(name=str(d)))
    x, lengths = 0.1 * torch.randn(3, 6000), torch.tensor([6000, 4000, 2500])
    with torch.no_grad():
        want, want_frames = fe(x, lengths)
    runs = []
    fe.encoder.register_forward_hook(lambda module, args, out: runs.append(1))
    fe.enable_cache()
    fe.train()
    for _ in range(2):  # epoch 1 computes, epoch 2 reads
        got, frames = fe(x, lengths)
        assert frames.tolist() == want_frames.tolist()
        for i, n in enumerate(frames.tolist()):
            torch.testing.assert_close(got[i, :, :n], want[i, :, :n], rtol=1e-5, atol=1e-5)
    assert len(runs) == 1
    got, _ = fe(torch.cat([x[:1], 0.1 * torch.randn(1, 6000)]), torch.tensor([6000, 6000]))  # one new window
    assert len(runs) == 2
    # a trainable encoder keeps nothing: its states change as it learns
    top = build_audio_frontend(ck.config, finetune="all")
    top.enable_cache()
    assert top._cache is None
