"""attn embed: the vector a prediction rests on, framed exactly as attn predict frames inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from attn.cli.app import app
from helpers import tone, write_wav

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def wavs(tmp_path_factory):
    d = tmp_path_factory.mktemp("embed_wavs")
    return [write_wav(d / "short.wav", tone(440, 0.5, 16000), 16000),
            write_wav(d / "long.wav", tone(880, 3.3, 16000, seed=1), 16000)]  # fmt: skip


def test_audio_vectors_are_the_mean_of_the_windows_predict_frames(trained_model, wavs):
    r = run("embed", "--model", trained_model, *wavs, "--per-window")
    assert r.exit_code == 0, r.output
    recs = [json.loads(line) for line in r.output.strip().splitlines()]
    pred = [json.loads(line) for line in run("predict", "--model", trained_model, *wavs, "--per-frame",
                                             "--format", "jsonl").output.strip().splitlines()]  # fmt: skip
    for e, p in zip(recs, pred, strict=True):
        assert e["windows"] == p["windows"] and len(e["frames"]) == len(p["frames"])
        assert [(f["start"], f["end"]) for f in e["frames"]] == [(f["start"], f["end"]) for f in p["frames"]]
        frames = np.array([f["embedding"] for f in e["frames"]])
        assert np.allclose(frames.mean(0), e["embedding"], atol=1e-5)
    assert recs[1]["windows"] > 1


def test_audio_vectors_are_the_networks_penultimate_layer(trained_model, wavs):
    import attn
    from attn.features.audio import read_audio

    m = attn.load(trained_model)
    rec = m.embed(wavs[0])[0]
    f = m.recipe.features
    x = read_audio(str(wavs[0]), f.sample_rate)[: f.frame_samples]
    net = getattr(m.module, "network", m.module)
    import torch

    with torch.no_grad():
        feats, flen = net.frontend(torch.from_numpy(x)[None], torch.tensor([len(x)]))
        want = net.backbone.forward_features(feats.transpose(1, 2), flen)[0].numpy()
    assert np.allclose(rec["embedding"], want, atol=1e-5)


def test_npy_keeps_one_row_per_input_and_a_failed_one_is_nan(trained_model, wavs, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    out = tmp_path / "v.npy"
    r = run("embed", "--model", trained_model, wavs[0], bad, wavs[1], "--out", out)
    assert r.exit_code == 1
    assert "bad.wav" in r.output
    v = np.load(out, allow_pickle=False)
    assert v.shape[0] == 3 and v.dtype == np.float32
    assert np.isnan(v[1]).all() and np.isfinite(v[[0, 2]]).all()


def test_per_window_into_npy_gives_one_recordings_windows(trained_model, wavs, tmp_path):
    """It was refused even for one file: one long recording's windows, (W, D), in time order."""
    r = run("embed", "--model", trained_model, wavs[1], "--per-window", "--out", tmp_path / "v.npy")
    assert r.exit_code == 0, r.output
    rec = json.loads(run("embed", "--model", trained_model, wavs[1], "--per-window").output)
    v = np.load(tmp_path / "v.npy", allow_pickle=False)
    assert v.shape == (rec["windows"], len(rec["embedding"])) and rec["windows"] > 1
    assert np.allclose(v, [f["embedding"] for f in rec["frames"]], atol=1e-6)
    r = run("embed", "--model", trained_model, *wavs, "--per-window", "--out", tmp_path / "w.npy")
    assert r.exit_code == 2 and ".jsonl" in r.output and not (tmp_path / "w.npy").exists()


def test_embed_marks_quiet_windows_and_warns_as_predict_does(trained_model, tmp_path):
    """predict's label leaves a recording's quiet windows out and warns of a silent input; embed
    averaged every window without a word (sweep AH). The windows predict leaves out are marked,
    and the recording's vector is the mean of the others (the windows its label rests on)."""
    loud = tone(440, 1.0, 16000)
    wav = write_wav(tmp_path / "half_quiet.wav", np.concatenate([loud, 1e-4 * loud, 1e-4 * loud]), 16000)
    silent = write_wav(tmp_path / "silent.wav", np.zeros(16000, dtype=np.float32), 16000)
    out = run("embed", "--model", trained_model, wav, silent, "--per-window").output.strip().splitlines()
    e, s = (json.loads(line) for line in out if line.startswith("{"))
    p = json.loads(
        run("predict", "--model", trained_model, wav, "--per-frame", "--format", "jsonl").output.splitlines()[0]
    )
    assert [f.get("quiet", False) for f in e["frames"]] == [f.get("quiet", False) for f in p["frames"]]
    assert any(f.get("quiet") for f in e["frames"]) and not all(f.get("quiet") for f in e["frames"])
    frames = np.array([f["embedding"] for f in e["frames"]])
    heard = np.array([not f.get("quiet", False) for f in e["frames"]])
    assert np.allclose(frames[heard].mean(0), e["embedding"], atol=1e-5)
    assert not np.allclose(frames.mean(0), e["embedding"], atol=1e-3)
    assert "silent" in s.get("warning", "")
