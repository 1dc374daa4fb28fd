"""Cross-validation (train.folds / attn train --folds / data.fold_column): one model per fold
scored on its held-out fold, their mean and spread, a pooled confusion matrix, then the saved
model trained on every fold."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from attn.cli.app import app

runner = CliRunner()


def test_folds_score_each_held_out_fold_then_train_on_all(tiny_recipe, tmp_path):
    out = tmp_path / "run"
    r = runner.invoke(app, ["train", str(tiny_recipe(epochs=3)), "--folds", "3", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "folds      accuracy" in r.output
    cv = json.loads((out / "metrics.json").read_text())["cv"]
    assert [f["fold"] for f in cv["folds"]] == ["1", "2", "3"]
    for name in ("1", "2", "3"):
        assert (out / f"fold-{name}" / "model.attn").exists()
    assert not list(out.rglob("last.ckpt"))  # it cannot be resumed: no resume state kept (345 MB a fold, fine-tuned)
    # Every labelled non-test example is held out exactly once: the pooled matrix counts them all.
    info = json.loads(runner.invoke(app, ["info", str(out), "--format", "json"]).output)
    n = info["train"]["data"]["clips"]
    assert sum(map(sum, cv["confusion"])) == n["train"] == sum(f["count"] for f in cv["folds"])
    assert abs(cv["accuracy_mean"] - sum(f["accuracy"] for f in cv["folds"]) / 3) < 1e-9
    assert info["epoch"] <= 3
    assert info["cv"]["folds"] == 3 and info["cv"]["accuracy_mean"] == pytest.approx(cv["accuracy_mean"], abs=1e-6)
    assert "folds        accuracy" in runner.invoke(app, ["info", str(out)]).output  # it showed no trace of the CV
    # The saved model is blended as the folds chose (their mean weight), as the temperature fitted on
    # their blended out-of-fold scores assumes; it was the network alone.
    weights = [json.loads((out / f"fold-{k}" / "metrics.json").read_text())["blend"]["weight"] for k in "123"]
    saved = json.loads((out / "metrics.json").read_text())["blend"]["weight"]
    assert saved == pytest.approx(sum(weights) / 3, abs=1e-4)
    # Resuming it (or one of its folds) was an ordinary run that replaced the model and dropped `cv`.
    for target in (out, out / "fold-2"):
        r = runner.invoke(app, ["train", "--resume", str(target)])
        assert r.exit_code == 2 and "a cross-validation run cannot be resumed; train it again" in r.output


def test_ctrl_c_in_a_fold_says_the_run_must_be_trained_again(tiny_recipe, tmp_path):
    """The fold's own message said `attn train --resume run/fold-2`, which finished fold 2 as a run
    of its own on another split, and no final model was ever trained."""
    from attn.errors import Interrupted
    from attn.pipelines.recipe.load import load_recipe
    from attn.pipelines.train.run import train

    class CtrlC:
        def __init__(self) -> None:
            self.epochs = 0

        def on_epoch_begin(self, epoch, epochs, steps):
            self.epochs += 1
            if self.epochs == 5:  # fold 2's second epoch
                raise KeyboardInterrupt

    p = tiny_recipe(epochs=3)
    with pytest.raises(
        Interrupted,
        match=r"interrupted in fold 2 \(2 of 3\): a cross-validation run cannot be "
        r"resumed; train it again: attn train .*recipe.yaml --out NEW_DIR",
    ):
        train(load_recipe(p, ["train.folds=3"]), str(p), out=str(tmp_path / "run"), device="cpu", callbacks=CtrlC())
    # after the folds, in the final model's training: its half-trained model is not left for predict to use
    stop = CtrlC()
    stop.epochs = -6  # 3 folds of 3 epochs, then the final model's second epoch
    with pytest.raises(Interrupted, match="in the final model's training, after the folds"):
        train(load_recipe(p, ["train.folds=3"]), str(p), out=str(tmp_path / "final"), device="cpu", callbacks=stop)
    assert not (tmp_path / "final" / "model.attn").exists() and not (tmp_path / "final" / "last.ckpt").exists()


def test_a_fold_column_and_another_fold_count_conflict_and_a_class_in_one_fold_warns(tiny_recipe, tmp_path, caplog):
    from attn.errors import ConfigError
    from attn.pipelines.data.items import Item
    from attn.pipelines.recipe.load import load_recipe
    from attn.pipelines.train.folds import assign_folds

    r = load_recipe(tiny_recipe(), ["data.fold_column=fold", "train.folds=2"])
    items = [Item(source=f"{i}.wav", label="a" if i < 6 else "b", fold=str(i % 3 + 1)) for i in range(9)]
    with pytest.raises(ConfigError, match="train.folds 2 .--folds. but data.fold_column 'fold' names 3 folds"):
        assign_folds(items, r)
    r = load_recipe(tiny_recipe(), ["data.fold_column=fold"])
    lonely = [*items[:6], *(Item(source=f"n{i}.wav", label="noise", fold="9") for i in range(3))]
    assign_folds(lonely, r)
    assert "fold 9 holds the only examples of noise" in caplog.text


def test_stratified_folds_are_even_and_disjoint(tiny_recipe):
    from attn.pipelines.data.sources import list_items
    from attn.pipelines.recipe.load import load_recipe
    from attn.pipelines.train.folds import assign_folds

    r = load_recipe(tiny_recipe(), ["train.folds=4"])
    items = list_items(r.data)
    folds = assign_folds(items, r)
    sizes = [len(f) for f in folds.values()]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == len(items)
    assert len({id(it) for f in folds.values() for it in f}) == len(items)
    for f in folds.values():  # stratified: each fold has every label
        assert {it.label for it in f} == {it.label for it in items}


def test_a_fold_column_gives_the_folds(tmp_path):
    from helpers import tone, write_wav

    rows = ["path,label,fold,split"]
    for i in range(24):
        label, freq = ("low", 300) if i % 2 else ("high", 2000)
        write_wav(tmp_path / f"a{i}.wav", tone(freq, 0.5, 8000, seed=i), 8000)
        rows.append(f"a{i}.wav,{label},{'A' if i < 12 else 'B'},{'test' if i >= 20 else 'train'}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""
data: {{manifest: {tmp_path / "labels.csv"}, fold_column: fold}}
features: {{sample_rate: 8000, frame_seconds: 0.5, hop_seconds: 0.25, n_fft: 256, hop_length: 128, n_mels: 24}}
model: {{name: cnn, channels: [4, 8]}}
train: {{epochs: 2, batch_size: 4, patience: 0}}
""")
    r = runner.invoke(app, ["train", str(recipe), "--out", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    cv = json.loads((tmp_path / "run" / "metrics.json").read_text())["cv"]
    assert [(f["fold"], f["count"]) for f in cv["folds"]] == [("A", 12), ("B", 8)]


@pytest.mark.parametrize("value", ["1", "-1"])
def test_one_fold_is_refused(tiny_recipe, value):
    r = runner.invoke(app, ["train", str(tiny_recipe()), "--set", f"train.folds={value}"])
    assert r.exit_code == 2 and "train.folds" in r.output


def test_the_report_shows_each_fold_and_the_pooled_matrix(tiny_recipe, tmp_path):
    out = tmp_path / "run"
    r = runner.invoke(app, ["train", str(tiny_recipe(epochs=2)), "--folds", "2", "--out", str(out)])
    assert r.exit_code == 0, r.output
    page = (out / "report.html").read_text()
    assert "Cross-validation (2 folds" in page and "mean +- std" in page
    assert "pooled confusion matrix of the held-out folds" in page


def test_a_fold_column_naming_one_fold_is_refused_before_a_run_folder_exists(tmp_path):
    """It printed "run directory ...", "removed ...: nothing to resume", then the error (exit 2
    means nothing was done)."""
    import numpy as np
    import soundfile as sf
    from typer.testing import CliRunner

    from attn.cli.app import app

    rows = ["path,label,fold"]
    for i in range(8):
        sf.write(tmp_path / f"{i}.wav", np.full(4000, 0.1 * (i % 2 + 1), np.float32), 8000)
        rows.append(f"{i}.wav,{'ab'[i % 2]},1")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("data: {manifest: m.csv, fold_column: fold}\n"
                      "features: {sample_rate: 8000, frame_seconds: 0.5, hop_seconds: 0.25, n_fft: 256, "
                      "hop_length: 128, n_mels: 16}\nmodel: {name: cnn, channels: [4]}\n")  # fmt: skip
    r = CliRunner().invoke(app, ["train", str(recipe), "--out", str(tmp_path / "run")])
    assert r.exit_code == 2 and "data.fold_column 'fold' names 1 fold: need 2 or more" in r.output, r.output
    assert "removed" not in r.output and not (tmp_path / "run").exists()
