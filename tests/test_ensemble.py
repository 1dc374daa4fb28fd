"""train.ensemble: N members of one recipe, saved as one model that averages probabilities."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_text import _text_data
from typer.testing import CliRunner

from attn.cli.app import app
from attn.errors import Interrupted
from attn.pipelines.recipe.load import load_recipe
from attn.pipelines.store.artifact import load_model
from attn.pipelines.store.container import read_container
from attn.pipelines.train.run import resume, train

runner = CliRunner()


def _weights(path):
    return read_container(path).tensors()["state_dict"]


def test_members_are_the_single_runs_and_the_model_averages_their_probabilities(tmp_path, tiny_recipe):
    p = tiny_recipe(epochs=2)
    # blend and temperature off: this is about the members and their average (a blend would add
    # the baseline, a temperature rescale the scores)
    off = ["train.blend=false", "train.calibrate=false"]
    ens_recipe = load_recipe(p, ["train.ensemble=2", *off])
    ens = train(ens_recipe, str(p), out=str(tmp_path / "ens"), device="cpu")
    single = train(load_recipe(p, ["train.seed=1", *off]), str(p), out=str(tmp_path / "seed1"), device="cpu")
    # Member 2 is exactly the run with seed + 1; the ensemble artifact holds both members.
    w2, ws = _weights(tmp_path / "ens" / "member-2" / "model.attn"), _weights(single.model_path)
    assert all(torch.equal(w2[k], ws[k]) for k in ws)
    we = _weights(ens.model_path)
    assert all(torch.equal(we[f"members.1.{k}"], ws[k]) for k in ws)
    assert not (tmp_path / "ens" / "member-1" / "last.ckpt").exists()  # finished members keep only model.attn

    model = load_model(ens.model_path).model
    members = [load_model(tmp_path / "ens" / f"member-{i}" / "model.attn").model for i in (1, 2)]
    x, lengths = torch.randn(3, 8000), torch.tensor([8000, 6000, 3000])
    with torch.no_grad():
        got = model(x, lengths).softmax(-1)
        want = torch.stack([m(x, lengths).softmax(-1) for m in members]).mean(0)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)

    metrics = json.loads((tmp_path / "ens" / "metrics.json").read_text())
    assert [m["seed"] for m in metrics["members"]] == [0, 1] and metrics["split"] == "test"
    assert metrics["members"][1]["test_accuracy"] == single.metrics["accuracy"]
    history = [json.loads(x) for x in (tmp_path / "ens" / "history.jsonl").read_text().splitlines()]
    assert [(h["member"], h["epoch"]) for h in history] == [(1, 1), (1, 2), (2, 1), (2, 2)]


class _StopAt:
    """Simulates Ctrl-C at the start of the n-th epoch the run begins (counted across members)."""

    def __init__(self, n):
        self.n, self.seen = n, 0

    def on_epoch_begin(self, epoch, epochs, steps):
        self.seen += 1
        if self.seen == self.n:
            raise KeyboardInterrupt

    def on_step(self, step, loss): ...
    def on_epoch_end(self, record): ...


def test_an_interrupted_ensemble_resumes_to_the_same_model(tmp_path, tiny_recipe):
    p = tiny_recipe(epochs=2)
    r = load_recipe(p, ["train.ensemble=2", "model.dropout=0.3"])
    full = train(r, str(p), out=str(tmp_path / "full"), device="cpu")
    with pytest.raises(Interrupted, match=f"member 2 of 2.*attn train --resume {tmp_path / 'cut'}"):
        train(r, str(p), out=str(tmp_path / "cut"), device="cpu", callbacks=_StopAt(4))  # member 2, epoch 2
    before = torch.get_num_threads()
    try:  # a resume on another thread count: it takes the run's own back (a member's checkpoint says it)
        torch.set_num_threads(before + 1)
        resumed = resume(str(tmp_path / "cut"), device="cpu")
        assert torch.get_num_threads() == before
    finally:
        torch.set_num_threads(before)
    wf, wr = _weights(full.model_path), _weights(resumed.model_path)
    assert set(wf) == set(wr) and all(torch.equal(wf[k], wr[k]) for k in wf)
    assert resumed.metrics["accuracy"] == full.metrics["accuracy"]


def test_text_ensemble_through_the_cli(tmp_path, monkeypatch):
    import attn.pipelines.store.artifact as artifact

    p = _text_data(tmp_path)
    run = tmp_path / "run"
    loads = []
    real = artifact.load_model
    monkeypatch.setattr(artifact, "load_model", lambda path, *a, **k: loads.append(Path(path)) or real(path, *a, **k))
    r = runner.invoke(app, ["train", str(p), "--set", "train.ensemble=2", "-o", str(run), "-q", "-f", "json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert len(summary["members"]) == 2 and summary["test_accuracy"] >= 0.75
    # each member's file is read once, to assemble the ensemble: member 1 hands its tokenizer on in memory
    assert sorted(loads) == [run / "member-1" / "model.attn", run / "member-2" / "model.attn"]
    # one tokenizer for all members and the ensemble: the second reused the first's vocabulary
    t1, t2, te = (load_model(m).tokenizer for m in (run / "member-1" / "model.attn", run / "member-2" / "model.attn",
                                                    run / "model.attn"))  # fmt: skip
    assert t1.state()[0] == t2.state()[0] == te.state()[0]
    r = runner.invoke(app, ["predict", "-m", str(run), "--text", "Who invented the hamster ?", "-f", "jsonl"])
    assert r.exit_code == 0 and json.loads(r.stdout)["label"] == "HUM"
    r = runner.invoke(app, ["info", str(run / "model.attn")])
    assert r.exit_code == 0 and "an ensemble of 2 averaged" in r.stdout


def test_a_text_ensemble_cut_in_its_first_member_resumes_with_the_same_tokenizer(tmp_path):
    p = _text_data(tmp_path, level="subword")
    r = load_recipe(p, ["train.ensemble=2", "train.epochs=3"])
    full = train(r, str(p), out=str(tmp_path / "full"), device="cpu")
    with pytest.raises(Interrupted, match="member 1 of 2"):
        train(r, str(p), out=str(tmp_path / "cut"), device="cpu", callbacks=_StopAt(3))
    resumed = resume(str(tmp_path / "cut"), device="cpu")
    wf, wr = _weights(full.model_path), _weights(resumed.model_path)
    assert set(wf) == set(wr) and all(torch.equal(wf[k], wr[k]) for k in wf)
    tf, tr = load_model(full.model_path).tokenizer, load_model(resumed.model_path).tokenizer
    assert tf.state()[0] == tr.state()[0] and tf.encode("Who owns the piano ?") == tr.encode("Who owns the piano ?")
