"""Bad input catalog: one row per case. Each asserts the exit code, that the message names the
file or key and the problem on one line, and that nothing else was lost."""

from __future__ import annotations

import errno
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from attn.cli.app import app
from helpers import tone, write_wav

runner = CliRunner()
SR = 8000


@dataclass
class Case:
    name: str
    make: object  # (tmp: Path) -> Path | None, creates the bad input
    expect: str  # substring of the one-line message (or of the error record)
    code: int = 1
    record: bool = True  # predict: the bad input becomes an error record among good ones
    ok: bool = False  # predict: the input is fine (a label is expected, not an error)
    extra: list = field(default_factory=list)


def _corrupt_header(tmp):
    p = write_wav(tmp / "corrupt.wav", tone(440, 0.5, SR), SR)
    data = bytearray(p.read_bytes())
    data[8:12] = b"XXXX"
    p.write_bytes(bytes(data))
    return p


def _truncated(tmp):
    p = write_wav(tmp / "truncated.wav", tone(440, 1.0, SR), SR)
    p.write_bytes(p.read_bytes()[:3000])
    return p


def _empty(tmp):
    p = tmp / "empty.wav"
    p.write_bytes(b"")
    return p


def _zero_length(tmp):
    p = tmp / "zero.wav"
    sf.write(str(p), np.zeros(0, dtype=np.float32), SR)
    return p


def _text_as_wav(tmp):
    p = tmp / "notes.wav"
    p.write_text("meeting notes\n" * 50)
    return p


def _unsupported(tmp):
    p = tmp / "clip.xyz"
    p.write_bytes(b"\x00\x01MThd" + bytes(range(256)) * 4)
    return p


def _nan(tmp):
    x = tone(440, 0.5, SR)
    x[::97] = np.nan
    x[5] = np.inf
    p = tmp / "nan.wav"
    sf.write(str(p), x, SR, subtype="FLOAT")
    return p


def _silence(tmp):
    return write_wav(tmp / "silence.wav", np.zeros(SR, dtype=np.float32), SR)


def _eight_channels(tmp):
    return write_wav(tmp / "8ch.wav", np.tile(tone(440, 0.5, SR)[:, None], (1, 8)), SR)


def _other_rate(tmp):
    return write_wav(tmp / "48k.wav", tone(440, 0.5, 48000), 48000)


def _missing(tmp):
    return tmp / "does_not_exist.wav"


def _empty_dir(tmp):
    d = tmp / "no_audio_here"
    d.mkdir()
    (d / "readme.txt").write_text("nothing")
    return d


PREDICT_CASES = [
    Case("corrupt WAV header", _corrupt_header, "not a readable audio file"),
    Case("truncated WAV", _truncated, "truncated"),
    Case("empty file", _empty, "file is empty"),
    Case("zero-length audio", _zero_length, "no audio samples"),
    Case("text file named .wav", _text_as_wav, "not a readable audio file"),
    Case("unsupported format", _unsupported, "not a readable audio file"),
    Case("NaN/Inf samples", _nan, "NaN or infinite"),
    Case("missing file", _missing, "file not found"),
    Case("directory with no audio", _empty_dir, "contains no audio files"),
    Case("pure silence", _silence, "", ok=True),
    Case("8-channel audio", _eight_channels, "", ok=True),
    Case("another sample rate", _other_rate, "", ok=True),
]


@pytest.mark.parametrize("case", PREDICT_CASES, ids=lambda c: c.name)
def test_predict_catalog(case, trained_model, tmp_path):
    """Batch predict: the case sits between two good files; both good files are still predicted,
    in order, and the exit code says whether anything failed."""
    good1 = write_wav(tmp_path / "good1.wav", tone(440, 0.5, SR), SR)
    good2 = write_wav(tmp_path / "good2.wav", tone(660, 0.5, SR), SR)
    bad = case.make(tmp_path)
    r = runner.invoke(app, ["predict", "-m", str(trained_model), str(good1), str(bad), str(good2)])
    recs = [json.loads(x) for x in r.stdout.splitlines()]
    assert [rec["input"] for rec in recs] == [str(good1), str(bad), str(good2)]
    assert "label" in recs[0] and "label" in recs[2]
    assert "Traceback" not in r.output
    if case.ok:
        assert r.exit_code == 0 and "label" in recs[1] and np.isfinite(recs[1]["score"])
        return
    assert r.exit_code == case.code
    msg = recs[1]["error"]
    assert msg.startswith(str(bad)) and case.expect in msg and "\n" not in msg
    assert "1 of 3 input(s) failed" in r.stderr


