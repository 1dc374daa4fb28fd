"""Multi-label tagging (data.multi_label): label sets in, multi-hot targets through every model
family, thresholds chosen on validation and stored, predict/evaluate/export of label sets.
Generated data: tones mixed in a clip (audio), marker words in a sentence (text)."""

from __future__ import annotations

import csv
import io
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from attn.cli.app import app
from attn.pipelines.data import labelsets
from attn.pipelines.infer import multilabel as ml
from helpers import one_line_error, write_wav

TONES = {"low": 300.0, "mid": 1000.0, "high wide, odd;": 2500.0}  # a label with a space, a comma and a ;
SR = 8000


def _mix(present: list[str], rng) -> np.ndarray:
    t = np.arange(int(0.5 * SR)) / SR
    x = 0.01 * rng.standard_normal(t.size)
    for lab in present:
        x += 0.2 * np.sin(2 * np.pi * TONES[lab] * t + rng.uniform(0, 6))
    return x.astype(np.float32)


def _label_sets(n: int, rng) -> list[list[str]]:
    names = list(TONES)
    out = []
    for _ in range(n):
        s = [lab for lab in names if rng.random() < 0.5] or [names[int(rng.integers(3))]]
        out.append(s)
    return out


def audio_manifest(root: Path, per_split=(60, 24, 24), jsonl: bool = False) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for split, n in zip(("train", "val", "test"), per_split, strict=True):
        for i, labs in enumerate(_label_sets(n, rng)):
            p = write_wav(root / "audio" / f"{split}{i}.wav", _mix(labs, rng), SR)
            rows.append({"path": str(p.relative_to(root)), "labels": labs, "split": split})
    if jsonl:
        m = root / "labels.jsonl"
        m.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        m = root / "labels.csv"
        with m.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "labels", "split"])
            w.writerows([r["path"], "|".join(r["labels"]), r["split"]] for r in rows)
    return m


AUDIO_MODELS = {
    "cnn": "{name: cnn, channels: [8, 16], dropout: 0.0}",
    "transformer": "{name: transformer, d_model: 16, heads: 2, layers: 1, ff_dim: 32}",
    "wavenet": "{name: wavenet, front_strides: [2, 2], front_channels: 8, channels: 8, skip_channels: 8, layers: 2}",
}


def audio_recipe(tmp_path: Path, model: str = AUDIO_MODELS["cnn"], epochs: int = 3, extra: str = "",
                 jsonl: bool = False, data: str = ", label_sep: '|'") -> Path:  # fmt: skip
    m = audio_manifest(tmp_path / "data", jsonl=jsonl)
    p = tmp_path / "ml.yaml"
    p.write_text(
        f"data: {{manifest: {m}, label_column: labels, multi_label: true{data}}}\n"
        f"features: {{sample_rate: {SR}, frame_seconds: 0.5, hop_seconds: 0.25, n_fft: 256, hop_length: 128, "
        "n_mels: 24}\n"
        f"model: {model}\n"
        f"train: {{epochs: {epochs}, batch_size: 8, lr: 0.01, patience: 0, seed: 0, monitor: val_loss{extra}}}\n"
    )
    return p


def _train(recipe: Path, out: Path):
    from attn.pipelines.recipe.load import load_recipe
    from attn.pipelines.train.run import train

    return train(load_recipe(recipe), str(recipe), out=str(out), device="cpu")


# -- metrics and thresholds against scikit-learn ---------------------------------------------------


