"""Interrupted runs: SIGKILL mid-epoch then --resume ends with the same weights as an
uninterrupted run; Ctrl-C saves and says how to resume; concurrent runs never share a directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from attn.pipelines.store.container import read_container

EPOCHS = 6
RECIPE = """\
data: {synthetic: {classes: [sine, chirp, noise_burst], per_class: 60, seconds: 0.5, seed: 2}}
features: {sample_rate: 8000, frame_seconds: 0.5, hop_seconds: 0.25, n_fft: 256, hop_length: 128, n_mels: 24}
model: {name: cnn, channels: [8, 16], dropout: 0.3}
train: {epochs: 6, batch_size: 8, lr: 0.005, patience: 0, seed: 3, augment: {freq_mask: 3, time_mask: 3}}
"""


def _default_sigint() -> None:
    # As from a terminal: a test runner started in the background (`cmd &` in a script) has
    # SIGINT ignored, and a child would inherit that and never see the Ctrl-C we send.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(*args, cwd):
    return subprocess.Popen([sys.executable, "-m", "attn.cli", *map(str, args), "--threads", "1"], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)  # fmt: skip


def _wait_for_epochs(run: Path, n: int, proc, timeout=300, poll=0.05):
    t0 = time.time()
    while time.time() - t0 < timeout:
        h = run / "history.jsonl"
        if h.exists() and len(h.read_text().splitlines()) >= n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(poll)
    raise AssertionError("training did not progress")


def _weights(run: Path):
    return read_container(run / "model.attn").tensors()["state_dict"]


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    full = _start("train", recipe, "--out", tmp_path / "full", "--quiet", cwd=tmp_path)
    cut = _start("train", recipe, "--out", tmp_path / "cut", "--quiet", cwd=tmp_path)
    # Kill halfway through epoch 3, timed from the length of epoch 2 on this machine (a fixed
    # sleep let a fast machine finish the whole run first).
    _wait_for_epochs(tmp_path / "cut", 1, cut, poll=0.005)
    t1 = time.monotonic()
    _wait_for_epochs(tmp_path / "cut", 2, cut, poll=0.005)
    time.sleep((time.monotonic() - t1) / 2)
    cut.send_signal(signal.SIGKILL)
    cut.wait()
    assert full.wait(timeout=600) == 0, full.stderr.read()
    done = len((tmp_path / "cut" / "history.jsonl").read_text().splitlines())
    assert done < EPOCHS, "the run finished before it could be killed"
    read_container(tmp_path / "cut" / "last.ckpt")  # intact after the kill
    assert not [p for p in (tmp_path / "cut").iterdir() if p.name.endswith(".tmp")]
    resumed = _start("train", "--resume", tmp_path / "cut", "--quiet", cwd=tmp_path)
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "cut")
    assert all(torch.equal(a[k], b[k]) for k in a)
    hist = (tmp_path / "cut" / "history.jsonl").read_text().splitlines()
    assert [line.split('"train_loss"')[1][:12] for line in hist] == [
        line.split('"train_loss"')[1][:12] for line in (tmp_path / "full" / "history.jsonl").read_text().splitlines()
    ]


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_saves_state_and_says_how_to_resume(tmp_path, sig, code):
    """Ctrl-C, or a batch scheduler's time limit (SIGTERM): the run names the saved epoch and how
    to resume, and releases its folder."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.replace("epochs: 6", "epochs: 50"))
    proc = _start("train", recipe, "--out", tmp_path / "run", cwd=tmp_path)
    _wait_for_epochs(tmp_path / "run", 1, proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert f"attn train --resume {tmp_path / 'run'}" in err and "Traceback" not in err
    assert read_container(tmp_path / "run" / "last.ckpt").header["epoch"] >= 1
    assert not (tmp_path / "run" / ".attn-run.lock").exists()


def test_runs_started_at_the_same_moment_get_their_own_directories(tmp_path, monkeypatch):
    from attn.pipelines.store.rundir import new_run_dir

    monkeypatch.chdir(tmp_path)
    got, barrier = [], threading.Barrier(8)

    def start():
        barrier.wait()
        got.append(new_run_dir("recipes/same.yaml", None))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 8 and all(p.is_dir() for p in got)
    assert os.path.commonpath([str(p) for p in got]) == "runs"


def test_sigterm_before_any_epoch_leaves_no_folder_behind(tmp_path):
    """SIGTERM used to kill the run outright, leaving a lock and a folder that neither a new run
    nor --resume accepted."""
    recipe = tmp_path / "r.yaml"
    # batches of one: epoch 1 lasts seconds, so the signal lands in it even on a loaded machine
    # (in 8s its ~0.2 s could end before the signal was sent)
    recipe.write_text(RECIPE.replace("epochs: 6", "epochs: 50").replace("batch_size: 8", "batch_size: 1"))
    early = _start("train", recipe, "--out", tmp_path / "early", cwd=tmp_path)
    log = tmp_path / "early" / "train.log"
    t0 = time.time()
    while not (log.exists() and "steps/epoch" in log.read_text()):
        assert early.poll() is None and time.time() - t0 < 300, early.communicate()
        time.sleep(0.01)
    early.send_signal(signal.SIGTERM)
    out, err = early.communicate(timeout=120)
    assert early.returncode == 143 and "nothing to resume" in err, err
    assert not (tmp_path / "early").exists()


def test_ctrl_c_while_an_epoch_is_saved_lands_after_the_save(tmp_path, monkeypatch):
    """Ctrl-C between model.attn and last.ckpt of epoch 1 said "before any epoch finished: nothing
    to resume" yet left the folder, whose --resume then found no checkpoint. The save is now
    whole: the interrupt lands after it and names the saved epoch."""
    from attn.errors import Interrupted
    from attn.pipelines.recipe.load import load_recipe
    from attn.pipelines.store import artifact
    from attn.pipelines.train.run import train

    real = artifact.save_model

    def save_then_ctrl_c(*args, **kwargs):
        real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)  # as if Ctrl-C came between the model file and the checkpoint

    monkeypatch.setattr(artifact, "save_model", save_then_ctrl_c)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own: Ctrl-C raises
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    try:
        with pytest.raises(Interrupted, match="state after epoch 1 is saved"):
            train(load_recipe(recipe), str(recipe), out=str(tmp_path / "run"), device="cpu")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert (tmp_path / "run" / "last.ckpt").exists() and (tmp_path / "run" / "model.attn").exists()


