"""Calibrated scores and `unknown` (issue 20, part 2): temperature scaling lowers ECE on an
over-confident model, ECE matches a reference computation, the min score turns low-scoring
answers into `unknown`, and neither T nor the min score is fitted on test."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from attn.cli.app import app
from attn.pipelines.infer import calibration as cal
from attn.pipelines.infer.inference import softmax


class Clips:
    """A WindowSet's shape for clip-level scoring: one window per clip."""

    def __init__(self, y: np.ndarray) -> None:
        self.labels = y
        self.all_windows = np.stack([np.arange(len(y)), np.zeros(len(y), dtype=np.int64)], 1)

    def __len__(self) -> int:
        return len(self.labels)


def overconfident(n: int, k: int = 4, sharpen: float = 6.0, seed: int = 0):
    """(logits, labels): labels drawn from softmax(z), logits sharpened to `sharpen` z, so the
    scores claim far more certainty than the accuracy they get (calibrated at T = sharpen)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, k))
    p = softmax(z)
    y = np.array([rng.choice(k, p=row) for row in p])
    return z * sharpen, y


def reference_ece(probs: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """ECE the textbook way: a loop over equal-width bins (lo, hi] of the top-1 score."""
    conf, pred = probs.max(1), probs.argmax(1)
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        m = [(lo < c <= hi) or (b == 0 and c == 0) for c in conf]
        m = np.array(m)
        if m.any():
            total += m.mean() * abs((pred[m] == y[m]).mean() - conf[m].mean())
    return total


def test_ece_matches_a_reference_computation():
    logits, y = overconfident(500, seed=1)
    probs = softmax(logits / 3.0)
    assert cal.ece(probs, y) == pytest.approx(reference_ece(probs, y), abs=1e-12)
    # A perfectly confident, always-right model has no calibration error; always wrong, error 1.
    onehot = np.eye(3)[[0, 1, 2, 1]]
    assert cal.ece(onehot, np.array([0, 1, 2, 1])) == 0.0
    assert cal.ece(onehot, np.array([1, 2, 0, 0])) == 1.0


def test_the_ece_of_a_perfectly_calibrated_model_is_far_from_zero_on_few_clips():
    """ece_if_calibrated: outcomes drawn from the scores themselves (a perfectly calibrated model):
    on 80 clips its ECE is several points; on 20 000 it shrinks toward 0; real draws land inside."""
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.6, 1.0, 20000)
    probs = np.c_[conf, 1 - conf]

    def observed(n: int, seed: int) -> float:
        right = np.random.default_rng(seed).random(n) < conf[:n]
        return cal.ece(probs[:n], np.where(right, 0, 1))

    small, large = cal.ece_if_calibrated(probs[:80]), cal.ece_if_calibrated(probs)
    assert small["clips"] == 80 and 0.03 < small["median"] < 0.15 and small["p5"] < small["median"] < small["p95"]
    assert large["median"] < 0.01 and large["median"] < small["p5"]
    inside = [small["p5"] <= observed(80, s) <= small["p95"] for s in range(200)]
    assert 0.8 <= np.mean(inside) <= 0.98  # a 90% range holds about 90% of real draws
    sure = np.tile([0.99, 0.01], (80, 1))  # says 0.99, right on 60 of 80: over-confident, not noise
    assert cal.ece(sure, np.r_[np.zeros(60, int), np.ones(20, int)]) > cal.ece_if_calibrated(sure)["p95"]


def test_temperature_scaling_lowers_ece_of_an_overconfident_model():
    val_logits, val_y = overconfident(600, seed=2)
    test_logits, test_y = overconfident(600, seed=3)  # fitted on val, judged on other data
    t = cal.fit_temperature(val_logits, Clips(val_y))
    assert 4.0 < t < 9.0  # the logits were sharpened 6x
    before = cal.ece(softmax(test_logits), test_y)
    after = cal.ece(softmax(test_logits / t), test_y)
    assert before > 0.15 and after < 0.06
    assert (softmax(test_logits / t).argmax(1) == test_logits.argmax(1)).all()  # labels unchanged


def test_no_temperature_is_fitted_when_every_validation_example_is_right(caplog):
    """An error-free validation split (small or easy sets) has no log-loss minimum: it falls as
    T -> 0, so a fit stops at T_RANGE's floor and scores every input ~1.0. T stays 1 and the log
    says why; with one misclassified example among them, T is fitted again."""
    import logging
    from types import SimpleNamespace

    logits, _ = overconfident(40, sharpen=1.0, seed=5)
    y = logits.argmax(1)
    recipe = SimpleNamespace(train=SimpleNamespace(calibrate=True, abstain=SimpleNamespace(target_precision=None)))
    assert cal.fit_temperature(logits, Clips(y)) < 1.01 * cal.T_RANGE[0]  # what fitting would do
    with caplog.at_level(logging.INFO, logger="attn"):
        facts = cal.calibrate_scores(logits, Clips(y), recipe)
    assert facts["temperature"] == 1.0 and "no temperature can be fitted" in caplog.text
    # and the model says so where it said "Temperature 1.000 fitted on validation" (report, attn info)
    assert facts["not_fitted"] == "every validation example is classified right, so none can be fitted"
    from attn.cli.info import scoring_lines

    assert scoring_lines({"calibration": facts})[0].startswith("calibrated   no temperature (T = 1): every validation")
    y[np.argmin(softmax(logits).max(1))] = (y[np.argmin(softmax(logits).max(1))] + 1) % 4  # the least sure one
    fitted = cal.calibrate_scores(logits, Clips(y), recipe)
    assert 1.01 * cal.T_RANGE[0] < fitted["temperature"] < 1.0 and "not_fitted" not in fitted, fitted


def test_min_score_reaches_the_target_precision_on_validation():
    logits, y = overconfident(800, sharpen=1.0, seed=4)
    probs = softmax(logits)
    s, facts = cal.choose_min_score(probs, y, 0.9)
    answered = probs.max(1) >= s
    assert (probs.argmax(1)[answered] == y[answered]).mean() >= 0.9
    assert facts["val_precision"] >= 0.9 and facts["val_coverage"] == pytest.approx(answered.mean())
    lower = probs.max(1)[probs.max(1) < s].max()  # the next lower score would miss the target
    more = probs.max(1) >= lower
    assert (probs.argmax(1)[more] == y[more]).mean() < 0.9


def test_abstain_answers_unknown_below_the_score_and_keeps_the_score():
    recs = [{"input": "a", "label": "dog", "score": 0.4}, {"input": "b", "label": "cat", "score": 0.9},
            {"input": "c", "error": "c: unreadable"}]  # fmt: skip
    out = list(cal.abstain(recs, 0.5))
    assert out[0] == {"input": "a", "label": "unknown", "score": 0.4, "best_label": "dog"}
    assert out[1] == recs[1] and out[2] == recs[2]
    assert list(cal.abstain(recs, None)) == recs


@pytest.fixture(scope="module")
def calibrated_run(tmp_path_factory):
    """A tiny audio run with a refit, abstention on, and a test split larger than validation;
    records the clips temperature scaling and the min score were fitted on."""
    from conftest import TINY_RECIPE

    from attn.pipelines.recipe.load import load_recipe
    from attn.pipelines.train.run import train

    seen = {"temperature": [], "min_score": []}
    fit_t, choose = cal.fit_temperature, cal.choose_min_score

    def spy_t(logits, ws):
        seen["temperature"].append(len(ws))
        return fit_t(logits, ws)

    def spy_s(probs, y, target):
        seen["min_score"].append(len(y))
        return choose(probs, y, target)

    d = tmp_path_factory.mktemp("calibrated")
    text = TINY_RECIPE.format(epochs=3).replace("test_fraction: 0.2", "test_fraction: 0.3")
    text = text.replace("seed: 0}", "seed: 0, refit: true, abstain: {target_precision: 0.9}}")
    (d / "r.yaml").write_text(text)
    mp = pytest.MonkeyPatch()
    mp.setattr(cal, "fit_temperature", spy_t)
    mp.setattr(cal, "choose_min_score", spy_s)
    try:
        result = train(load_recipe(d / "r.yaml"), str(d / "r.yaml"), out=str(d / "run"), device="cpu")
    finally:
        mp.undo()
    return result, seen


def test_nothing_is_fitted_on_test(calibrated_run):
    result, seen = calibrated_run
    n_val, n_test = result.data["clips"]["val"], result.metrics["count"]
    assert n_val != n_test
    assert seen == {"temperature": [n_val], "min_score": [n_val]}
    facts = json.loads((result.run_dir / "metrics.json").read_text())["calibration"]
    assert "before the refit" in facts["fitted_on"]  # validation joined training: the first phase's scores
    assert facts["ece_if_calibrated"]["clips"] == n_test  # the range a perfect model would show on test


def test_the_model_file_carries_temperature_and_min_score(calibrated_run):
    import attn

    result, _ = calibrated_run
    m = attn.load(result.model_path)
    stored = m.loaded.header["calibration"]
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert stored["temperature"] == metrics["calibration"]["temperature"]
    assert m.min_score == stored["min_score"] is not None
    ev = attn.evaluate(m)  # evaluate applies the same model: same ECE and coverage as training's test
    assert ev["calibration"]["ece"] == pytest.approx(metrics["calibration"]["ece"], abs=1e-6)
    assert ev["abstention"]["coverage"] == pytest.approx(metrics["abstention"]["coverage"])
    assert "Calibration" in (result.run_dir / "report.html").read_text()
    info = CliRunner().invoke(app, ["info", str(result.model_path)]).stdout  # the text view shows what json has
    assert f"temperature {stored['temperature']:.4f}" in info and f"min score    {m.min_score:.4f}" in info


def test_predict_min_score_answers_unknown(trained_model, tmp_path):
    from helpers import tone, write_wav

    wav = write_wav(tmp_path / "a.wav", tone(440, 0.5, 8000), 8000)
    runner = CliRunner()
    plain = runner.invoke(app, ["predict", str(wav), "-m", str(trained_model), "-f", "jsonl", "-q"])
    rec = json.loads(plain.stdout)
    assert plain.exit_code == 0 and rec["label"] != "unknown"
    above = runner.invoke(app, ["predict", str(wav), "-m", str(trained_model), "-f", "jsonl", "-q", "--min-score",
                                str(min(1.0, rec["score"] + 1e-6))])  # fmt: skip
    got = json.loads(above.stdout)
    assert got["label"] == "unknown" and got["score"] == rec["score"] and got["best_label"] == rec["label"]
    below = runner.invoke(app, ["predict", str(wav), "-m", str(trained_model), "-f", "csv", "-q", "--min-score",
                                str(max(0.0, rec["score"] - 1e-3))])  # fmt: skip
    assert f",{rec['label']}," in below.stdout


@pytest.mark.parametrize("bad", ["-0.1", "1.5"])
def test_min_score_outside_0_1_is_a_clear_error(trained_model, bad):
    from helpers import one_line_error

    r = CliRunner().invoke(app, ["predict", "x.wav", "-m", str(trained_model), "--min-score", bad])
    one_line_error(r, 2, "--min-score", "between 0 and 1")


def test_onnx_export_carries_the_temperature_and_min_score(calibrated_run, tmp_path):
    pytest.importorskip("onnxruntime")
    import attn
    from helpers import tone, write_wav

    result, _ = calibrated_run
    m = attn.load(result.model_path)
    assert m.loaded.model.temperature != 1.0  # else this test could not tell
    onnx = attn.load(m.export(tmp_path / "m.onnx").path)
    wavs = [write_wav(tmp_path / f"{f}.wav", tone(f, 0.5, 8000, seed=i), 8000) for i, f in enumerate((300, 900, 2000))]
    ours, theirs = m.predict(wavs), onnx.predict(wavs)
    assert onnx.min_score == m.min_score
    for a, b in zip(ours, theirs, strict=True):
        assert a["label"] == b["label"] and a["score"] == pytest.approx(b["score"], abs=1e-5)


def test_the_stored_min_score_answers_the_last_clip_validation_answered():
    """S was the last answered clip's score itself, stored rounded to 6 decimals: rounded up (about
    half the runs), that clip was abstained on by evaluate, so validation's figures and evaluate's
    disagreed by one clip."""
    probs = np.array([[0.56187177, 0.43812823], [0.9, 0.1], [0.30, 0.70], [0.52, 0.48]])
    y = np.array([0, 0, 1, 1])
    s, facts = cal.choose_min_score(probs, y, 0.9)
    stored = round(s, 6)
    assert 0.52 < stored <= 0.56187177 and facts["val_coverage"] == 0.75
    assert (probs.max(1) >= stored).sum() == 3 and (np.round(probs.max(1), 6) >= stored).sum() == 3


def test_info_gives_the_median_of_an_even_number_of_thresholds():
    """It took the upper middle value (0.1024 where the median of 28 thresholds was 0.0946)."""
    from attn.cli.info import scoring_lines

    assert "median 0.2500," in scoring_lines({"thresholds": [0.1, 0.2, 0.3, 0.4]})[0]
