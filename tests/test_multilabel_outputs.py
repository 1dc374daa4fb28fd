"""A multi-label audio model through the outputs built for single-label ones: --aggregate,
sound events in a long recording (predict, evaluate), and `attn evaluate`'s baseline scored at
the thresholds metrics.json used."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_multilabel import TONES, _mix, _train, audio_recipe
from typer.testing import CliRunner

from attn.cli.app import app
from helpers import write_wav

runner = CliRunner()


@pytest.fixture(scope="module")
def tagged(tmp_path_factory):
    d = tmp_path_factory.mktemp("tagged")
    res = _train(audio_recipe(d, epochs=2), d / "run")
    rng = np.random.default_rng(7)
    quiet = 0.01 * rng.standard_normal(8000).astype(np.float32)
    long = np.concatenate([quiet, _mix(["low"], rng), _mix(["low"], rng), quiet, _mix(["mid"], rng), quiet])
    return res, write_wav(d / "long.wav", long, 8000)


def _jsonl(*args) -> list[dict]:
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return [json.loads(x) for x in r.stdout.splitlines()]


def test_aggregate_max_takes_each_labels_best_window_and_vote_is_refused(tagged):
    res, long = tagged
    frames = _jsonl("predict", "-m", res.model_path, long, "--per-frame", "--format", "jsonl")[0]["frames"]
    # (W, K) sigmoids of the windows that count (a recording's quiet ones are marked and do not)
    per_frame = np.array([[f["scores"][lab] for lab in TONES] for f in frames if not f.get("quiet")])
    assert 0 < len(per_frame) < len(frames)
    for how, want in (("mean", per_frame.mean(0)), ("max", per_frame.max(0))):
        rec = _jsonl("predict", "-m", res.model_path, long, "--aggregate", how, "--format", "jsonl")[0]
        assert np.allclose([rec["scores"][lab] for lab in TONES], want, atol=2e-6), how
    r = runner.invoke(app, ["predict", "-m", str(res.model_path), str(long), "--aggregate", "vote"])
    assert r.exit_code == 2 and "a multi-label model's clip scores are its windows' mean or max" in r.output


def test_events_in_a_long_recording_from_a_multi_label_model(tagged, tmp_path):
    """Was an internal error (KeyError 'levels_db') in predict, evaluate and tune-events."""
    res, long = tagged
    events = _jsonl("predict", "-m", res.model_path, "--events", long, "--format", "jsonl")
    assert all(set(e) >= {"input", "label", "start", "end", "score"} and e["label"] in TONES for e in events)
    pytest.importorskip("sed_eval", reason="scoring events needs the events extra")  # README's .[dev] lacks it
    (tmp_path / "ann.csv").write_text(f"file,onset,offset,label\n{long},1.0,2.0,low\n{long},3.0,3.5,mid\n")
    r = runner.invoke(app, ["evaluate", "-m", str(res.model_path), "--events", str(tmp_path / "ann.csv"), "-f", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["reference_events"] == 2


def test_evaluate_scores_the_baseline_at_its_stored_thresholds(tagged):
    res, _ = tagged
    stored = json.loads((res.run_dir / "metrics.json").read_text())["baseline"]
    r = runner.invoke(app, ["evaluate", "-m", str(res.model_path), "-f", "json"])
    assert r.exit_code == 0, r.output
    again = json.loads(r.stdout)["baseline"]
    assert len(stored["thresholds"]) == len(TONES)
    assert again["macro_f1"] == pytest.approx(stored["macro_f1"], abs=1e-6)


@pytest.mark.parametrize("cmd", ["predict", "evaluate", "listen"])
def test_single_label_options_on_a_multi_label_model_are_refused(tagged, cmd):
    """--min-score was silently ignored (attn serve already answered 422); --threshold on a
    single-label model is refused the same way."""
    res, long = tagged
    args = {"predict": [str(long)], "evaluate": [], "listen": [str(long)]}[cmd]
    r = runner.invoke(app, [cmd, "-m", str(res.model_path), *args, "--min-score", "0.9"])
    assert r.exit_code == 2 and "are for single-label models; this model is multi-label (use --threshold)" in r.output


@pytest.mark.parametrize("cmd", ["predict", "listen"])
def test_top_k_on_a_multi_label_model_is_refused(tagged, cmd):
    """It was accepted and ignored: the record holds every class's score, not k of them."""
    res, long = tagged
    r = runner.invoke(app, [cmd, "-m", str(res.model_path), str(long), "--top-k", "2"])
    assert r.exit_code == 2 and "--top-k is for single-label models; this model is multi-label" in r.output
    r = runner.invoke(app, [cmd, "-m", str(res.model_path), str(long), "--top-k", "1"])
    assert r.exit_code == 0, r.output


