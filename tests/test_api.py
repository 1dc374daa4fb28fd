"""The Python API (`import attn`): the same records and metrics as the command line, and a light
import."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

import attn
from attn.cli.app import app

FIXTURES = Path(__file__).parent / "fixtures" / "artifacts_v0_1"
runner = CliRunner()


def cli_records(*args) -> list[dict]:
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code in (0, 1), r.output
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def test_import_attn_and_help_do_not_import_torch():
    code = "import attn, sys; assert 'torch' not in sys.modules, 'torch imported'"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "attn.cli", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "train" in r.stdout, r.stderr


def test_audio_predict_gives_the_cli_s_records(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(FIXTURES / "sine.wav", "sine.wav")
    shutil.copy(FIXTURES / "chirp_long.wav", "chirp_long.wav")
    m = attn.load(FIXTURES / "audio_cnn.attn")
    assert m.labels == ["am_tone", "chirp", "noise_burst", "sawtooth", "sine", "square"] and m.modality == "audio"
    args = ["sine.wav", "chirp_long.wav", "missing.wav"]
    got = m.predict(args, top_k=3, per_frame=True)
    assert got == cli_records(
        "predict", "-m", FIXTURES / "audio_cnn.attn", *args, "-k", 3, "--per-frame", "-f", "jsonl"
    )
    assert "error" in got[2] and "missing.wav" in got[2]["error"]
    assert m.predict("sine.wav") == m.predict(["sine.wav"])  # one input needs no list


def test_arrays_with_their_sample_rate_predict_as_their_files(tmp_path):
    m = attn.load(FIXTURES / "audio_cnn.attn")
    x, sr = sf.read(FIXTURES / "chirp_long.wav", dtype="float32")
    from_file = m.predict([str(FIXTURES / "chirp_long.wav")], top_k=6)[0]
    from_array = m.predict([(x, sr)], top_k=6)[0]
    assert from_array.pop("input") == "array[0]" and from_file.pop("input").endswith("chirp_long.wav")
    assert from_array == from_file
    # Another rate and two channels: resampled and mixed as a file at that rate would be.
    y = np.stack([x, x], axis=1)[::2]
    path = tmp_path / "stereo8k.wav"
    sf.write(path, y, sr // 2, subtype="FLOAT")
    a, f = m.predict([(y, sr // 2), str(path)], top_k=6)
    assert {k: v for k, v in a.items() if k != "input"} == {k: v for k, v in f.items() if k != "input"}
    bad = m.predict([(np.zeros((0,), np.float32), sr)])[0]
    assert "error" in bad and bad["input"] == "array[0]"
    with pytest.raises(attn.ConfigError):
        m.predict([42])
    with pytest.raises(attn.ConfigError, match="needs its sample rate"):
        m.predict(x)
    wrong_way = m.predict([(x[None], sr)])[0]  # torchaudio.load's (channels, samples): was 1 sample x N channels
    assert "looks like (channels, samples)" in wrong_way["error"]
    for bad_option, says in (({"aggregate": "median"}, "aggregate 'median'"), ({"top_k": 0}, "top_k 0")):
        with pytest.raises(attn.ConfigError, match=says):  # a raw ValueError, or silently accepted
            m.predict([(x, sr)], **bad_option)


def test_text_predict_gives_the_cli_s_records():
    m = attn.load(FIXTURES / "text_transformer.attn")
    texts = ["i like the cat", "where is the paris today", "   "]
    got = m.predict(texts, top_k=2)
    args = [a for t in texts for a in ("--text", t)]
    assert got == cli_records("predict", "-m", FIXTURES / "text_transformer.attn", *args, "-k", 2, "-f", "jsonl")
    assert got[0]["input"] == "i like the cat" and "error" in got[2]
    from_file = m.predict([FIXTURES / "texts.txt"], top_k=2)  # a path: one text per line
    assert [r["text"] for r in from_file[:2]] == texts[:2] and from_file[0]["label"] == got[0]["label"]
    with pytest.raises(attn.ConfigError, match="per_frame"):
        m.predict(texts, per_frame=True)


def test_info_is_attn_info_json():
    m = attn.load(FIXTURES / "text_transformer.attn")
    r = runner.invoke(app, ["info", str(FIXTURES / "text_transformer.attn"), "--format", "json"])
    assert m.info() == json.loads(r.stdout)
    assert m.info()["labels"] == m.labels


def test_train_evaluate_load_round_trip(tmp_path, tiny_recipe, monkeypatch):
    monkeypatch.chdir(tmp_path)
    epochs = []

    class Record:
        def on_epoch_end(self, record):
            epochs.append(record)

    res = attn.train(
        tiny_recipe(), overrides=["train.epochs=2"], out=tmp_path / "run", device="cpu", callbacks=[Record()]
    )  # fmt: skip  (a list of callbacks, or one)
    assert res.run_dir == tmp_path / "run" and res.epochs_run == 2 and len(epochs) == 2
    assert "val_accuracy" in epochs[0]
    written = json.loads((res.run_dir / "metrics.json").read_text())
    metrics = attn.evaluate(res.run_dir)
    assert metrics["accuracy"] == written["accuracy"] and metrics["count"] == written["count"]
    with pytest.raises(attn.ConfigError, match="split 'bogus': use train, val or test"):  # was a KeyError
        attn.evaluate(res.run_dir, split="bogus")
    m = attn.load(tmp_path / "runs" / "latest")  # runs/latest points at the run, wherever `out` put it
    assert m.labels == res.labels and m.predict((np.zeros(4000, np.float32), 8000))[0]["label"] in res.labels


def test_train_takes_a_mapping_and_resolves_like_a_file(tmp_path, monkeypatch):
    import yaml
    from conftest import TINY_RECIPE

    monkeypatch.chdir(tmp_path)
    raw = yaml.safe_load(TINY_RECIPE.format(epochs=1))
    res = attn.train(raw, overrides=["model.channels=[4]"], out="run", device="cpu")
    assert res.model_path == Path("run") / "model.attn"
    assert attn.load("run").recipe.model.params["channels"] == [4]


def test_training_leaves_what_a_script_sees_of_the_log_alone(tmp_path, tiny_recipe, monkeypatch):
    """A run copies INFO records into train.log without passing them to a script's own logging
    (here: a root handler with the root logger at WARNING, as `logging.basicConfig` sets it up)."""
    import logging

    monkeypatch.chdir(tmp_path)
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record)

    logger, root, keep = logging.getLogger("attn"), logging.getLogger(), Keep()
    saved = (logger.handlers[:], logger.level, logger.propagate, root.level)
    logger.handlers, logger.propagate = [], True
    logger.setLevel(logging.NOTSET)
    root.addHandler(keep)
    root.setLevel(logging.WARNING)
    try:
        attn.train(tiny_recipe(), overrides=["train.epochs=1"], out="run", device="cpu")
    finally:
        root.removeHandler(keep)
        logger.handlers, logger.propagate = saved[0], saved[2]
        logger.setLevel(saved[1])
        root.setLevel(saved[3])
    assert [r.getMessage() for r in seen if r.name == "attn" and r.levelno < logging.WARNING] == []
    assert "epoch 1/1" in (tmp_path / "run" / "train.log").read_text()


def test_what_the_commands_call_works_from_python(trained_model, odd_text_run, tmp_path):
    """The library calls behind `attn info`, `attn tokenize` and `attn embed --out` answer a
    script as they answer the command line."""
    import attn.api

    info = attn.api.info(trained_model)
    assert info["labels"] == attn.load(trained_model).labels and info["parameters"] > 0
    r = runner.invoke(app, ["info", str(trained_model), "--format", "json"])
    assert r.exit_code == 0 and json.loads(r.stdout) == info

    t = attn.api.tokenize(["alpha beta", "   "], model=odd_text_run[0])
    recs = list(t.records)
    assert [r["input"] for r in recs] == ["alpha beta", "   "] and "error" in recs[1] and "error" not in recs[0]
    shown = recs[0]["tokens"][1:] if t.class_token else recs[0]["tokens"]
    assert len(shown) == len(recs[0]["ids"]) <= t.max_len and not recs[0]["truncated"]
    r = runner.invoke(app, ["tokenize", "-m", str(odd_text_run[0]), "alpha beta"])
    assert r.stdout.split() == recs[0]["tokens"]

    records = [{"input": "a", "embedding": [1.0, 2.0]}, {"input": "b", "error": "b: cannot read"}]
    seen = attn.api.write_embeddings(iter(records), tmp_path / "v.npy")
    v = np.load(tmp_path / "v.npy")
    assert v.shape == (2, 2) and v[0].tolist() == [1.0, 2.0] and np.isnan(v[1]).all()
    assert [r["input"] for r in seen] == ["a", "b"] and "embedding" not in seen[0]
    assert attn.api.write_embeddings(iter(records), tmp_path / "v.jsonl") == records
    assert [json.loads(x) for x in (tmp_path / "v.jsonl").read_text().splitlines()] == records
    with pytest.raises(attn.ConfigError, match="v.txt"):
        attn.api.write_embeddings(iter(records), tmp_path / "v.txt")


def test_the_api_honours_attn_threads_and_takes_one_override_as_a_string(trained_model, tiny_recipe, tmp_path,
                                                                          monkeypatch):  # fmt: skip
    import torch

    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("ATTN_THREADS", "1")
        attn.load(trained_model)
        assert torch.get_num_threads() == 1  # it was only the CLI's
        monkeypatch.setenv("ATTN_THREADS", "abc")
        with pytest.raises(attn.ConfigError, match="ATTN_THREADS='abc'"):
            attn.load(trained_model)
        monkeypatch.delenv("ATTN_THREADS")
        r = attn.train(tiny_recipe(), "train.epochs=1", out=tmp_path / "run", device="cpu")  # was "--set 't'"
        assert r.epochs_run == 1
    finally:
        torch.set_num_threads(before)


def test_top_k_that_is_not_a_whole_number_is_attns_error(trained_model):
    """top_k="2" from a caller raised a bare TypeError; 0 an attn.ConfigError."""
    import attn

    m = attn.load(trained_model)
    for bad in ("2", 0, 1.5, True):
        with pytest.raises(attn.ConfigError, match="top_k"):
            m.predict([], top_k=bad)