def _recipe(tmp, body: str) -> Path:
    p = tmp / "r.yaml"
    p.write_text(body)
    return p


GOOD = "data: {synthetic: {per_class: 4, seconds: 0.25}}\nmodel: {name: cnn, channels: [4]}\ntrain: {epochs: 1}\n"
RECIPE_CASES = [
    ("YAML syntax error", "data: {synthetic: {per_class: 4}\ntrain: [\n", "YAML syntax error", ":2:"),
    ("unknown key", GOOD.replace("epochs", "epoch"), "did you mean 'train.epochs'", "train.epoch"),
    ("wrong type", GOOD.replace("epochs: 1", "epochs: many"), "train.epochs", "'many'"),
    ("missing required key", "train: {epochs: 1}\n", "data: required key is missing", "data"),
    ("unknown model hyperparameter", GOOD.replace("channels", "chanels"), "model.chanels", "model.channels"),
    ("missing manifest", "data: {manifest: nowhere.csv}\n", "manifest not found", "nowhere.csv"),
    ("folder without audio", "data: {root: .}\n", "no audio found", "r.yaml"),
]


@pytest.mark.parametrize("name, body, expect, where", RECIPE_CASES, ids=[c[0] for c in RECIPE_CASES])
def test_recipe_catalog(name, body, expect, where, tmp_path):
    (tmp_path / "keep.txt").write_text("precious")
    p = _recipe(tmp_path, body)
    r = runner.invoke(app, ["train", str(p), "--out", str(tmp_path / "run")])
    assert r.exit_code == 2, r.output
    err = r.stderr.strip()
    assert err.count("\n") == 0 and expect in err and (where in err or where == "r.yaml")
    assert not (tmp_path / "run").exists() and (tmp_path / "keep.txt").read_text() == "precious"


