"""train.folds_final: the model cross-validation saves (a refit on all folds, or the fold models'
ensemble), and the temperature and min score fitted on the out-of-fold scores for either."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from attn.cli.app import app
from attn.pipelines.data.prepared import prepare_data
from attn.pipelines.infer import calibration as cal
from attn.pipelines.infer.calibration import ClipScores
from attn.pipelines.recipe.load import load_recipe
from attn.pipelines.store.artifact import load_model
from attn.pipelines.train import folds as folds_mod
from attn.pipelines.train.run import train

runner = CliRunner()


def test_the_fold_ensemble_predicts_the_mean_of_its_fold_models(tiny_recipe, tmp_path):
    p = tiny_recipe(epochs=2)
    # blend and temperature off: this is about the members and their average
    sets = ["train.folds=3", "train.folds_final=ensemble", "train.blend=false", "train.calibrate=false"]
    result = train(load_recipe(p, sets), str(p), out=str(tmp_path / "run"), device="cpu")
    model = load_model(result.model_path).model
    members = [load_model(tmp_path / "run" / f"fold-{i}" / "model.attn").model for i in (1, 2, 3)]
    x, lengths = torch.randn(3, 4000), torch.tensor([4000, 3000, 2000])
    with torch.no_grad():
        got = model(x, lengths).softmax(-1)
        want = torch.stack([m(x, lengths).softmax(-1) for m in members]).mean(0)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    # each fold model differs from the others: the mean is of three models, not one copied
    assert not torch.allclose(members[0](x, lengths), members[1](x, lengths))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [m["fold"] for m in metrics["members"]] == ["1", "2", "3"]
    assert len(metrics["cv"]["folds"]) == 3 and metrics["split"] == "test"
    page = (tmp_path / "run" / "report.html").read_text()
    assert "Ensemble members" in page
    # the report said "the saved model trained on every fold" and "best epoch 2 of 6" (epochs of all folds)
    assert "the saved model averages the fold models" in page and "<th>best epoch</th><td>" not in page
    # the learning curves: a line per fold (they were one line, fold after fold)
    from attn.pipelines.infer import plots

    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    names = plots.curves_figure(history).axes[0].get_legend_handles_labels()[1]
    assert {f"validation (fold {i})" for i in (1, 2, 3)} <= set(names), names


@pytest.mark.parametrize("final", ["refit", "ensemble"])
def test_temperature_and_min_score_are_fitted_on_out_of_fold_scores(tiny_recipe, tmp_path, monkeypatch, final):
    p = tiny_recipe(epochs=2)
    recipe = load_recipe(p, ["train.folds=3", f"train.folds_final={final}", "train.abstain.target_precision=0.9"])
    splits = prepare_data(recipe).splits
    test = {it.source for it in splits["test"]}
    pool = [it.source for it in splits["train"] + splits["val"]]
    trained_on, fitted, chosen = {}, [], []  # fold run name -> its training clips; what T and S saw
    real_train, real_fit, real_choose = folds_mod.train_model, cal.fit_temperature, cal.choose_min_score

    def spy_train(rec, prepared, run_dir, **kw):
        trained_on[run_dir.name] = {it.source for it in prepared.splits["train"]}
        return real_train(rec, prepared, run_dir, **kw)

    def spy_fit(logits, ws):
        fitted.append(ws)
        return real_fit(logits, ws)

    def spy_choose(probs, y, target):
        chosen.append(len(y))
        return real_choose(probs, y, target)

    monkeypatch.setattr(folds_mod, "train_model", spy_train)
    monkeypatch.setattr(cal, "fit_temperature", spy_fit)
    monkeypatch.setattr(cal, "choose_min_score", spy_choose)
    result = train(recipe, str(p), out=str(tmp_path / "run"), device="cpu")

    oof = [ws for ws in fitted if isinstance(ws, ClipScores)]
    assert len(oof) == 1, "the saved model's T: fitted once, on the out-of-fold scores"
    oof = oof[0]
    assert sorted(oof.sources) == sorted(pool)  # every non-test clip once, no test clip
    assert not set(oof.sources) & test
    for source, fold in zip(oof.sources, oof.scored_by, strict=True):
        assert source not in trained_on[fold], f"{source} scored by {fold}, which trained on it"
    # the folds' own temperatures saw their held-out folds only (never test, never the whole pool)
    assert all(len(ws) < len(pool) for ws in fitted if not isinstance(ws, ClipScores))
    assert len(pool) in chosen and len(test) not in chosen
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    facts = metrics["calibration"]
    assert facts["fitted_on"].startswith(f"out-of-fold: each of the {len(pool)} non-test examples")
    stored = load_model(result.model_path).header["calibration"]
    assert stored["temperature"] == facts["temperature"] and stored["min_score"] == facts["min_score"]
    assert metrics["abstention"]["min_score"] == pytest.approx(facts["min_score"], abs=1e-6)


def test_folds_final_is_refit_or_ensemble(tiny_recipe):
    r = runner.invoke(app, ["train", str(tiny_recipe()), "--folds", "2", "--set", "train.folds_final=bagging"])
    assert r.exit_code == 2 and "train.folds_final" in r.output


def test_clip_scores_concatenate_with_shifted_clip_indices():
    import numpy as np

    a = ClipScores(np.zeros((3, 2)), np.array([0, 0, 1]), np.array([0, 1]), ("a", "b"), ("1", "1"))
    b = ClipScores(np.ones((2, 2)), np.array([0, 0]), np.array([1]), ("c",), ("2",))
    both = ClipScores.concat([a, b])
    assert both.clip.tolist() == [0, 0, 1, 2, 2] and both.sources == ("a", "b", "c") and len(both) == 3
    # the clip scores are the mean of each clip's windows, per part
    probs = cal.clip_probs(both.logits, both)
    assert probs.shape == (3, 2) and np.allclose(probs, 0.5)


def test_a_text_fold_ensemble_shares_one_tokenizer_and_predicts_through_the_cli(tmp_path):
    from test_text import _text_data

    p, run = _text_data(tmp_path), tmp_path / "run"
    sets = ["--folds", "2", "--set", "train.folds_final=ensemble"]
    r = runner.invoke(app, ["train", str(p), *sets, "-o", str(run), "-q", "-f", "json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert [m["fold"] for m in summary["members"]] == ["1", "2"] and summary["test_accuracy"] >= 0.75
    # one vocabulary for both fold models, so one token id means one token in each
    t1, t2 = (load_model(run / f"fold-{i}" / "model.attn").tokenizer for i in (1, 2))
    assert t1.state()[0] == t2.state()[0] == load_model(run / "model.attn").tokenizer.state()[0]
    r = runner.invoke(app, ["predict", "-m", str(run), "--text", "Who invented the hamster ?", "-f", "jsonl"])
    assert r.exit_code == 0 and json.loads(r.stdout)["label"] == "HUM"
