"""Training: it learns, it is reproducible, it resumes exactly, it fails clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from attn.errors import Interrupted, TrainingError
from attn.pipelines.recipe.load import load_recipe
from attn.pipelines.store.container import read_container
from attn.pipelines.store.rundir import new_run_dir
from attn.pipelines.train.run import resume, train


def _weights(path):
    return read_container(path).tensors()["state_dict"]


def test_tiny_model_learns_and_writes_a_complete_run(tmp_path, tiny_recipe, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = tiny_recipe(epochs=6)
    res = train(load_recipe(p), str(p), device="cpu")
    run = res.run_dir
    assert run.parent.name == "runs" and (tmp_path / "runs" / "latest").resolve() == run.resolve()
    for name in ("model.attn", "recipe.yaml", "history.jsonl", "metrics.json", "train.log"):
        assert (run / name).is_file(), name
    assert not (run / "last.ckpt").exists()  # finished: its resume state is dead weight (4x a fine-tuned model)
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == list(range(1, 7))
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) >= {"accuracy", "macro_f1", "per_class", "confusion", "labels"}
    assert metrics["labels"] == ["chirp", "noise_burst", "sine"]
    assert metrics["accuracy"] >= 0.8  # 3 classes: chance is 0.33
    assert load_recipe(run / "recipe.yaml") == load_recipe(p)


def test_same_seed_same_weights_other_seed_other_weights(tmp_path, tiny_recipe):
    p = tiny_recipe(epochs=2)
    a = train(load_recipe(p), str(p), out=str(tmp_path / "a"), device="cpu")
    b = train(load_recipe(p), str(p), out=str(tmp_path / "b"), device="cpu")
    c = train(load_recipe(p, ["train.seed=1"]), str(p), out=str(tmp_path / "c"), device="cpu")
    wa, wb, wc = _weights(a.model_path), _weights(b.model_path), _weights(c.model_path)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


class _StopAt:
    """Simulates Ctrl-C at the start of an epoch."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_begin(self, epoch, epochs, steps):
        if epoch == self.epoch:
            raise KeyboardInterrupt

    def on_step(self, step, loss): ...
    def on_epoch_end(self, record): ...


def test_interrupted_run_resumes_to_the_same_weights(tmp_path, tiny_recipe):
    p = tiny_recipe(epochs=4)
    p.write_text(p.read_text().replace("augment", "augment").replace("dropout: 0.0", "dropout: 0.3"))
    r = load_recipe(p, ["train.augment.time_mask=3", "train.augment.freq_mask=3", "train.ema=0.9"])  # RNG, EMA
    full = train(r, str(p), out=str(tmp_path / "full"), device="cpu")
    with pytest.raises(Interrupted, match="attn train --resume"):
        train(r, str(p), out=str(tmp_path / "cut"), device="cpu", callbacks=_StopAt(3))
    assert len((tmp_path / "cut" / "history.jsonl").read_text().splitlines()) == 2
    resumed = resume(str(tmp_path / "cut"), device="cpu")
    assert resumed.epochs_run == 4
    wf, wr = _weights(full.model_path), _weights(resumed.model_path)
    assert all(torch.equal(wf[k], wr[k]) for k in wf)
    assert resumed.history == full.history or [h["train_loss"] for h in resumed.history] == [
        h["train_loss"] for h in full.history
    ]


