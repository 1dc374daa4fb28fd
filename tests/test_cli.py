"""The command line as users and scripts see it: Typer's runner and real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from attn.cli.app import app
from helpers import tone, write_wav

runner = CliRunner()


def run(*args, **kw):
    return runner.invoke(app, [str(a) for a in args], **kw)


def attn_subprocess(*args, cwd=None, input=None, env=None):
    e = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "attn.cli", *map(str, args)], cwd=cwd, input=input,
                          capture_output=True, text=True, env=e, timeout=300)  # fmt: skip


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    sr = 8000
    t = np.arange(int(0.5 * sr)) / sr
    chirp = (0.3 * np.sin(2 * np.pi * (200 + 1500 * t) * t)).astype(np.float32)
    files = {
        "sine": write_wav(d / "sine.wav", tone(440, 0.5, sr), sr),
        "chirp": write_wav(d / "chirp.wav", chirp, sr),
        "stereo44k": write_wav(d / "stereo44k.wav", np.stack([tone(440, 2.2, 44100)] * 2, 1), 44100),
        "bad": d / "bad.wav",
    }
    files["bad"].write_text("not audio")
    return files


def test_help_lists_every_command_with_examples():
    r = run("--help")
    assert r.exit_code == 0
    for cmd in ("train", "predict", "evaluate", "features", "info"):
        assert cmd in r.output
        sub = run(cmd, "--help")
        assert sub.exit_code == 0 and "Examples:" in sub.output, cmd


def test_help_does_not_import_torch():
    code = "import sys; from attn.cli.app import app\ntry: app(['--help'])\nexcept SystemExit: pass\n" \
           "assert 'torch' not in sys.modules, 'torch imported'"  # fmt: skip
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_version():
    r = run("--version")
    assert r.exit_code == 0 and r.output.startswith("attn ")


def test_predict_jsonl_in_input_order_with_errors_and_exit_code(trained_model, clips):
    r = run("predict", "--model", trained_model, clips["sine"], clips["bad"], clips["chirp"], "missing.wav",
            "--top-k", "2")  # fmt: skip
    assert r.exit_code == 1
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    assert [Path(x["input"]).name for x in recs] == ["sine.wav", "bad.wav", "chirp.wav", "missing.wav"]
    assert "label" in recs[0] and 0 < recs[0]["score"] <= 1 and len(recs[0]["top_k"]) == 2
    assert "bad.wav" in recs[1]["error"] and "not a readable audio file" in recs[1]["error"]
    assert "not found" in recs[3]["error"]
    assert "2 of 4 input(s) failed" in r.stderr


def test_predict_all_good_exits_zero_and_classifies(trained_model, clips):
    r = run("predict", "-m", trained_model, clips["sine"], clips["chirp"], "--format", "csv")
    assert r.exit_code == 0, r.output
    rows = r.stdout.strip().splitlines()
    assert rows[0].startswith("input,label,score") and len(rows) == 3
    assert rows[1].split(",")[1] == "sine"


def test_predict_resamples_and_frames_long_files(trained_model, clips):
    r = run("predict", "-m", trained_model, clips["stereo44k"], "--per-frame")
    rec = json.loads(r.stdout)
    assert r.exit_code == 0 and rec["label"] == "sine"
    assert abs(rec["duration"] - 2.2) < 0.01 and rec["windows"] == len(rec["frames"]) == 8
    assert rec["frames"][0]["start"] == 0 and rec["frames"][-1]["end"] == pytest.approx(2.2, abs=0.01)


def test_predict_reads_paths_from_stdin_and_folders(trained_model, clips):
    folder = clips["sine"].parent
    r = run("predict", "-m", trained_model, "-", input=f"{clips['chirp']}\n{clips['sine']}\n")
    assert [Path(json.loads(x)["input"]).name for x in r.stdout.splitlines()] == ["chirp.wav", "sine.wav"]
    r = run("predict", "-m", trained_model, folder)
    names = [Path(json.loads(x)["input"]).name for x in r.stdout.splitlines()]
    assert names == ["bad.wav", "chirp.wav", "sine.wav", "stereo44k.wav"] and r.exit_code == 1


def test_predict_default_model_is_runs_latest_or_env(trained_model, clips, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ATTN_MODEL", raising=False)
    r = run("predict", clips["sine"])
    assert r.exit_code == 2 and "runs/latest" in r.stderr and "attn train" in r.stderr
    monkeypatch.setenv("ATTN_MODEL", str(trained_model))
    assert run("predict", clips["sine"]).exit_code == 0
    monkeypatch.delenv("ATTN_MODEL")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "latest").symlink_to(trained_model.parent)
    assert run("predict", clips["sine"]).exit_code == 0


def test_bad_model_files_are_usage_errors(tmp_path, clips):
    p = tmp_path / "m.attn"
    p.write_bytes(b"\x80\x04junk")
    r = run("predict", "-m", p, clips["sine"])
    assert r.exit_code == 2 and "pickle" in r.stderr and "Traceback" not in r.output


def test_device_cuda_without_cuda(trained_model, clips):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    r = run("predict", "-m", trained_model, clips["sine"], "--device", "cuda")
    assert r.exit_code == 2 and "CUDA is not available" in r.stderr


def test_info_text_and_json(trained_model):
    r = run("info", trained_model, "--format", "json")
    info = json.loads(r.stdout)
    assert r.exit_code == 0 and info["labels"] == ["chirp", "noise_burst", "sine"]
    assert info["recipe"]["model"]["name"] == "cnn" and info["parameters"] > 0
    text = run("info", trained_model).stdout
    assert "labels" in text and "chirp" in text and "recipe:" in text
    from attn.pipelines.data.labelsets import label_list

    assert label_list(["dog", "rain, heavy", " x"]) == 'dog, "rain, heavy", " x"'  # reads back one way


def test_evaluate_on_the_stored_recipe_and_on_a_folder(trained_model, tmp_path):
    r = run("evaluate", "-m", trained_model, "--format", "json")
    m = json.loads(r.stdout)
    assert r.exit_code == 0 and set(m) >= {"accuracy", "macro_f1", "per_class", "confusion", "labels"}
    # which split was scored: the table said nothing of it, the JSON had no "split"
    assert m["split"] == "test" and m["data"] == "stored recipe test split"
    val = run("evaluate", "-m", trained_model, "--split", "val")
    assert val.stdout.splitlines()[0] == "stored recipe val split"
    folder = tmp_path / "data"
    write_wav(folder / "sine" / "a.wav", tone(500, 0.5, 8000), 8000)
    write_wav(folder / "sine" / "b.wav", tone(900, 0.5, 8000), 8000)
    r = run("evaluate", "-m", trained_model, folder, "--format", "json")
    m = json.loads(r.stdout)
    assert r.exit_code == 0 and m["count"] == 2 and m["per_class"]["sine"]["support"] == 2
    table = run("evaluate", "-m", trained_model, folder)
    assert table.exit_code == 0 and "accuracy" in table.stdout and "confusion" in table.stdout


def test_evaluate_refuses_labels_the_model_never_saw(trained_model, tmp_path):
    folder = tmp_path / "data"
    write_wav(folder / "trumpet" / "a.wav", tone(500, 0.5, 8000), 8000)
    r = run("evaluate", "-m", trained_model, folder)
    assert r.exit_code == 1 and "'trumpet'" in r.stderr and "not one the model was trained on" in r.stderr


def test_features_writes_what_the_model_sees(trained_model, clips, tmp_path):
    out = tmp_path / "f.npy"
    r = run("features", clips["stereo44k"], "--model", trained_model, "--out", out)
    assert r.exit_code == 0 and "(8, 24, 32)" in r.stdout
    x = np.load(out)
    assert x.dtype == np.float32 and x.shape == (8, 24, 32)


def test_train_cli_recipe_typo_exits_2_with_one_line(tmp_path, tiny_recipe):
    p = tiny_recipe()
    r = run("train", p, "--set", "train.epoch=3", "--out", tmp_path / "run")
    assert r.exit_code == 2
    assert r.stderr.strip().count("\n") == 0 and "did you mean 'train.epochs'" in r.stderr
    assert not (tmp_path / "run").exists()


def test_train_then_predict_in_a_fresh_directory_subprocess(tmp_path, tiny_recipe, clips):
    """What the README promises: train, then `attn predict FILE` with no --model."""
    p = tiny_recipe(epochs=2)
    r = attn_subprocess("train", p, "--format", "json", "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert Path(tmp_path, summary["model"]).exists() and summary["test_accuracy"] is not None
    r = attn_subprocess("predict", clips["sine"], clips["bad"], cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and "label" in json.loads(lines[0]) and "error" in json.loads(lines[1])


def test_batched_predict_equals_one_by_one(trained_model, tmp_path):
    """Windows from many files share (length-sorted) batches; results must not depend on that."""
    rng = np.random.default_rng(0)
    files = []
    for i, seconds in enumerate([0.1, 0.5, 1.3, 0.26, 2.0, 0.05, 0.7] * 10):
        x = tone(float(rng.uniform(200, 1500)), seconds, 8000, seed=i)
        files.append(write_wav(tmp_path / f"{i:02d}.wav", x, 8000))
    together = [json.loads(x) for x in run("predict", "-m", trained_model, *files, "--per-frame",
                                             "--batch-size", "8").stdout.splitlines()]  # fmt: skip
    assert len(together) == len(files)
    for f, rec in zip(files[::9], together[::9], strict=True):
        alone = json.loads(run("predict", "-m", trained_model, f, "--per-frame").stdout)
        assert alone["label"] == rec["label"] and abs(alone["score"] - rec["score"]) < 1e-5
        assert [fr["start"] for fr in alone["frames"]] == [fr["start"] for fr in rec["frames"]]


def test_records_go_to_stdout_while_a_progress_bar_is_on_the_terminal(trained_model, tmp_path):
    """`attn predict many/ > out.jsonl` from an interactive shell: stderr is a terminal, so a bar
    is drawn there (more than 20 inputs); the records must still reach stdout, not the bar's
    terminal (rich's Progress captured stdout by default: out.jsonl came out empty)."""
    import pty
    import threading

    for i in range(25):
        write_wav(tmp_path / "many" / f"{i:02d}.wav", tone(300 + 40 * i, 0.5, 8000), 8000)
    main, side = pty.openpty()
    shown = bytearray()

    def drain() -> None:  # read the terminal as it is written: a full pty buffer would block the child
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the child's end is closed
                return
            if not chunk:
                return
            shown.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        r = subprocess.run([sys.executable, "-m", "attn.cli", "predict", "-m", str(trained_model), "--threads", "1",
                            str(tmp_path / "many")], stdout=subprocess.PIPE, stderr=side, timeout=300,
                           env=dict(os.environ, TERM="xterm", COLUMNS="100"))  # fmt: skip
    finally:
        os.close(side)
        reader.join(10)
        os.close(main)
    records = [json.loads(line) for line in r.stdout.decode().splitlines()]
    assert r.returncode == 0 and [Path(x["input"]).name for x in records] == [f"{i:02d}.wav" for i in range(25)]
    assert b'"input"' not in shown and b"predicting" in shown  # the bar, and only the bar, on the terminal


def test_ctrl_c_in_predict_says_how_many_records_were_written(trained_model, tmp_path, monkeypatch):
    import attn.api.model as api_model

    wavs = [str(write_wav(tmp_path / f"{i}.wav", tone(440, 0.3, 8000), 8000)) for i in range(4)]
    real = api_model.Model.predict_iter

    def two_then_ctrl_c(self, *args, **kwargs):
        for i, rec in enumerate(real(self, *args, **kwargs)):
            if i == 2:
                raise KeyboardInterrupt
            yield rec

    monkeypatch.setattr(api_model.Model, "predict_iter", two_then_ctrl_c)
    r = runner.invoke(app, ["predict", "-m", str(trained_model), *wavs, "--format", "jsonl"])
    assert r.exit_code == 130 and len(r.stdout.splitlines()) == 2
    assert "interrupted: 2 of 4 input(s) were predicted and their records written" in r.stderr


def test_json_and_jsonl_name_the_same_output_and_info_takes_m(trained_model):
    """`-f json` was refused by predict (jsonl) and `-f jsonl` by info, evaluate and train (json):
    one word across commands. `attn info -m M` was refused where every other model command takes -m."""
    from typer.testing import CliRunner

    from attn.cli.app import app

    runner, m = CliRunner(), str(trained_model)
    for args in (["info", m], ["evaluate", "-m", m]):
        a, b = (runner.invoke(app, [*args, "-f", f]) for f in ("json", "jsonl"))
        assert a.exit_code == b.exit_code == 0 and a.stdout == b.stdout and json.loads(a.stdout), args
    assert (
        runner.invoke(app, ["info", "-m", m, "-f", "json"]).stdout
        == runner.invoke(app, ["info", m, "-f", "json"]).stdout
    )
    assert runner.invoke(app, ["info", m, "-m", m]).exit_code == 2
