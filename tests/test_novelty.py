"""`unknown` for inputs unlike the training data (issue 20, train.abstain.novelty): the
similarity to the k-th nearest training clip, its threshold chosen on validation (never on
test), stored in the model file and applied by predict and evaluate."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from attn.cli.app import app
from attn.models.novelty import Novelty, kth_similarity, unit_rows
from attn.pipelines.infer import novelty as nov


def brute_kth(v: np.ndarray, bank: np.ndarray, k: int, loo: bool = False) -> np.ndarray:
    out = []
    for i, row in enumerate(unit_rows(v)):
        s = [float(row @ b) for j, b in enumerate(bank) if not (loo and i == j)]
        out.append(sorted(s, reverse=True)[k - 1])
    return np.array(out)


@pytest.mark.parametrize("k", [1, 3])
def test_kth_similarity_matches_a_loop_and_leave_one_out_skips_itself(k):
    rng = np.random.default_rng(0)
    bank = unit_rows(rng.normal(size=(40, 6)))
    v = rng.normal(size=(7, 6)) * 5.0  # any length: cosine
    assert kth_similarity(v, bank, k) == pytest.approx(brute_kth(v, bank, k), abs=1e-5)
    loo = kth_similarity(bank, bank, k, leave_one_out=True)
    assert loo == pytest.approx(brute_kth(bank, bank, k, loo=True), abs=1e-5)
    assert (loo < 1.0 - 1e-6).all()  # no row found itself


def test_novelty_flags_vectors_far_from_every_training_vector():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 16))
    train = np.concatenate([c + 0.1 * rng.normal(size=(30, 16)) for c in centres])
    near = centres[rng.integers(0, 3, 20)] + 0.1 * rng.normal(size=(20, 16))
    far = rng.normal(size=(20, 16))  # other directions altogether
    check = Novelty(train, 0.9, 1)
    assert (check.similarity(near) >= 0.9).all() and (check.similarity(far) < 0.9).mean() >= 0.9
    # the bank survives the model file's float16 round trip
    again = Novelty.from_state({"min_similarity": 0.9, "neighbors": 1}, check.tensors())
    assert again.similarity(far) == pytest.approx(check.similarity(far), abs=2e-3)


@pytest.fixture(scope="module")
def novelty_run(tmp_path_factory):
    """A tiny audio run (no refit) with train.abstain.novelty; records the clips each embedding
    pass saw, in order."""
    from conftest import TINY_RECIPE

    from attn.pipelines.recipe.load import load_recipe
    from attn.pipelines.train.run import train

    seen = []
    embed = nov.clip_embeddings

    def spy(model, ws, device, batch_size=64):
        seen.append(len(ws))
        return embed(model, ws, device, batch_size)

    d = tmp_path_factory.mktemp("novelty")
    text = TINY_RECIPE.format(epochs=6).replace("test_fraction: 0.2", "test_fraction: 0.3")
    text = text.replace("seed: 0}", "seed: 0, refit: false, abstain: {novelty: 0.9}}")
    (d / "r.yaml").write_text(text)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(nov, "clip_embeddings", spy)
        result = train(load_recipe(d / "r.yaml"), str(d / "r.yaml"), out=str(d / "run"), device="cpu")
    return result, seen


def test_threshold_is_chosen_on_validation_and_test_is_only_measured(novelty_run):
    result, seen = novelty_run
    clips = result.data["clips"]
    assert clips["val"] != clips["test"]
    assert seen == [clips["train"], clips["val"], clips["test"]]  # bank, threshold, then metrics.json
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    info = metrics["abstention"]["novelty"]
    import attn

    m = attn.load(result.model_path)
    stored = m.loaded.header["novelty"]
    assert stored["fitted_on"] == "validation" and stored["bank"] == clips["train"]
    assert stored["kept"] >= 0.9  # at least the share asked for of validation
    assert m.min_similarity == stored["min_similarity"] == info["min_similarity"]
    ev = attn.evaluate(m)  # evaluate applies the stored check: the same coverage as training's test
    assert ev["abstention"]["novelty"]["kept"] == pytest.approx(info["kept"])


def test_predict_answers_unknown_for_inputs_unlike_the_training_data(novelty_run, tmp_path):
    import attn
    from attn.pipelines.data.synthetic import generate_clip
    from helpers import write_wav

    result, _ = novelty_run
    m = attn.load(result.model_path)
    rng = np.random.default_rng(7)  # fresh clips of the trained kinds
    known = m.predict([(generate_clip(k, rng, 0.5, 8000), 8000) for k in ("sine", "noise_burst", "chirp") * 10])
    assert np.mean([r["label"] != "unknown" for r in known]) >= 0.7
    odd = {"silence": np.zeros(4000, np.float32), "click": np.r_[np.ones(10), np.zeros(3990)].astype(np.float32)}
    for name, x in odd.items():
        rec = m.predict((x, 8000))[0]
        assert rec["label"] == "unknown" and rec["novel"] is True, name
        assert rec["similarity"] < m.min_similarity and rec["best_label"] in m.labels
    sims_known = np.mean([r["similarity"] for r in known])
    assert sims_known > max(m.predict((x, 8000))[0]["similarity"] for x in odd.values())
    # the command line: the stored check by default, --min-similarity -1 turns it off
    wav = write_wav(tmp_path / "silence.wav", odd["silence"], 8000)
    runner, model = CliRunner(), str(result.model_path)
    got = json.loads(runner.invoke(app, ["predict", str(wav), "-m", model, "-f", "jsonl", "-q"]).stdout)
    assert got["label"] == "unknown" and got["novel"] is True
    off = runner.invoke(app, ["predict", str(wav), "-m", model, "-f", "jsonl", "-q", "--min-similarity", "-1"])
    assert json.loads(off.stdout)["label"] in m.labels
    # CSV carries the similarity, the best label and why; the table says it too
    import csv
    import io

    row = next(csv.DictReader(io.StringIO(runner.invoke(app, ["predict", str(wav), "-m", model, "-f", "csv",
                                                               "-q"]).stdout)))  # fmt: skip
    assert row["label"] == "unknown" and row["best_label"] in m.labels and row["novel"] == "True"
    assert float(row["similarity"]) == pytest.approx(got["similarity"], abs=1e-6)
    table = runner.invoke(app, ["predict", str(wav), "-m", model, "-f", "table", "-q"], env={"COLUMNS": "200"}).stdout
    assert "unknown" in table and "unlike the training data" in table and f"best: {got['best_label']}" in table


def test_listen_flags_windows_unlike_the_training_data(novelty_run, tmp_path):
    import attn
    from attn.pipelines.data.synthetic import generate_clip
    from helpers import write_wav

    result, _ = novelty_run
    m = attn.load(result.model_path)
    rng = np.random.default_rng(3)
    known = generate_clip("sine", rng, 0.5, 8000)
    wav = write_wav(tmp_path / "sine_then_silence.wav", np.r_[known, np.zeros(4000, np.float32)], 8000)
    windows = list(m.listen(str(wav), min_score=0.0))
    assert all("similarity" in w for w in windows)
    first, last = windows[0], windows[-1]  # 0-0.5 s: the sine; the last: silence only
    assert first["similarity"] == pytest.approx(m.predict((known, 8000))[0]["similarity"], abs=1e-5)
    assert last["label"] == "unknown" and last["novel"] is True and last["best_label"] in m.labels
    off = list(m.listen(str(wav), min_score=0.0, min_similarity=-1.0))
    assert all(w["label"] in m.labels for w in off)


def test_how_long_a_recording_stays_silent_after_a_sound_does_not_change_its_similarity(novelty_run):
    """predict labels a recording by its heard windows (quiet ones do not vote), but its novelty
    check compared the mean of all its windows: the longer the silence after a known sound, the
    more its vector looked like silence's, until it was answered `unknown` for that alone. The
    check, the bank and `attn embed` now average the windows predict's score rests on."""
    import attn
    from attn.pipelines.data.synthetic import generate_clip

    result, _ = novelty_run
    m = attn.load(result.model_path)
    rng = np.random.default_rng(11)
    clips = [generate_clip(k, rng, 0.5, 8000) for k in ("sine", "noise_burst", "chirp")]
    short = m.predict([(np.r_[x, np.zeros(4000, np.float32)], 8000) for x in clips])  # + 0.5 s of silence
    long = m.predict([(np.r_[x, np.zeros(40000, np.float32)], 8000) for x in clips])  # + 5 s
    assert all(b["windows"] >= a["windows"] + 18 for a, b in zip(short, long, strict=True))
    for a, b in zip(short, long, strict=True):
        assert b["similarity"] == pytest.approx(a["similarity"], abs=1e-5)
        assert b.get("novel", False) == a.get("novel", False) and b.get("best_label", b["label"]) == a.get(
            "best_label", a["label"])  # fmt: skip
    vecs = m.embed([(np.r_[clips[0], np.zeros(n, np.float32)], 8000) for n in (4000, 40000)])
    assert np.allclose(vecs[0]["embedding"], vecs[1]["embedding"], atol=1e-5)


