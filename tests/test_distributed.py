"""Training under torchrun (torch.distributed, Gloo on CPU): two processes with batch B each
train the same model as one process with batch 2B, and only rank 0 writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from attn.pipelines.recipe.load import load_recipe
from attn.pipelines.store.container import read_container
from attn.pipelines.train.run import train

# No batch norm and no dropout: the only difference between the runs is where the gradient
# average is taken, so the two must agree to float rounding.
RECIPE = """\
data:
  synthetic: {classes: [sine, noise_burst, chirp], per_class: 40, seconds: 0.5, seed: 1}
  val_fraction: 0.2
  test_fraction: 0.2
features: {sample_rate: 8000, frame_seconds: 0.5, hop_seconds: 0.25, n_fft: 256, hop_length: 128, n_mels: 24}
model: {name: transformer, d_model: 16, heads: 2, layers: 1, ff_dim: 32, dropout: 0.0}
train: {epochs: 3, batch_size: 8, lr: 0.003, patience: 0, seed: 0}
"""


def _history(run):
    return [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]


def test_two_processes_train_like_one_with_the_combined_batch(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    one = train(load_recipe(recipe), str(recipe), out=str(tmp_path / "one"), device="cpu")

    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "attn.cli", "train", str(recipe), "--out", str(tmp_path / "two"), "--device", "cpu",
           "--set", "train.batch_size=4", "--format", "json"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    results = [line for line in r.stdout.splitlines() if line.startswith("{")]
    assert len(results) == 1  # rank 0 reports; rank 1 is silent

    two = tmp_path / "two"
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.run_dir.iterdir())
    h1, h2 = _history(one.run_dir), _history(two)
    assert [h["epoch"] for h in h2] == [1, 2, 3]
    for a, b in zip(h1, h2, strict=True):
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-4 and abs(a["val_loss"] - b["val_loss"]) < 1e-4

    w1 = read_container(one.model_path).tensors()["state_dict"]
    w2 = read_container(two / "model.attn").tensors()["state_dict"]
    # Adam divides by sqrt(v): a rounding difference in a near-zero gradient can move a weight by
    # a fraction of the learning rate, so compare at that scale.
    for k in w1:
        assert torch.allclose(w1[k].float(), w2[k].float(), atol=2e-3), k


def test_ctrl_c_on_a_process_that_does_not_save_names_process_0(tmp_path, monkeypatch):
    import pytest

    from attn.errors import Interrupted
    from attn.pipelines.data.prepared import prepare_data
    from attn.pipelines.store.rundir import start_run
    from attn.pipelines.train.distributed import World
    from attn.pipelines.train.model import train_model
    from attn.pipelines.train.trainer import Trainer

    def interrupt(self, *args, **kwargs):
        raise KeyboardInterrupt

    (tmp_path / "r.yaml").write_text(RECIPE)
    recipe = load_recipe(tmp_path / "r.yaml")
    monkeypatch.setattr(Trainer, "fit", interrupt)
    with pytest.raises(Interrupted) as e:  # rank 1 writes nothing, so it never knows the saved epoch
        train_model(
            recipe, prepare_data(recipe), start_run(tmp_path / "run"), device=torch.device("cpu"), world=World(rank=1)
        )
    assert "process 1" in str(e.value) and "nothing to resume" not in str(e.value)


def _torchrun(tmp_path, n: int, *args: str):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
           "-m", "attn.cli", "train", "quickstart.yaml", "--device", "cpu", *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)


def test_ranks_with_batch_norm_stop_early_together(tmp_path):
    """Each rank's batch-norm statistics came from its own batches, so the ranks evaluated
    different models: here rank 0 stopped early at epoch 2 while rank 1 trained on, and the
    finished run (model written) ended in 'internal error: ... Connection closed by peer', exit 1.
    Warnings were said once per process."""
    r = _torchrun(tmp_path, 2, "--out", "run", "--set", "train.epochs=8", "--set", "train.patience=1",
                  "--set", "train.lr=0.02", "--set", "data.synthetic.per_class=60")  # fmt: skip
    assert r.returncode == 0 and "internal error" not in r.stderr, r.stderr[-3000:]
    history = _history(tmp_path / "run")
    assert len(history) < 8  # it did stop early, on both ranks alike
    assert r.stderr.count("warning: the network scores below") <= 1


def test_fewer_training_examples_than_processes_is_refused(tmp_path):
    """A rank with no example trained 0 steps a epoch ('train_loss=0.0000') and wrote an
    untrained model, exit 0."""
    r = _torchrun(tmp_path, 3, "--out", "tiny", "--set", "train.epochs=2", "--set", "data.synthetic.per_class=1",
                  "--set", "data.synthetic.classes=[sine,square]")  # fmt: skip
    assert r.returncode != 0 and "error: 2 training example(s) for 3 processes" in r.stderr, r.stderr[-3000:]
    assert not (tmp_path / "tiny" / "model.attn").exists()


def test_a_run_resumes_only_with_the_processes_it_trained_with(tmp_path):
    """A run resumed by another number of processes trained on silently with another batch and a
    schedule that no longer ended where it did (1 for 2: LR 2.4e-4 at the end, not 1e-6)."""
    from attn.pipelines.train.callbacks import Callbacks

    class StopInEpoch2(Callbacks):
        def on_epoch_begin(self, epoch: int, epochs: int, steps: int) -> None:
            if epoch == 2:
                raise KeyboardInterrupt

    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    try:
        train(load_recipe(recipe), str(recipe), out=str(tmp_path / "run"), device="cpu", callbacks=StopInEpoch2())
    except Exception as e:  # noqa: BLE001 - Interrupted, naming the saved epoch
        assert "state after epoch 1 is saved" in str(e), e
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "attn.cli", "train", "--resume", str(tmp_path / "run"), "--device", "cpu"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert r.returncode != 0 and "this run trained with 1 process(es)" in r.stderr, r.stderr[-3000:]
    assert "resume it with 1: attn train --resume" in r.stderr
    assert (tmp_path / "run" / "last.ckpt").exists()  # still there to resume the right way


def test_a_peer_that_stopped_first_is_named_not_an_internal_error(tmp_path):
    """Process 0 refused --out (a finished run there); process 1 then said 'internal error:
    RuntimeError: [...] Connection closed by peer [...] GLHF!' before the real cause."""
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "model.attn").write_bytes(b"x")
    r = _torchrun(tmp_path, 2, "--out", "taken", "--set", "train.epochs=1")
    assert r.returncode != 0 and "directory exists and is not empty" in r.stderr, r.stderr[-3000:]
    assert "internal error" not in r.stderr


def test_torchrun_variables_left_in_the_environment_are_a_usage_error(tmp_path):
    """WORLD_SIZE and RANK set outside torchrun gave 'internal error: ValueError: ... MASTER_ADDR
    expected'; a RANK past WORLD_SIZE was not checked."""
    for rank, says in (("0", "WORLD_SIZE=2 asks for several processes, but they cannot meet"),
                       ("5", "RANK 5 with WORLD_SIZE 2")):  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT")}
        r = subprocess.run([sys.executable, "-m", "attn.cli", "train", "quickstart.yaml", "--out", "run"],
                           capture_output=True, text=True, cwd=tmp_path, timeout=300,
                           env={**env, "WORLD_SIZE": "2", "RANK": rank, "OMP_NUM_THREADS": "1"})  # fmt: skip
        assert r.returncode == 2 and says in r.stderr and "internal error" not in r.stderr, r.stderr[-2000:]
        assert not (tmp_path / "run").exists()