def test_epochs_shorter_than_their_save_are_saved_every_few_and_resume_exactly(tmp_path, tiny_recipe, monkeypatch):
    """A checkpoint that takes far longer to write than an epoch lasts (a fine-tuned encoder on a
    small set: 360 MB after half-second epochs) is written every few epochs, so saving stays ~10%
    of the run; the first and the last epoch always. Ctrl-C names the epoch last.ckpt holds, and
    --resume from it ends with the weights and history of an uninterrupted run."""
    import time

    from attn.pipelines.store import checkpoint as C

    real, saved = C.CheckpointWriter.write, []

    def slow(self, epoch, state):
        time.sleep(0.5)
        saved.append(epoch)
        real(self, epoch, state)

    monkeypatch.setattr(C.CheckpointWriter, "write", slow)
    p = tiny_recipe(epochs=12)
    r = load_recipe(p, ["train.patience=0"])
    full = train(r, str(p), out=str(tmp_path / "full"), device="cpu")
    assert saved[0] == 1 and saved[-1] == 12 and len(saved) <= 6, saved
    with pytest.raises(Interrupted) as cut:
        train(r, str(p), out=str(tmp_path / "cut"), device="cpu", callbacks=_StopAt(9))
    held = read_container(tmp_path / "cut" / "last.ckpt").header["epoch"]
    assert held < 8 and f"state after epoch {held} is saved" in str(cut.value)
    assert len((tmp_path / "cut" / "history.jsonl").read_text().splitlines()) == 8  # every finished epoch's line
    resumed = resume(str(tmp_path / "cut"), device="cpu")
    wf, wr = _weights(full.model_path), _weights(resumed.model_path)
    assert all(torch.equal(wf[k], wr[k]) for k in wf)
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in full.history]
    lines = (tmp_path / "cut" / "history.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == list(range(1, 13))
    # A divergence names the epoch on disk too, not the last one that finished.
    import attn.pipelines.train.loss as L

    real_ce, steps = L.F.cross_entropy, {"n": 0}

    def diverge(*a, **k):
        steps["n"] += 1
        return real_ce(*a, **k) * (float("nan") if steps["n"] > 8 * 9 else 1.0)  # 9 steps an epoch: epoch 9

    monkeypatch.setattr(L.F, "cross_entropy", diverge)
    with pytest.raises(TrainingError, match="at epoch 9") as bad:
        train(r, str(p), out=str(tmp_path / "nan"), device="cpu")
    held = read_container(tmp_path / "nan" / "last.ckpt").header["epoch"]
    assert held < 8 and f"the checkpoint of epoch {held} is kept" in str(bad.value)


def test_resume_refuses_data_that_changed_since_the_run_started(tmp_path):
    """Rows added to the training CSV of an interrupted run: resuming went on with 67 texts where it
    started with 54, silently. It continues exactly or not at all."""
    from test_text import _text_data

    from attn.errors import InputError

    p = _text_data(tmp_path)
    r = load_recipe(p, ["train.epochs=3"])
    with pytest.raises(Interrupted):
        train(r, str(p), out=str(tmp_path / "cut"), device="cpu", callbacks=_StopAt(2))
    with open(tmp_path / "train.csv", "a") as f:
        f.write("Who painted the bridge again ?,HUM\n")
    with pytest.raises(InputError, match="the data changed since the run started"):
        resume(str(tmp_path / "cut"), device="cpu")


def test_reported_test_metrics_are_those_of_the_saved_best_model(tmp_path, tiny_recipe, monkeypatch):
    import attn.pipelines.train.trainer as T
    from attn.pipelines.infer.evaluate import evaluate
    from attn.pipelines.store.artifact import load_model

    monkeypatch.setattr(T.Trainer, "_key", lambda self, rec: [-rec["epoch"]])  # epoch 1 is the best
    p = tiny_recipe(epochs=3)
    r = load_recipe(p, ["train.ema=0.9", "train.patience=0"])  # the last epoch's average differs
    res = train(r, str(p), out=str(tmp_path / "run"), device="cpu")
    assert res.best_epoch == 1 and res.epochs_run == 3
    again = evaluate(load_model(res.model_path), recipe=r, split="test")
    assert abs(again["loss"] - res.metrics["loss"]) < 1e-5 and again["accuracy"] == res.metrics["accuracy"]


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_checkpoint(tmp_path, tiny_recipe, monkeypatch):
    import attn.pipelines.train.loss as T

    p = tiny_recipe(epochs=3)
    real = T.F.cross_entropy
    calls = {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        loss = real(*a, **k)
        return loss * float("nan") if calls["n"] > 12 else loss  # epoch 1 has 9 steps

    monkeypatch.setattr(T.F, "cross_entropy", flaky)
    with pytest.raises(TrainingError, match=r"loss is nan at epoch 2, step 4"):
        train(load_recipe(p), str(p), out=str(tmp_path / "run"), device="cpu")
    ckpt = read_container(tmp_path / "run" / "last.ckpt")
    assert ckpt.header["epoch"] == 1
    assert (tmp_path / "run" / "model.attn").exists()


def test_run_directories_never_collide(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dirs = {new_run_dir("recipes/x.yaml", None) for _ in range(5)}
    assert len(dirs) == 5


def test_out_dir_that_is_not_empty_is_refused(tmp_path, tiny_recipe):
    from attn.errors import ConfigError

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "x").write_text("keep me")
    p = tiny_recipe()
    with pytest.raises(ConfigError, match="not empty"):
        train(load_recipe(p), str(p), out=str(tmp_path / "run"), device="cpu")
    assert (tmp_path / "run" / "x").read_text() == "keep me"


@pytest.mark.slow
def test_compiled_training_matches_eager_and_saves_plain_weights(tmp_path, tiny_recipe):
    # train.compile wraps only the training forward; the artifact must hold the plain module's
    # weights (same keys), and the numbers must follow the eager run (fusion reorders float ops).
    p = tiny_recipe(epochs=2)
    eager = train(load_recipe(p), str(p), out=str(tmp_path / "e"), device="cpu")
    compiled = train(load_recipe(p, ["train.compile=true"]), str(p), out=str(tmp_path / "c"), device="cpu")
    we, wc = _weights(eager.model_path), _weights(compiled.model_path)
    assert we.keys() == wc.keys()
    for k in we:
        assert torch.allclose(we[k].float(), wc[k].float(), atol=1e-3, rtol=1e-3), k


TINY_QUICKSTART = ["data.synthetic.per_class=10", "train.epochs=1", "model.channels=[4,8]"]


@pytest.mark.parametrize(
    ("overrides", "validations"),
    [
        ([], 1),
        # auto training values are chosen within their fields' ranges: set on the validated recipe
        (["train.patience=auto", "train.monitor=auto", "train.windows=auto"], 1),
        # auto features: validated again with the numbers, for the rules that wait for them
        (["features.sample_rate=auto", "features.frame_seconds=auto", "features.hop_seconds=auto",
          "features.n_fft=32ms"], 2),
    ],
)  # fmt: skip
def test_a_quickstart_training_validates_its_recipe_once(tmp_path, monkeypatch, overrides, validations):
    """The recipe is validated when it loads, and again only when `auto` gave its features numbers;
    every later step (auto values, run directory, checkpoints, model file, report) works on that
    Recipe."""
    import attn
    from attn.pipelines.recipe.config import Recipe

    calls = []
    real = Recipe.model_validate.__func__

    def counted(cls, *args, **kwargs):
        calls.append(cls)
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(Recipe, "model_validate", classmethod(counted))
    res = attn.train("recipes/quickstart.yaml", [*TINY_QUICKSTART, *overrides], out=tmp_path / "q", device="cpu")
    assert (res.run_dir / "report.html").is_file() and res.metrics["count"] > 0
    assert calls.count(Recipe) == validations


def test_auto_features_that_break_a_rule_once_resolved_are_a_recipe_error(tmp_path):
    """Why resolved features are validated again: 4 ms is 64 samples at 16 kHz, 33 FFT bins, too
    few for 40 mel bands; only the numbers show it."""
    import attn

    with pytest.raises(attn.ConfigError, match="n_mels"):
        attn.train(
            "recipes/quickstart.yaml", [*TINY_QUICKSTART, "features.n_fft=4ms"], out=tmp_path / "q", device="cpu"
        )


def _tone_folder(root: Path, per_class: int = 8) -> Path:
    from helpers import tone, write_wav

    for label, freq in (("low", 220), ("high", 1760)):
        for i in range(per_class):
            write_wav(root / label / f"{label}{i}.wav", tone(freq, 0.5, 8000, seed=i), 8000)
    return root


def _tone_recipe(tmp_path: Path, root: Path, epochs: int) -> Path:
    p = tmp_path / "tones.yaml"
    p.write_text(f"""
data: {{root: {root}, val_fraction: 0.25, test_fraction: 0.25}}
features: {{sample_rate: 8000, frame_seconds: 0.5, hop_seconds: 0.25, n_fft: 256, hop_length: 128, n_mels: 16}}
model: {{name: cnn, channels: [4]}}
train: {{epochs: {epochs}, batch_size: 4, patience: 0, baseline: false}}
""")
    return p


def test_resume_refuses_audio_files_whose_contents_changed_under_the_same_names(tmp_path):
    """The fingerprint hashed audio files' names only: with the contents of 'low' and 'high' clips
    swapped under their names (relabelled), a resumed run trained on (sweep AG)."""
    from attn.errors import InputError

    root = _tone_folder(tmp_path / "audio")
    p = _tone_recipe(tmp_path, root, epochs=3)
    with pytest.raises(Interrupted):
        train(load_recipe(p), str(p), out=str(tmp_path / "cut"), device="cpu", callbacks=_StopAt(2))
    for i in range(8):
        lo, hi = root / "low" / f"low{i}.wav", root / "high" / f"high{i}.wav"
        a, b = lo.read_bytes(), hi.read_bytes()
        lo.write_bytes(b)
        hi.write_bytes(a)
    with pytest.raises(InputError, match="the data changed since the run started"):
        resume(str(tmp_path / "cut"), device="cpu")


def test_resume_trains_on_the_runs_thread_count(tmp_path, tiny_recipe, caplog):
    """1 torch thread and 2 sum floats in another order: a run stopped on 2 and resumed on 1 ended
    with other weights and another temperature (sweep AG). A resume takes the run's count unless
    one is given, and then says it no longer continues exactly."""
    p = tiny_recipe(epochs=3)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with pytest.raises(Interrupted):
            train(load_recipe(p), str(p), out=str(tmp_path / "cut"), device="cpu", callbacks=_StopAt(2))
        assert read_container(tmp_path / "cut" / "last.ckpt").tensors()["state"]["threads"] == 2
        torch.set_num_threads(1)
        with caplog.at_level("INFO", logger="attn"):
            res = resume(str(tmp_path / "cut"), device="cpu")
        assert torch.get_num_threads() == 2 and "on 2 torch thread(s), as the run trained" in caplog.text
        t = read_container(res.model_path).header["train"]
        assert t["device"] == "cpu" and t["threads"] == 2
    finally:
        torch.set_num_threads(before)


def test_resume_with_another_thread_count_says_it_is_not_exact(tmp_path, tiny_recipe, caplog):
    from attn.pipelines.train.run import same_threads

    before = torch.get_num_threads()
    try:
        with caplog.at_level("WARNING", logger="attn"):
            same_threads(2, 1)
        assert torch.get_num_threads() == 1
        assert "trained on 2 torch thread(s) and resumes on 1" in caplog.text
        caplog.clear()
        same_threads(None, None)  # a checkpoint from before the count was kept: left as it is
        assert torch.get_num_threads() == 1 and not caplog.text
    finally:
        torch.set_num_threads(before)


def test_evaluate_says_when_the_test_split_is_not_the_one_the_model_was_held_out_from(tmp_path, caplog):
    """Clips added to a folder carved into splits move examples between them: `attn evaluate`
    scored a model on a 'test split' holding 15 of its own training clips, silently (sweep AG)."""
    from attn.pipelines.infer.evaluate import evaluate
    from attn.pipelines.store.artifact import load_model

    root = _tone_folder(tmp_path / "audio")
    p = _tone_recipe(tmp_path, root, epochs=1)
    res = train(load_recipe(p), str(p), out=str(tmp_path / "run"), device="cpu")
    loaded = load_model(res.model_path)
    with caplog.at_level("WARNING", logger="attn"):
        evaluate(loaded)
    assert "not the test split" not in caplog.text
    _tone_folder(tmp_path / "audio", per_class=12)  # 4 more clips a class: the carving moves
    with caplog.at_level("WARNING", logger="attn"):
        evaluate(loaded)
    assert "not the test split this model was scored on when it trained (4 examples then" in caplog.text