@pytest.mark.parametrize("bad", ["-1.5", "2"])
def test_min_similarity_outside_minus_1_1_is_a_clear_error(trained_model, bad):
    from helpers import one_line_error

    r = CliRunner().invoke(app, ["predict", "x.wav", "-m", str(trained_model), "--min-similarity", bad])
    one_line_error(r, 2, "--min-similarity", "between -1 and 1")


def test_min_similarity_on_a_model_without_a_novelty_check_is_refused(trained_model):
    """It would compare nothing: every answer the same as without it, silently."""
    from helpers import one_line_error

    r = CliRunner().invoke(app, ["predict", "x.wav", "-m", str(trained_model), "--min-similarity", "0.5"])
    one_line_error(r, 2, "--min-similarity needs a model with a novelty check (trained with train.abstain.novelty)")


def test_fit_novelty_adds_the_check_to_a_trained_model(trained_model, tmp_path):
    import shutil

    import attn

    path = shutil.copy(trained_model, tmp_path / "m.attn")
    m = attn.load(path)
    assert m.min_similarity is None and "similarity" not in m.predict((np.zeros(4000, np.float32), 8000))[0]
    facts = m.fit_novelty(0.9)
    assert facts["fitted_on"] == "validation"  # trained without a refit: validation is held out
    again = attn.load(path)  # stored in the file
    assert again.min_similarity == facts["min_similarity"] and again.loaded.header["novelty"]["keep"] == 0.9
    assert "similarity" in again.predict((np.zeros(4000, np.float32), 8000))[0]
    info = runner_info(path)
    assert "novelty" in info and f"{facts['min_similarity']:.4f}" in info