def test_metrics_equal_scikit_learns_on_the_same_arrays():
    from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score

    rng = np.random.default_rng(3)
    y = (rng.random((200, 6)) < 0.3).astype(np.float32)
    y[:, 5] = 0  # a class without positives: left out of the macro averages
    scores = np.clip(y * 0.4 + rng.random((200, 6)) * 0.7, 0, 1).astype(np.float32)
    scores[:10, 0] = scores[10:20, 0] = 0.5  # ties
    th = np.array([0.5, 0.4, 0.6, 0.5, 0.3, 0.5])
    rep = ml.multilabel_report(scores, y, [f"c{i}" for i in range(6)], th)
    pred = (scores >= th).astype(int)
    present = [0, 1, 2, 3, 4]
    assert rep["micro_f1"] == pytest.approx(f1_score(y, pred, average="micro"))
    assert rep["macro_f1"] == pytest.approx(f1_score(y[:, present], pred[:, present], average="macro"))
    expected_map = average_precision_score(y[:, present], scores[:, present], average="macro")
    assert rep["macro_map"] == pytest.approx(expected_map)
    for i in present:
        c = rep["per_class"][f"c{i}"]
        assert c["ap"] == pytest.approx(average_precision_score(y[:, i], scores[:, i]))
        assert c["precision"] == pytest.approx(precision_score(y[:, i], pred[:, i], zero_division=0))
        assert c["recall"] == pytest.approx(recall_score(y[:, i], pred[:, i]))
    assert rep["per_class"]["c5"]["ap"] is None
    assert rep["exact_match"] == pytest.approx(float((pred == y).all(1).mean()))
    assert rep["label_cardinality"] == pytest.approx(float(y.sum(1).mean()))


def test_thresholds_are_chosen_per_class_and_guarded_for_rare_classes():
    rng = np.random.default_rng(0)
    n = 400
    y = np.zeros((n, 3), dtype=np.float32)
    y[:200, 0] = 1  # common: separable at 0.8
    y[:100, 1] = 1  # common: separable at 0.2
    y[:3, 2] = 1  # 3 positives: below MIN_SUPPORT
    s = np.zeros((n, 3), dtype=np.float32)
    s[:, 0] = np.where(y[:, 0] > 0, rng.uniform(0.85, 1, n), rng.uniform(0, 0.75, n))
    s[:, 1] = np.where(y[:, 1] > 0, rng.uniform(0.25, 1, n), rng.uniform(0, 0.15, n))
    s[:, 2] = np.where(y[:, 2] > 0, 0.9, rng.uniform(0, 0.95, n))
    th, facts = ml.choose_thresholds(s, y)
    assert th[2] == pytest.approx(facts["global"])  # the rare class takes the global threshold
    # own choices (F1 1 anywhere in (0.75, 0.85] and (0.15, 0.25]), shrunk a little toward the global one
    assert 0.75 < th[0] <= 0.85 + 1e-9 and 0.15 < th[1] < 0.35
    # shrinkage: with few positives the choice moves toward the global threshold
    th_small, f_small = ml.choose_thresholds(s[::20], y[::20])  # 10 and 5 positives
    own_pull = abs(th_small[0] - f_small["global"]) / max(abs(th[0] - facts["global"]), 1e-9)
    assert own_pull < 1


def test_a_rare_class_with_small_scores_still_gets_predicted():
    """A rare class's probabilities sit far below 0.05 (its prior is ~1%); its threshold must
    reach down there, or the class is never predicted and its F1 is 0 however well it ranks."""
    rng = np.random.default_rng(1)
    n = 2000
    y = np.zeros((n, 2), dtype=np.float32)
    y[:600, 0] = 1  # common, separable at 0.5
    y[:20, 1] = 1  # rare: 20 positives in 2000
    s = np.zeros((n, 2), dtype=np.float32)
    s[:, 0] = np.where(y[:, 0] > 0, rng.uniform(0.55, 1, n), rng.uniform(0, 0.45, n))
    s[:, 1] = np.where(y[:, 1] > 0, rng.uniform(0.02, 0.1, n), rng.uniform(0, 0.015, n))
    th, facts = ml.choose_thresholds(s, y)
    assert facts["global"] >= 0.4
    assert 0.015 < th[1] < 0.05  # its own cut, pulled only part of the way toward the global 0.4+
    rep = ml.multilabel_report(s, y, ["common", "rare"], th)
    assert rep["per_class"]["rare"]["f1"] > 0.7  # (a threshold of 0.1 or more would give 0)


