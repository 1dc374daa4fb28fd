"""train.refit: after validation chose the epoch count, train again on train + val for that many
epochs (the baseline too, at the C validation chose) and save that model."""

from __future__ import annotations

import json

import pytest

from attn.pipelines.recipe.load import load_recipe
from attn.pipelines.train.run import train


def _run(tiny_recipe, tmp_path, refit, epochs=3):
    p = tiny_recipe(epochs=epochs)
    r = load_recipe(p, [f"train.refit={refit}"])
    return train(r, str(p), out=str(tmp_path / f"run_{refit}"), device="cpu")


def test_refit_trains_on_train_and_val_for_the_chosen_epochs(tiny_recipe, tmp_path):
    import torch

    from attn.models.calibrated import untempered
    from attn.pipelines.store.artifact import load_model

    plain = _run(tiny_recipe, tmp_path, "false")
    res = _run(tiny_recipe, tmp_path, "true")
    facts = res.data["refit"]
    n = res.data["clips"]
    assert facts["epochs"] == res.best_epoch
    assert facts["examples"] == n["train"] + n["val"]
    assert res.metrics is not None and res.metrics["split"] == "test"
    # Same seed, same first phase: only the refit makes the saved weights differ.
    a = untempered(load_model(plain.model_path).model).state_dict()  # the blend inside the run's temperature
    b = untempered(load_model(res.model_path).model).state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("network."))
    info = json.loads((res.run_dir / "metrics.json").read_text())
    assert info["baseline"]["C"] == plain.metrics["baseline"]["C"]  # the baseline kept its chosen C
    # Its validation figure is the first phase's (val held out), not one on its own training data.
    assert info["baseline"]["val_accuracy"] == plain.metrics["baseline"]["val_accuracy"]
    log = (res.run_dir / "train.log").read_text().splitlines()
    after = log[next(i for i, line in enumerate(log) if "refit:" in line) :]
    assert any("baseline" in line and "test accuracy" in line and "val accuracy" not in line for line in after)
    from typer.testing import CliRunner

    from attn.cli.app import app

    shown = CliRunner().invoke(app, ["info", str(res.run_dir)]).output  # it hid what the saved model trained on
    assert f"refit        trained again on train + val ({facts['examples']} examples) for {facts['epochs']}" in shown
    from attn.cli.train import _refit_time  # the summary's time line left out the refit's seconds

    assert _refit_time(res.summary()) == f" + {facts['seconds']:.1f}s refit on train + val"


def test_refit_auto_follows_the_share_validation_holds_back(tiny_recipe, tmp_path):
    from attn.pipelines.data.prepared import load_datasets, prepare_data
    from attn.pipelines.train.model import should_refit

    p = tiny_recipe()
    for share, want in (("0.25", True), ("0.1", False)):
        r = load_recipe(p, ["train.refit=auto", f"data.val_fraction={share}", "data.synthetic.per_class=500"])
        data = load_datasets(r, prepare_data(r))
        assert should_refit(r, data)[0] is want, share
    small = load_recipe(p, ["train.refit=auto", "data.val_fraction=0.1"])  # 40 per class: a small set
    assert should_refit(small, load_datasets(small, prepare_data(small)))[0]


@pytest.mark.parametrize("value", ["maybe", "2"])
def test_refit_takes_true_false_or_auto(tiny_recipe, value):
    from attn.errors import ConfigError

    with pytest.raises(ConfigError, match="train.refit"):
        load_recipe(tiny_recipe(), [f"train.refit={value}"])


def test_ctrl_c_in_the_refit_says_how_to_finish_and_resume_does(tiny_recipe, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import attn.pipelines.train.model as train_model
    from attn.cli.app import app

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    real = train_model.refit_on_train_and_val
    monkeypatch.setattr(train_model, "refit_on_train_and_val", interrupt)
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", str(tiny_recipe(epochs=3)), "--set", "train.refit=true", "--out", str(out)])
    assert r.exit_code == 130
    assert "during the refit on train + val, after the first phase's 3 epochs" in r.output
    assert f"attn train --resume {out}" in r.output and not (out / "metrics.json").exists()
    monkeypatch.setattr(train_model, "refit_on_train_and_val", real)
    r = CliRunner().invoke(app, ["train", "--resume", str(out)])
    assert r.exit_code == 0, r.output
    assert "refit: " in r.output and (out / "metrics.json").exists()


def test_ctrl_c_after_the_last_epoch_says_how_to_finish_and_resume_does(tiny_recipe, tmp_path, monkeypatch):
    """A stop in the blend, calibration, final scores or the model file printed a bare
    'interrupted' (the resume that finishes the run was not said)."""
    from typer.testing import CliRunner

    import attn.pipelines.train.model as train_model
    from attn.cli.app import app

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    real = train_model.final_metrics
    monkeypatch.setattr(train_model, "final_metrics", interrupt)
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", str(tiny_recipe(epochs=2)), "--out", str(out)])
    assert r.exit_code == 130
    assert "interrupted while finishing the run after its 2 epochs" in r.output
    assert f"Finish with: attn train --resume {out}" in r.output
    # the epoch's network it left says what it is (it predicted without a word)
    info = CliRunner().invoke(app, ["info", str(out)])
    assert info.exit_code == 0 and "unfinished   the network of epoch" in info.output
    import logging

    import attn

    seen = []
    handler = logging.Handler()
    handler.emit = lambda rec: seen.append(rec.getMessage())
    logging.getLogger("attn").addHandler(handler)
    try:
        attn.load(out)
    finally:
        logging.getLogger("attn").removeHandler(handler)
    assert any("is an unfinished run's model (the network of epoch" in m for m in seen), seen
    monkeypatch.setattr(train_model, "final_metrics", real)
    r = CliRunner().invoke(app, ["train", "--resume", str(out)])
    assert r.exit_code == 0, r.output
    assert (out / "metrics.json").exists()
    assert "unfinished" not in CliRunner().invoke(app, ["info", str(out)]).output


def test_ctrl_c_while_the_report_is_written_says_how_to_finish(tiny_recipe, tmp_path, monkeypatch):
    """The last step (report.html) gave a bare 'terminated (SIGTERM)' and left last.ckpt."""
    from typer.testing import CliRunner

    import attn.pipelines.ship.report as report
    from attn.cli.app import app

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "write_report", interrupt)
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", str(tiny_recipe(epochs=2)), "--out", str(out)])
    assert r.exit_code == 130 and f"Finish with: attn train --resume {out}" in r.output