def test_interrupts_after_holds_a_signal_until_the_block_ends():
    from attn.pipelines.fsutil import interrupts_after

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    done = []
    try:
        with pytest.raises(KeyboardInterrupt):
            with interrupts_after():
                os.kill(os.getpid(), signal.SIGINT)
                done.append("after the signal")
        assert done == ["after the signal"] and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)


def test_an_interrupt_that_a_library_wrapped_still_ends_as_one(capsys):
    """SIGTERM landing in pydantic's serializer came out as PydanticSerializationError (its cause the
    KeyboardInterrupt): 'internal error', exit 1, where the run stopped as asked (CI saw it once)."""
    import typer
    from pydantic import BaseModel, model_serializer

    from attn.cli.common import handle_errors

    class Dumped(BaseModel):
        x: int = 1

        @model_serializer(mode="wrap")
        def _dump(self, handler):
            raise KeyboardInterrupt  # as a signal handler raises it, mid-serialisation

    @handle_errors
    def command():
        Dumped().model_dump()

    with pytest.raises(typer.Exit) as stop:
        command()
    assert stop.value.exit_code == 130 and "interrupted" in capsys.readouterr().err


def test_resume_of_a_path_that_is_no_run_says_so(tmp_path):
    """A missing folder got "no last.ckpt to resume from: the run stopped before its first epoch
    was saved; remove the folder", and any file named its parent folder."""
    from typer.testing import CliRunner

    from attn.cli.app import app

    (tmp_path / "notes.csv").write_text("a,b\n")
    for arg, says in (("nowhere", "no such run directory"), ("notes.csv", "not a run directory (a file)")):
        r = CliRunner().invoke(app, ["train", "--resume", str(tmp_path / arg)])
        assert r.exit_code == 2 and r.stderr.strip() == f"error: --resume {tmp_path / arg}: {says}", r.output


def test_a_stop_whose_interrupt_was_swallowed_still_stops_training(tmp_path):
    """SIGTERM's KeyboardInterrupt, raised wherever Python is, was sometimes eaten by code that
    catches or wraps it; the handler had set SIGTERM to ignored, and the run trained on to its end
    (exit 0). The stop is kept as a flag too, and the trainer checks it every step."""
    from attn.errors import Interrupted
    from attn.pipelines import fsutil
    from attn.pipelines.recipe.load import load_recipe
    from attn.pipelines.train.callbacks import Callbacks
    from attn.pipelines.train.run import train

    class AskInEpoch2(Callbacks):  # as the handler does, without the exception (the one that was lost)
        def on_epoch_begin(self, epoch: int, epochs: int, steps: int) -> None:
            if epoch == 2:
                fsutil.STOP_REQUESTED.set()

    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    with pytest.raises(Interrupted, match="during epoch 2; state after epoch 1 is saved"):
        train(load_recipe(recipe), str(recipe), out=str(tmp_path / "run"), device="cpu", callbacks=AskInEpoch2())
    assert not fsutil.STOP_REQUESTED.is_set()  # used up: the next run trains


def test_an_error_wrapping_the_interrupt_after_a_sigterm_is_that_stop(monkeypatch):
    """It was 'internal error: PydanticSerializationError: ... KeyboardInterrupt', exit 1."""
    import typer

    from attn.cli import common

    @common.handle_errors
    def command():
        common.State.terminated = True  # as the SIGTERM handler leaves it
        raise RuntimeError("Error calling function `_flat`: KeyboardInterrupt")

    monkeypatch.setattr(common.State, "terminated", False)
    with pytest.raises(typer.Exit) as done:
        command()
    assert done.value.exit_code == 143