def test_label_cells_parse_with_separators_and_json_lists(caplog):
    assert labelsets.parse_cell("b; a;a", ";", "x:2") == ("a", "b")
    assert labelsets.parse_cell('["x y", "a;b"]', ";", "x:2") == ("a;b", "x y")
    with pytest.raises(Exception, match="x:2: empty label list"):
        labelsets.parse_cell(" ; ", ";", "x:2")
    assert labelsets.parse_cell("[barking];dog", ";", "x:2") == ("[barking]", "dog")  # a bracket, not JSON
    with pytest.raises(Exception, match=r"x:2: label list .* is not a JSON list of strings"):
        labelsets.parse_cell('["a", 3]', ";", "x:2")
    assert labelsets.detect_sep(["a|b", "c"], "m.csv") == "|"
    assert labelsets.detect_sep(["a;b", "a|b", "b|a"], "m.csv") == "|"  # as few labels either way: the most cells
    # A label holding a comma, in more cells than the real separator: "," would leave every pair whole.
    cells = ["rain, heavy"] * 5 + ["dog|rain, heavy", "cat|dog", "cat"]
    with caplog.at_level(logging.INFO, logger="attn"):
        assert labelsets.detect_sep(cells, "m.csv") == "|"
    assert "data.label_sep auto: '|' (in 2 label cells, 3 distinct labels; split on ',': 5 labels)" in caplog.text
    # parent;child tags (fewer distinct combinations than labels) and one label holding a comma:
    # "," in 1 cell must not outvote ";" in all of them; nor a typo's separator in one cell
    tags = ["animal;dog", "animal;cat", "animal;bird", "vehicle;car", "vehicle;truck"] * 48
    assert labelsets.detect_sep([*tags, "vehicle;siren, emergency"], "m.csv") == ";"
    assert labelsets.detect_sep([t.replace(";", "|") for t in tags] + ["animal|dog;cat"], "m.csv") == "|"
    with caplog.at_level(logging.WARNING, logger="attn"):
        labelsets.detect_sep(["a", "c"], "m.csv")
    assert "no label cell holds a separator" in caplog.text


def test_bce_loss_mixes_multi_hot_targets_and_uses_pos_weight():
    import torch
    import torch.nn.functional as F

    from attn.pipelines.data.batching import WindowSet
    from attn.pipelines.recipe.config import TrainConfig
    from attn.pipelines.train.trainer import Trainer

    y = np.array([[1, 0, 0], [0, 1, 1], [1, 1, 0], [0, 0, 1]], dtype=np.float32)
    ws = WindowSet([np.zeros(8, np.float32)] * 4, y, 8, 8)
    model = torch.nn.Linear(1, 3)
    tr = Trainer(model, TrainConfig(class_weights="balanced"), ws, None, ["a", "b", "c"], torch.device("cpu"))
    assert tr.class_weights.tolist() == pytest.approx([1.0, 1.0, 1.0])  # 2 of 4 positive each
    logits = torch.randn(4, 3)
    yt = torch.from_numpy(y)
    lam, perm = torch.tensor([0.3, 0.5, 1.0, 0.0]), torch.tensor([1, 0, 3, 2])
    mixed = lam[:, None] * yt + (1 - lam[:, None]) * yt[perm]
    assert tr._loss(logits, yt, (lam, perm)).item() == pytest.approx(
        F.binary_cross_entropy_with_logits(logits, mixed).item(), rel=1e-6
    )


# -- end to end -------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", list(AUDIO_MODELS))
def test_every_audio_family_trains_on_multi_hot_targets_and_stores_thresholds(tmp_path, family):
    from attn.pipelines.store.artifact import load_model

    epochs = 12 if family == "cnn" else 2
    res = _train(audio_recipe(tmp_path, AUDIO_MODELS[family], epochs=epochs), tmp_path / "run")
    m = json.loads((res.run_dir / "metrics.json").read_text())
    assert m["multi_label"] and set(m["per_class"]) == set(TONES)
    for key in ("micro_f1", "macro_f1", "macro_map", "exact_match", "label_cardinality"):
        assert 0 <= m[key] <= 3
    assert "macro_map" in m["baseline"]  # the one-vs-rest baseline, scored the same way
    loaded = load_model(res.model_path)
    th = loaded.header["thresholds"]
    assert len(th) == 3 and all(0 < t < 1 for t in th)
    assert [m["per_class"][lab]["threshold"] for lab in loaded.labels] == pytest.approx(th)
    if family == "cnn":  # three tones in a clip are easy to hear apart
        assert m["macro_map"] > 0.9, m