def runner_info(path) -> str:
    r = CliRunner().invoke(app, ["info", str(path)])
    assert r.exit_code == 0, r.output
    return r.stdout


def test_after_a_refit_the_threshold_comes_from_the_training_clips_left_out_one_at_a_time(trained_model):
    import attn
    from attn.pipelines.data.prepared import load_datasets, prepare_data

    m = attn.load(trained_model)
    recipe = m.recipe.model_copy(update={"train": m.recipe.train.model_copy(update={
        "abstain": m.recipe.train.abstain.model_copy(update={"novelty": 0.9})})})  # fmt: skip
    data = load_datasets(recipe, prepare_data(recipe))
    check = nov.fit_novelty(m.loaded.model, data, recipe, m.device, refit=True)
    assert check.info["bank"] == len(data.train) + len(data.val)  # validation is in the refit's training data
    assert "leave one out" in check.info["fitted_on"]
    loo = kth_similarity(check.bank, check.bank, 1, leave_one_out=True)
    assert (loo >= check.min_similarity).mean() >= 0.9


def test_a_text_model_gets_the_check_too(tmp_path):
    import csv

    import attn
    from attn.pipelines.recipe.load import load_recipe
    from attn.pipelines.train.run import train
    from helpers import ODD_TEXT_RECIPE, WORDS

    with open(tmp_path / "t.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows([f"{WORDS[i % 3]} word{i % 7}", f"c{i % 3}"] for i in range(60))
    (tmp_path / "r.yaml").write_text(ODD_TEXT_RECIPE.replace("seed: 0}", "seed: 0, abstain: {novelty: 0.9}}"))
    res = train(load_recipe(tmp_path / "r.yaml"), str(tmp_path / "r.yaml"), out=str(tmp_path / "run"), device="cpu")
    m = attn.load(res.model_path)
    assert m.min_similarity is not None
    rec = m.predict("lambda mu nothing like it")[0]
    assert -1.0 <= rec["similarity"] <= 1.0 and rec["label"] in ("unknown", *m.labels)
    strict = m.predict("lambda mu nothing like it", min_similarity=1.0)[0]
    assert strict["label"] == "unknown" and strict["novel"] is True
    assert m.predict("lambda mu nothing like it", min_similarity=-1.0)[0]["label"] in m.labels


def test_the_exported_onnx_file_carries_the_check(novelty_run, tmp_path):
    """`attn export` puts the bank in the file and the embedding in the graph: predict with the
    .onnx answers `unknown` for the same inputs, with the same similarity, as the model file."""
    pytest.importorskip("onnxruntime")
    import attn
    from attn.pipelines.data.synthetic import generate_clip
    from attn.pipelines.infer.exported import load_exported
    from helpers import write_wav

    result, _ = novelty_run
    m = attn.load(result.model_path)
    out = m.export(tmp_path / "m.onnx")
    assert out.summary()["embedding_output"]["shape"][1] == m.loaded.novelty.bank.shape[1]
    onnx = attn.load(tmp_path / "m.onnx")
    assert onnx.min_similarity == pytest.approx(m.min_similarity)
    rng = np.random.default_rng(11)
    inputs = [(generate_clip(k, rng, 0.7, 8000), 8000) for k in ("sine", "chirp")]
    inputs.append((np.zeros(4000, np.float32), 8000))
    for a, b in zip(m.predict(inputs), onnx.predict(inputs), strict=True):
        assert b["similarity"] == pytest.approx(a["similarity"], abs=2e-3)  # float16 bank, float rounding
        assert b["label"] == a["label"] and b.get("novel") == a.get("novel")
    assert onnx.predict(inputs[-1])[0]["novel"] is True  # silence
    # the command line and listen read the exported check too
    wav = write_wav(tmp_path / "silence.wav", np.zeros(4000, np.float32), 8000)
    got = json.loads(CliRunner().invoke(app, ["predict", str(wav), "-m", str(tmp_path / "m.onnx"), "-f", "jsonl",
                                              "-q"]).stdout)  # fmt: skip
    assert got["label"] == "unknown" and got["novel"] is True
    assert list(onnx.listen(str(wav), min_score=0.0))[-1]["novel"] is True
    # half a check is a damaged file, not a silent loss of it
    import onnx as onnx_lib

    proto = onnx_lib.load(str(tmp_path / "m.onnx"))
    kept = [p for p in proto.metadata_props if p.key != "novelty_bank_base64"]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    onnx_lib.save(proto, str(tmp_path / "half.onnx"))
    with pytest.raises(Exception, match="damaged attn metadata .*novelty"):
        load_exported(tmp_path / "half.onnx")


def test_a_model_with_the_check_runs_its_network_once_for_scores_and_embeddings(novelty_run):
    """Predict asks for a batch's probabilities and then its embeddings: one forward pass gives
    both, the same numbers two separate passes give."""
    import torch

    from attn.pipelines.infer.inference import softmax
    from attn.pipelines.store.artifact import load_model

    result, _ = novelty_run
    loaded = load_model(result.model_path)
    assert loaded.novelty is not None
    rng = np.random.default_rng(3)
    windows = [rng.standard_normal(n).astype(np.float32) for n in (4000, 3000, 2500)]
    x = torch.from_numpy(np.stack([np.pad(w, (0, 4000 - len(w))) for w in windows]))
    lengths = torch.tensor([len(w) for w in windows])
    with torch.inference_mode():
        want_p = softmax(loaded.model(x, lengths).float().numpy())
        want_e = nov.embed_batch(loaded.model, x, lengths)
    calls = []
    hook = loaded.model.network.frontend.register_forward_hook(lambda *a: calls.append(1))
    try:
        probs = loaded.window_probs(windows)
        emb = loaded.window_embeddings(windows)
        assert len(calls) == 1  # one pass for both
        np.testing.assert_allclose(probs, want_p, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(emb, want_e, rtol=1e-5, atol=1e-6)
        loaded.window_embeddings(windows)  # asked again (or for other windows): computed afresh
        assert len(calls) == 2
    finally:
        hook.remove()
