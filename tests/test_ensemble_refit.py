"""train.ensemble with train.refit: validation judges the members' ensemble while it is still
held out (blend weight, temperature, min score), then each member trains again on train + val
for its own best epoch count, and the saved ensemble averages the refitted members."""

from __future__ import annotations

import json

import pytest
import torch
from test_ensemble import _StopAt, _weights

from attn.errors import Interrupted
from attn.pipelines.recipe.load import load_recipe
from attn.pipelines.store.artifact import load_model
from attn.pipelines.train.run import resume, train

ABSTAIN = "train.abstain.target_precision=0.9"


def test_members_are_refitted_after_validation_chose_for_their_ensemble(tmp_path, tiny_recipe):
    p = tiny_recipe(epochs=3)
    refit = train(load_recipe(p, ["train.ensemble=2", "train.refit=true", ABSTAIN]), str(p),
                  out=str(tmp_path / "refit"), device="cpu")  # fmt: skip
    plain = train(load_recipe(p, ["train.ensemble=2", "train.refit=false", ABSTAIN]), str(p),
                  out=str(tmp_path / "plain"), device="cpu")  # fmt: skip
    # Member 2 is the single refit run of seed 1: the same first phase, the same refit.
    single = train(load_recipe(p, ["train.seed=1", "train.refit=true"]), str(p), out=str(tmp_path / "s1"),
                   device="cpu")  # fmt: skip
    w2, ws = _weights(tmp_path / "refit" / "member-2" / "model.attn"), _weights(single.model_path)
    ws = {k.removeprefix("network."): v for k, v in ws.items() if not k.startswith("baseline.")}
    assert set(w2) == set(ws) and all(torch.equal(w2[k], ws[k]) for k in ws)
    # ... and not the first phase the ensemble without a refit saved.
    w1 = _weights(tmp_path / "plain" / "member-2" / "model.attn")
    assert any(not torch.equal(w1[k], w2[k]) for k in w1)

    # What validation chose is what the same members chose without a refit: it was held out.
    state = json.loads((tmp_path / "refit" / "members.json").read_text())
    assert state["refitted"] == 2 and [m["refit"]["epochs"] for m in state["members"]] == [
        m["best_epoch"] for m in state["members"]
    ]
    n = refit.data["clips"]
    assert all(m["refit"]["examples"] == n["train"] + n["val"] for m in state["members"])
    got, want = load_model(refit.model_path).model, load_model(plain.model_path).model
    assert got.temperature == pytest.approx(want.temperature)
    assert got.calibration["min_score"] == pytest.approx(want.calibration["min_score"])
    assert got.calibration["fitted_on"].startswith("validation, first phase")
    assert got.inner.weight == want.inner.weight  # the blend weight
    metrics = json.loads((tmp_path / "refit" / "metrics.json").read_text())
    assert metrics["val_accuracy"] == plain.metrics["val_accuracy"]
    assert metrics["baseline"]["C"] == plain.metrics["baseline"]["C"]
    page = (tmp_path / "refit" / "report.html").read_text(encoding="utf-8")
    epochs = " / ".join(str(m["best_epoch"]) for m in state["members"])
    assert f"each member trained again on train + val ({n['train'] + n['val']} examples) for {epochs} epochs" in page

    # Each member's test figures are the refitted model's (they were its first phase's)
    import attn

    for i, m in enumerate(state["members"], 1):
        mine = attn.evaluate(attn.load(tmp_path / "refit" / f"member-{i}"))["accuracy"]
        assert m["test_accuracy"] == pytest.approx(mine) and "first_phase_test_accuracy" in m
        assert (
            json.loads((tmp_path / "refit" / f"member-{i}" / "metrics.json").read_text())["accuracy"]
            == m["test_accuracy"]
        )
    assert [m["test_accuracy"] for m in refit.members] == [m["test_accuracy"] for m in state["members"]]

    # The saved ensemble averages the refitted members (the blend and T on top).
    members = [load_model(tmp_path / "refit" / f"member-{i}" / "model.attn").model for i in (1, 2)]
    x, lengths = torch.randn(3, 4000), torch.tensor([4000, 3000, 2000])
    with torch.no_grad():
        inner = got.inner.network(x, lengths).softmax(-1)
        avg = torch.stack([m(x, lengths).softmax(-1) for m in members]).mean(0)
    torch.testing.assert_close(inner, avg, rtol=1e-5, atol=1e-6)


def test_an_ensemble_cut_in_its_refit_resumes_to_the_same_model(tmp_path, tiny_recipe):
    p = tiny_recipe(epochs=2)
    r = load_recipe(p, ["train.ensemble=2", "train.refit=true"])
    full = train(r, str(p), out=str(tmp_path / "full"), device="cpu")
    # epochs begun: member 1 (2), member 2 (2), member 1's refit (2), then member 2's refit
    with pytest.raises(Interrupted, match=f"refit of ensemble member 2 of 2.*attn train --resume {tmp_path / 'cut'}"):
        train(r, str(p), out=str(tmp_path / "cut"), device="cpu", callbacks=_StopAt(7))
    assert json.loads((tmp_path / "cut" / "members.json").read_text())["refitted"] == 1
    resumed = resume(str(tmp_path / "cut"), device="cpu")
    wf, wr = _weights(full.model_path), _weights(resumed.model_path)
    assert set(wf) == set(wr) and all(torch.equal(wf[k], wr[k]) for k in wf)
    assert resumed.metrics["accuracy"] == full.metrics["accuracy"]