def test_predict_gives_label_sets_and_every_score_in_jsonl_csv_and_table(tmp_path):
    res = _train(audio_recipe(tmp_path, epochs=1), tmp_path / "run")  # the shapes of the outputs, not accuracy
    clip = str(tmp_path / "data" / "audio" / "test0.wav")
    r = CliRunner().invoke(app, ["predict", "-m", str(res.model_path), clip, "--format", "jsonl"])
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)
    assert set(rec["scores"]) == set(TONES) and all(lab in TONES for lab in rec["labels"])
    r = CliRunner().invoke(app, ["predict", "-m", str(res.model_path), clip, "--format", "jsonl", "--threshold", "0"])
    assert sorted(json.loads(r.stdout)["labels"]) == sorted(TONES)  # threshold 0: every class
    r = CliRunner().invoke(app, ["predict", "-m", str(res.model_path), clip, "--format", "csv", "--threshold", "0"])
    row = next(csv.DictReader(io.StringIO(r.stdout)))
    assert sorted(json.loads(row["labels"])) == sorted(TONES)  # "high wide, odd;" reads back as one label
    assert set(json.loads(row["scores"])) == set(TONES)
    r = CliRunner().invoke(app, ["predict", "-m", str(res.model_path), clip, "--format", "table"])
    assert r.exit_code == 0 and "test0.wav" in r.stdout
    r = CliRunner().invoke(app, ["predict", "-m", str(res.model_path), clip, "--threshold", "1.5"])
    assert r.exit_code == 2 and "--threshold" in r.output
    r = CliRunner().invoke(app, ["evaluate", "-m", str(res.model_path), "--format", "json"])
    assert r.exit_code == 0, r.output
    ev = json.loads(r.stdout)
    assert ev["multi_label"] and ev["macro_map"] == pytest.approx(
        json.loads((res.run_dir / "metrics.json").read_text())["macro_map"], abs=1e-6
    )
    assert "precision-recall" in (res.run_dir / "report.html").read_text().lower()
    th = json.loads(CliRunner().invoke(app, ["info", str(res.model_path), "-f", "json"]).stdout)["thresholds"]
    info = CliRunner().invoke(app, ["info", str(res.model_path)]).stdout
    assert f"thresholds   per class: min {min(th):.4f}" in info and f"max {max(th):.4f}" in info


def test_listen_tags_each_window_of_a_stream_as_predict_per_frame_does(tmp_path):
    import attn

    res = _train(audio_recipe(tmp_path, epochs=1), tmp_path / "run")
    rng = np.random.default_rng(5)
    long = write_wav(tmp_path / "long.wav", np.concatenate([_mix(["low"], rng), _mix(["mid", "low"], rng),
                                                            _mix(["high wide, odd;"], rng)]), SR)  # fmt: skip
    m = attn.load(res.model_path)
    frames = m.predict(str(long), per_frame=True)[0]["frames"]
    streamed = list(m.listen(str(long)))
    spans = [(f["start"], f["end"], f["labels"]) for f in frames]
    assert [(r["start"], r["end"], r["labels"]) for r in streamed] == spans
    assert all(set(r["scores"]) == set(TONES) and "label" not in r for r in streamed)
    assert all(sorted(r["labels"]) == sorted(TONES) for r in m.listen(str(long), threshold=0.0))


def test_onnx_export_carries_the_sigmoid(tmp_path):
    pytest.importorskip("onnxruntime")
    import attn

    res = _train(audio_recipe(tmp_path, epochs=2), tmp_path / "run")
    m = attn.load(res.model_path)
    out = m.export(tmp_path / "m.onnx")
    e = attn.load(out.path)
    clips = [str(tmp_path / "data" / "audio" / f"test{i}.wav") for i in range(4)]
    a, b = m.predict(clips), e.predict(clips)
    for ra, rb in zip(a, b, strict=True):
        assert ra["labels"] == rb["labels"]
        for lab in TONES:
            assert rb["scores"][lab] == pytest.approx(ra["scores"][lab], abs=1e-4)
    assert sum(a[0]["scores"].values()) != pytest.approx(1.0, abs=1e-3)  # sigmoids, not a softmax


def test_jsonl_label_lists_and_refit_keep_validation_thresholds(tmp_path):
    res = _train(audio_recipe(tmp_path, epochs=2, extra=", refit: true", jsonl=True), tmp_path / "run")
    from attn.pipelines.store.artifact import load_model

    header = load_model(res.model_path).header
    assert header["train"]["data"]["refit"]["examples"] == 84  # train + val
    assert len(header["thresholds"]) == 3  # chosen on validation before the refit