def test_evaluate_takes_a_threshold_as_predict_does(tagged):
    """predict --threshold had no counterpart in evaluate: a multi-label model could not be scored
    at another threshold without recounting by hand."""
    res, _ = tagged
    got = {}
    for t in ("0.05", "0.95"):
        r = runner.invoke(app, ["evaluate", "-m", str(res.model_path), "--threshold", t, "-f", "json"])
        assert r.exit_code == 0, r.output
        got[t] = json.loads(r.stdout)
    # every label above 0.05 is many labels an example; above 0.95, few
    assert got["0.05"]["predicted_cardinality"] > got["0.95"]["predicted_cardinality"]
    assert got["0.05"]["macro_map"] == pytest.approx(got["0.95"]["macro_map"])  # the ranking is the same
    r = runner.invoke(app, ["evaluate", "-m", str(res.model_path), "--threshold", "1.5"])
    assert r.exit_code == 2


def test_evaluate_aggregates_as_predict_does_and_ignores_labels_it_never_learned(tagged, tmp_path):
    """evaluate scored every multi-label clip by its windows' mean whatever --aggregate said (and
    took vote); a label the model never learned ended it with an error where training warns."""
    from sklearn.metrics import f1_score

    res, long = tagged
    rng = np.random.default_rng(3)
    rows = [(long, "low|mid|thunder")]
    for i, present in enumerate((["low"], ["mid", "low"], ["high wide, odd;"], ["mid"])):
        quiet = 0.01 * rng.standard_normal(4000).astype(np.float32)
        rows.append((write_wav(tmp_path / f"{i}.wav", np.concatenate([_mix(present, rng), quiet]), 8000),
                     "|".join(present)))  # fmt: skip
    m = tmp_path / "m.jsonl"
    m.write_text("".join(json.dumps({"path": str(p), "labels": lab.split("|")}) + "\n" for p, lab in rows))
    for how in ("mean", "max"):
        r = runner.invoke(app, ["evaluate", "-m", str(res.model_path), str(m), "--aggregate", how, "-f", "json"])
        assert r.exit_code == 0, r.output
        assert "label(s) 'thunder' are not ones the model was trained on: ignored in 1 example(s)" in r.output
        got = json.loads(r.stdout)
        recs = _jsonl("predict", "-m", res.model_path, *[p for p, _ in rows], "--aggregate", how, "-f", "jsonl")
        pred = np.array([[lab in rec["labels"] for lab in TONES] for rec in recs])
        true = np.array([[lab in labs.split("|") for lab in TONES] for _, labs in rows])
        assert got["micro_f1"] == pytest.approx(f1_score(true, pred, average="micro", zero_division=0), abs=1e-6), how
    r = runner.invoke(app, ["evaluate", "-m", str(res.model_path), str(m), "--aggregate", "vote"])
    assert r.exit_code == 2 and "a multi-label model's clip scores are its windows' mean or max" in r.output


def test_embed_a_multi_label_model(tagged, tmp_path):
    """Was 'internal error: AttributeError: _Vectors object has no attribute header'."""
    res, long = tagged
    r = runner.invoke(app, ["embed", "-m", str(res.model_path), str(long), "--out", str(tmp_path / "e.npy")])
    assert r.exit_code == 0, r.output
    assert np.isfinite(np.load(tmp_path / "e.npy")).all()


def test_a_threshold_of_another_type_from_python_is_a_config_error(tagged):
    """'0.3' raised a raw TypeError and True was taken as 1.0 (no label ever)."""
    import attn
    from attn.errors import ConfigError

    res, long = tagged
    m = attn.load(res.model_path)
    for bad in ("0.3", True):
        with pytest.raises(ConfigError, match=r"threshold .*: give a number within \[0, 1\]"):
            m.predict([str(long)], threshold=bad)
    assert m.predict([str(long)], threshold=0)[0]["labels"]  # every class at threshold 0
    assert m.predict([str(long)], threshold=np.float32(0.3)) == m.predict([str(long)], threshold=0.3)  # numpy too


def test_info_names_a_multi_label_models_own_figures(tagged):
    """It said 'test accuracy 0.2430, macro-F1 ...': the accuracy was exact-set match, and micro-F1
    and mAP were left out."""
    res, _ = tagged
    r = runner.invoke(app, ["info", str(res.model_path)])
    line = next(x for x in r.stdout.splitlines() if x.startswith("test "))
    assert "micro-F1" in line and "macro mAP" in line and "exact-set match" in line and "accuracy" not in line