def test_device_cuda_without_cuda_is_a_usage_error(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    r = runner.invoke(app, ["train", str(_recipe(tmp_path, GOOD)), "--device", "cuda", "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "--device cuda: CUDA is not available" in r.stderr


def test_manifest_row_pointing_at_a_missing_file_is_skipped_not_fatal(tmp_path):
    root = tmp_path / "d"
    rows = ["path,label"]
    for lab, f in (("low", 300), ("high", 1500)):
        for i in range(6):
            write_wav(root / f"{lab}{i}.wav", tone(f, 0.3, SR, seed=i), SR)
            rows.append(f"{lab}{i}.wav,{lab}")
    rows.append("gone.wav,low")
    (root / "m.csv").write_text("\n".join(rows) + "\n")
    body = "data: {manifest: d/m.csv, val_fraction: 0.2, test_fraction: 0.2}\nfeatures: {sample_rate: 8000}\n" \
           "model: {name: cnn, channels: [4]}\ntrain: {epochs: 1}\n"  # fmt: skip
    r = runner.invoke(app, ["train", str(_recipe(tmp_path, body)), "--out", str(tmp_path / "run"), "--format", "json"])
    assert r.exit_code == 0, r.output
    assert "gone.wav: file not found" in r.stderr and json.loads(r.stdout)["data"]["skipped_files"] == 1


def test_evaluate_with_a_missing_file_scores_the_rest_and_exits_1(trained_model, tmp_path):
    write_wav(tmp_path / "a.wav", tone(440, 0.5, SR), SR)
    (tmp_path / "m.csv").write_text("path,label\na.wav,sine\nb.wav,sine\n")
    r = runner.invoke(app, ["evaluate", "-m", str(trained_model), str(tmp_path / "m.csv"), "--format", "json"])
    assert r.exit_code == 1 and json.loads(r.stdout)["count"] == 1 and "b.wav: file not found" in r.stderr


@pytest.mark.parametrize("err, words", [(errno.ENOSPC, "no space left"), (errno.EROFS, "read-only")])
def test_unwritable_output_exits_3_and_keeps_the_previous_model(err, words, tmp_path, monkeypatch):
    import attn.pipelines.fsutil as fs

    p = _recipe(tmp_path, GOOD)
    assert runner.invoke(app, ["train", str(p), "--out", str(tmp_path / "run")]).exit_code == 0
    model = tmp_path / "run" / "model.attn"
    before = model.read_bytes()

    def full_disk(*a, **k):
        raise OSError(err, "simulated")

    monkeypatch.setattr(fs.tempfile, "mkstemp", full_disk)
    r = runner.invoke(app, ["train", str(p), "--out", str(tmp_path / "run2")])
    assert r.exit_code == 3 and words in r.stderr and "cannot write" in r.stderr
    assert model.read_bytes() == before


def test_crash_during_rename_leaves_the_old_file_and_no_temp_files(tmp_path, monkeypatch):
    import attn.pipelines.fsutil as fs

    target = tmp_path / "model.attn"
    fs.atomic_write_bytes(target, b"old good model")

    def crash(*a, **k):
        raise OSError(errno.EIO, "power cut")

    monkeypatch.setattr(fs.os, "replace", crash)
    with pytest.raises(Exception, match="cannot write"):
        fs.atomic_write_bytes(target, b"new model that never lands")
    assert target.read_bytes() == b"old good model"
    assert [f.name for f in tmp_path.iterdir()] == ["model.attn"]


def test_an_output_that_is_a_device_or_pipe_is_refused_not_replaced(trained_model, tmp_path):
    """The atomic write renames a temporary file over the target: as root, `attn export --out
    /dev/null` replaced the device with a regular file. A named pipe stands in for it here."""
    import os
    import stat

    from typer.testing import CliRunner

    from attn.cli.app import app

    fifo = tmp_path / "out.onnx"
    os.mkfifo(fifo)
    r = CliRunner().invoke(app, ["export", "-m", str(trained_model), "--out", str(fifo)])
    assert r.exit_code == 3 and f"{fifo}: cannot write (a named pipe, not a file)" in r.output, r.output
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # still the pipe
    from attn.errors import OutputError
    from attn.pipelines.fsutil import atomic_write_text

    with pytest.raises(OutputError, match="a named pipe, not a file"):  # embed's, features' and every other file
        atomic_write_text(fifo, "{}")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_newer_artifact_and_tampered_artifact_via_cli(trained_model, tmp_path):
    import hashlib

    from attn.pipelines.store.container import MAGIC

    data = bytearray(trained_model.read_bytes()[:-32])
    struct.pack_into("<I", data, len(MAGIC), 99)
    newer = tmp_path / "newer.attn"
    newer.write_bytes(bytes(data) + hashlib.sha256(bytes(data)).digest())
    r = runner.invoke(app, ["info", str(newer)])
    assert r.exit_code == 2 and "format version 99 is newer" in r.stderr and "upgrade attn" in r.stderr
    tampered = tmp_path / "tampered.attn"
    raw = bytearray(trained_model.read_bytes())
    raw[len(raw) // 3] ^= 0x01
    tampered.write_bytes(bytes(raw))
    r = runner.invoke(app, ["predict", "-m", str(tampered), "x.wav"])
    assert r.exit_code == 2 and "checksum mismatch" in r.stderr and r.stderr.count("\n") == 1


@pytest.fixture(scope="module")
def hour_model(tmp_path_factory):
    """A tiny model with 4 s windows, so an hour is 900 windows."""
    d = tmp_path_factory.mktemp("hour")
    p = d / "r.yaml"
    p.write_text("data: {synthetic: {classes: [sine, noise_burst], per_class: 6, seconds: 4}}\n"
                 "features: {sample_rate: 8000, frame_seconds: 4, hop_seconds: 4, n_fft: 256, hop_length: 256,"
                 " n_mels: 16}\nmodel: {name: cnn, channels: [4]}\ntrain: {epochs: 1}\n")  # fmt: skip
    assert runner.invoke(app, ["train", str(p), "--out", str(d / "run"), "--quiet"]).exit_code == 0
    return d / "run" / "model.attn"


def test_one_hour_file_is_streamed_in_bounded_memory(hour_model, tmp_path):
    import subprocess
    import sys

    from test_long_audio import PEAK_RSS

    def wav(name, minutes):
        path = tmp_path / name
        with sf.SoundFile(str(path), "w", samplerate=SR, channels=1, subtype="PCM_16") as f:
            block = tone(440, 60, SR)
            for _ in range(minutes):
                f.write(block)
        return path

    def predict(path):
        r = subprocess.run([sys.executable, "-c", PEAK_RSS, "predict", "-m", str(hour_model), str(path),
                            "--threads", "1"], capture_output=True, text=True, timeout=600)  # fmt: skip
        return json.loads(r.stdout), json.loads(r.stderr.strip().splitlines()[-1])

    rec_min, mem_min = predict(wav("minute.wav", 1))
    rec_hour, mem_hour = predict(wav("hour.wav", 60))
    assert mem_hour["code"] == 0 and rec_hour["windows"] == 900 and rec_hour["duration"] == 3600.0
    # Decoding the hour at once would hold 115 MB of float32 samples (and as much again in
    # windows); streaming holds a 30 s block.
    assert mem_hour["rss_mb"] - mem_min["rss_mb"] < 30, (mem_min, mem_hour)