def test_text_families_train_on_label_sets(tmp_path):
    rng = np.random.default_rng(1)
    words = {"sport": "goal", "money": "bank", "food": "bread"}
    filler = "the a of and to in it is was for on with as at by".split()
    rows = []
    for split, n in (("train", 120), ("val", 40), ("test", 40)):
        for _ in range(n):
            labs = [lab for lab in words if rng.random() < 0.4] or ["food"]
            toks = list(rng.choice(filler, 6)) + [words[lab] for lab in labs]
            rng.shuffle(toks)
            rows.append({"text": " ".join(toks), "label": labs, "split": split})
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for model in ("{name: cnn1d, filters: 8}", "{name: transformer, d_model: 16, heads: 2, layers: 1, ff_dim: 32}"):
        p = tmp_path / "t.yaml"
        p.write_text(
            f"data: {{manifest: {tmp_path / 't.jsonl'}, multi_label: true}}\n"
            "features: {kind: text, embed_dim: 16, tokenizer: {level: word, max_len: 16}}\n"
            f"model: {model}\ntrain: {{epochs: 8, batch_size: 16, lr: 0.01, seed: 0, patience: 0}}\n"
        )
        res = _train(p, tmp_path / f"run{len(model)}")
        assert res.metrics["multi_label"] and res.metrics["macro_map"] > 0.8, res.metrics
    r = CliRunner().invoke(app, ["predict", "-m", str(res.model_path), "--text", "goal bank", "-f", "jsonl"])
    assert set(json.loads(r.stdout)["scores"]) == set(words)


# -- bad input ----------------------------------------------------------------------------------------


def test_empty_label_list_is_a_one_line_error(tmp_path):
    p = audio_recipe(tmp_path)
    m = tmp_path / "data" / "labels.csv"
    lines = m.read_text().splitlines()
    lines[3] = lines[3].split(",")[0] + ',"|",train'
    m.write_text("\n".join(lines) + "\n")
    r = CliRunner().invoke(app, ["train", str(p), "--out", str(tmp_path / "run")])
    one_line_error(r, r.exit_code, "labels.csv:4", "empty label list")
    assert r.exit_code != 0


def test_label_only_in_test_and_missing_separator_are_warned(tmp_path, caplog):
    from attn.pipelines.data.prepared import prepare_data
    from attn.pipelines.recipe.load import load_recipe

    p = audio_recipe(tmp_path, data=", label_sep: '+'")
    m = tmp_path / "data" / "labels.csv"
    text = m.read_text().replace("|", "+")
    text = text.rstrip("\n") + "\naudio/newcomer.wav,newcomer,test\n"
    m.write_text(text)
    shutil.copy(tmp_path / "data" / "audio" / "test0.wav", tmp_path / "data" / "audio" / "newcomer.wav")
    with caplog.at_level(logging.WARNING, logger="attn"):
        prep = prepare_data(load_recipe(p))
    assert "newcomer" not in prep.labels and "'newcomer' appear in val/test but never in train" in caplog.text
    p2 = audio_recipe(tmp_path / "b", data=", label_sep: '#'")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="attn"):
        prepare_data(load_recipe(p2))
    assert "label_sep '#' never occurs" in caplog.text


def test_threshold_on_a_single_label_model_is_refused(trained_model):
    r = CliRunner().invoke(app, ["predict", "-m", str(trained_model), "--text", "x", "--threshold", "0.3"])
    assert r.exit_code != 0


def test_folds_and_ensembles_keep_thresholds_from_held_out_data(tmp_path):
    from attn.pipelines.store.artifact import load_model

    for final in ("refit", "ensemble"):  # either saved model keeps the folds' mean thresholds
        res = _train(audio_recipe(tmp_path / final, epochs=1, extra=f", folds: 2, folds_final: {final}"),
                     tmp_path / f"folds-{final}")  # fmt: skip
        header = load_model(res.model_path).header
        folds = res.cv["folds"]
        assert header["thresholds"] == pytest.approx(np.mean([f["thresholds"] for f in folds], axis=0), abs=1e-4)
        assert res.metrics["multi_label"] and "calibration" not in header  # sigmoids get thresholds, not T
        if final == "refit":  # its baseline is scored at them too (no validation is left to choose its own)
            assert res.metrics["baseline"]["thresholds"] == pytest.approx(header["thresholds"], abs=1e-6)
    res = _train(audio_recipe(tmp_path / "e", epochs=1, extra=", ensemble: 2"), tmp_path / "ens")
    loaded = load_model(res.model_path)
    assert len(loaded.header["thresholds"]) == 3 and res.metrics["multi_label"]
    scores = loaded.window_probs([np.zeros(SR // 2, np.float32)])
    assert scores.shape == (1, 3) and abs(float(scores.sum()) - 1) > 1e-3  # each label's own probability
    # refitted members keep their first phase's thresholds, and their test figures are at them
    # (they were scored at 0.5, and their model files kept none)
    import attn

    res = _train(audio_recipe(tmp_path / "r", epochs=1, extra=", ensemble: 2, refit: true"), tmp_path / "ens-refit")
    for i, row in enumerate(res.members, 1):
        member = attn.load(tmp_path / "ens-refit" / f"member-{i}")
        assert len(member.loaded.header["thresholds"]) == 3
        assert row["test_accuracy"] == pytest.approx(attn.evaluate(member)["accuracy"])


def test_explain_a_multi_label_model_per_label_by_its_sigmoid(tmp_path):
    """A clip with `low` in its first half and `high` in its second: explaining each label (its
    own sigmoid score, --label) puts the weight on the half that holds it."""
    import attn

    res = _train(audio_recipe(tmp_path, epochs=12), tmp_path / "run")
    m = attn.load(res.model_path)
    rng = np.random.default_rng(5)
    half = int(0.25 * SR)
    clip = np.concatenate([_mix(["low"], rng)[:half], _mix(["high wide, odd;"], rng)[:half]])
    wav = write_wav(tmp_path / "two.wav", clip, SR)
    for lab, first in (("low", True), ("high wide, odd;", False)):
        rec = m.explain(wav, label=lab)[0]
        assert rec["label"] == lab and set(rec["labels"]) <= set(TONES)
        sig = m.predict(wav, threshold=0.5)[0]["scores"][lab]  # predict's score of that label: a sigmoid
        assert rec["score"] == pytest.approx(sig, abs=1e-5)
        mid = np.array([(s + e) / 2 for s, e in rec["positions"]]) < 0.25
        w = np.array(rec["weights"])
        assert (w[mid].sum() > w[~mid].sum()) == first, (lab, w.round(3))
    r = CliRunner().invoke(app, ["explain", str(wav), "-m", str(res.model_path), "--label", "nope"])
    one_line_error(r, 2, "--label", "nope", "low")


def test_the_multi_label_blend_facts_name_what_they_hold():
    """metrics.json's blend said val_accuracy_network 0.0498 and val_accuracy_blend 0.2945: macro
    mAPs, where the network's exact-set accuracy was 0.0."""
    from attn.pipelines.data.batching import WindowSet
    from attn.pipelines.train.multilabel_baseline import choose_blend_per_class

    rng = np.random.default_rng(0)
    y = (rng.random((40, 3)) < 0.4).astype(np.float32)
    ws = WindowSet([np.ones(2, np.int64)] * 40, y, 2, 2, truncate=True)
    net, base = rng.normal(size=(40, 3)), (y * 4 - 2) + rng.normal(size=(40, 3))
    _, facts = choose_blend_per_class(net, base, ws, (0.0, 0.5, 1.0))
    assert {"val_macro_map_network", "val_macro_map_blend"} <= set(facts)
    assert not any(k.startswith("val_accuracy") for k in facts)


def test_a_never_predicted_class_has_its_pr_dot_at_precision_0_as_its_table_row():
    """The report's chosen-threshold dot of a class no score reaches stood at precision 1.0, its
    per-class row at 0.000."""
    from attn.pipelines.infer.multilabel import pr_curves

    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=np.float32)
    scores = np.array([[0.9, 0.1], [0.2, 0.3], [0.8, 0.2], [0.1, 0.1]])
    curves = pr_curves(scores, y, ["a", "b"], np.array([0.5, 0.95]))
    assert curves[0]["at"] == (1.0, 1.0) and curves[1]["at"] == (0.0, 0.0)
