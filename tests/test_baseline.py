"""The classical baseline fitted beside every model: it runs, it is reported wherever results
are (metrics.json, the train summary, the artifact, `attn info`, `attn evaluate`), a model that
loses to it gets a warning, and its stored parameters score like the fitted scikit-learn model."""

from __future__ import annotations

import csv
import json
import logging
import subprocess
import sys

import numpy as np
import pytest
import torch

import attn
from attn.pipelines.store.container import read_container

WORDS = {
    "sport": ["match", "goal", "team", "coach", "league", "score"],
    "food": ["pasta", "sauce", "bread", "cheese", "recipe", "oven"],
    "tech": ["chip", "laptop", "code", "server", "phone", "software"],
}
FILLER = ["the", "a", "today", "new", "big", "about", "with", "this", "was", "very"]


def _text_data(tmp_path, n_per_class=40, seed=0):
    """train/val/test CSVs where two topic words among filler decide the label."""
    rng = np.random.default_rng(seed)
    paths = {}
    for split, n in (("train", n_per_class), ("val", n_per_class // 4), ("test", n_per_class // 4)):
        rows = []
        for label, words in WORDS.items():
            for _ in range(n):
                toks = list(rng.choice(FILLER, 6)) + list(rng.choice(words, 2))
                rng.shuffle(toks)
                rows.append({"text": " ".join(toks), "label": label})
        paths[split] = tmp_path / f"{split}.csv"
        with paths[split].open("w", newline="") as f:
            w = csv.DictWriter(f, ["text", "label"])
            w.writeheader()
            w.writerows(rows)
    return paths


def _text_recipe(tmp_path, epochs=3, **train):
    paths = _text_data(tmp_path)
    return {
        "data": {k: str(v) for k, v in paths.items()},
        "features": {"kind": "text", "tokenizer": {"level": "word", "max_len": 16}, "embed_dim": 16},
        "model": {"name": "transformer", "d_model": 16, "heads": 2, "layers": 1, "ff_dim": 32, "pool": "mean"},
        "train": {"epochs": epochs, "batch_size": 16, "lr": 0.005, "patience": 0, **train},
    }


def test_text_baseline_is_reported_everywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = attn.train(_text_recipe(tmp_path), out=str(tmp_path / "run"), device="cpu")
    b = res.summary()["baseline"]
    assert b["kind"] == "tfidf+logreg"
    assert b["accuracy"] >= 0.9 and b["val_accuracy"] >= 0.9  # the topic words give it away
    assert 0 < b["seconds"] < 60
    metrics = json.loads((res.run_dir / "metrics.json").read_text())
    assert metrics["baseline"] == {k: v for k, v in b.items() if k != "blend_weight"}
    header = read_container(res.model_path, header_only=True).header
    assert {k: header["baseline"][k] for k in ("kind", "accuracy", "blend_weight")} == {
        k: b[k] for k in ("kind", "accuracy", "blend_weight")
    }
    cmd = [sys.executable, "-m", "attn.cli", "info", str(res.model_path)]
    info = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert "baseline     tfidf+logreg accuracy" in info
    ev = attn.evaluate(attn.load(res.run_dir))
    assert ev["baseline"]["kind"] == "tfidf+logreg"
    assert ev["baseline"]["accuracy"] == pytest.approx(b["accuracy"])  # same data, same stored model


def test_audio_baseline_on_mfcc_statistics(tmp_path, tiny_recipe):
    p = tiny_recipe(epochs=1)
    res = attn.train(p, out=str(tmp_path / "run"), device="cpu")
    b = res.summary()["baseline"]
    assert b["kind"] == "mfcc+logreg"
    assert b["accuracy"] >= 0.8  # sine, noise bursts and chirps differ in their spectra
    ev = attn.evaluate(attn.load(res.run_dir))
    assert ev["baseline"]["accuracy"] == pytest.approx(b["accuracy"])


def test_baseline_off(tmp_path, tiny_recipe):
    res = attn.train(tiny_recipe(epochs=1), ["train.baseline=false"], out=str(tmp_path / "run"), device="cpu")
    assert "baseline" not in res.summary()
    assert "baseline" not in json.loads((res.run_dir / "metrics.json").read_text())
    assert "baseline" not in attn.evaluate(attn.load(res.run_dir))


def test_a_model_that_loses_to_the_baseline_gets_one_warning(tmp_path, caplog):
    # One epoch at a tiny learning rate: the network is still at chance, the baseline is not.
    recipe = _text_recipe(tmp_path, epochs=1, lr=1e-6)
    with caplog.at_level(logging.WARNING, logger="attn"):
        attn.train(recipe, out=str(tmp_path / "run"), device="cpu")
    warnings = [r.getMessage() for r in caplog.records if "below the tfidf+logreg baseline" in r.getMessage()]
    assert len(warnings) == 1
    assert "on validation" in warnings[0]


def test_torch_baseline_equals_the_scikit_learn_fit(tmp_path):
    """The TF-IDF + logistic regression the model file keeps (torch buffers) gives the
    probabilities of the scikit-learn pipeline it was fitted with, on unseen texts too."""
    import torch
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from attn.pipelines.data.prepared import load_datasets, prepare_data
    from attn.pipelines.recipe.load import recipe_from_dict
    from attn.pipelines.train.baseline import _grams, fit_baseline

    recipe = recipe_from_dict(_text_recipe(tmp_path))
    data = load_datasets(recipe, prepare_data(recipe))
    b = fit_baseline(recipe, data)
    docs = {s: [data.split(s).clips[i] for i in range(len(data.split(s)))] for s in ("train", "test")}
    vec = TfidfVectorizer(analyzer=_grams, sublinear_tf=True, max_features=100_000)
    x = vec.fit_transform(docs["train"])
    ref = LogisticRegression(C=b.C, max_iter=2000).fit(x, data.train.labels).predict_proba(vec.transform(docs["test"]))
    ws = data.test
    batch = ws.collate(ws.all_windows)
    with torch.no_grad():
        got = b.module(batch.x, batch.lengths).exp().numpy()
    assert np.allclose(got, ref, atol=1e-5)


def test_audio_baseline_statistics_ignore_padding():
    """A window's MFCC mean/std are the same computed alone or in a batch with a longer one."""
    import torch

    from attn.features.config import AudioFeatures
    from attn.pipelines.train.baseline import _mfcc_stats

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((2, 16000)).astype(np.float32))
    x[0, 4000:] = 0
    stats = _mfcc_stats(AudioFeatures(sample_rate=8000, n_fft=256, hop_length=80, n_mels=40))
    together = stats(x, torch.tensor([4000, 16000]))
    alone = stats(x[:1, :4000], torch.tensor([4000]))
    assert torch.allclose(together[0], alone[0], atol=1e-4)


def test_blend_weight_follows_validation_log_loss():
    from attn.pipelines.data.batching import WindowSet
    from attn.pipelines.train.baseline import choose_blend

    y = np.array([0, 1, 0, 1, 1, 0])
    ws = WindowSet([np.zeros(4, dtype=np.int64)] * 6, y, 4, 4, truncate=True)
    right = np.log(np.eye(2)[y] * 0.9 + 0.05)  # confident and right
    chance = np.zeros((6, 2))
    assert choose_blend(right, chance, ws)[0] == 0.0  # a useless baseline gets no weight
    w, facts = choose_blend(chance, right, ws)
    assert w == 1.0 and facts["val_accuracy_blend"] == 1.0  # a useless network gives way


def test_blended_model_file_round_trip(tmp_path):
    """The saved model is the blend: loading it gives (1 - w) p_network + w p_baseline, and the
    same probabilities as before saving."""
    import torch

    recipe = _text_recipe(tmp_path, epochs=1, lr=1e-6)  # a network at chance: the blend leans on the baseline
    # temperature off: this is about the blend's probabilities (a temperature would rescale them)
    res = attn.train(recipe, overrides=["train.calibrate=false"], out=str(tmp_path / "run"), device="cpu")
    assert res.summary()["baseline"]["blend_weight"] > 0
    loaded = attn.load(res.run_dir)
    model = loaded.module
    w = model.weight
    texts = ["goal team today", "pasta with cheese", "new laptop code"]
    records = loaded.predict(texts, top_k=3)
    from attn.pipelines.data.text import encode_texts

    ids, _ = encode_texts(loaded.loaded.tokenizer, texts, 16)
    from attn.pipelines.data.batching import pad_rows

    x = torch.from_numpy(pad_rows(ids))
    lengths = torch.tensor([len(i) for i in ids])
    with torch.no_grad():
        want = (1 - w) * model.network(x, lengths).softmax(-1) + w * model.baseline(x, lengths).exp()
    for rec, p in zip(records, want, strict=True):
        assert rec["score"] == pytest.approx(float(p.max()), abs=1e-5)
    metrics = json.loads((res.run_dir / "metrics.json").read_text())
    assert metrics["blend"]["weight"] == w and "network_accuracy" in metrics["blend"]


def test_no_below_the_baseline_warning_when_the_network_ties_it(caplog):
    """history.jsonl rounds to 6 places: a network at 1/3 read 0.333333 < 1/3 and was warned about."""
    import logging
    from types import SimpleNamespace

    from attn.pipelines.train.model import compare_with_baseline

    base = SimpleNamespace(kind="mfcc+logreg", scores={"val": {"accuracy": 1 / 3}})
    with caplog.at_level(logging.WARNING, logger="attn"):
        compare_with_baseline([{"best": True, "val_accuracy": round(1 / 3, 6)}], base, None)
        assert "scores below" not in caplog.text
        compare_with_baseline([{"best": True, "val_accuracy": 0.333332}], base, None)
    assert "scores below the mfcc+logreg baseline" in caplog.text


def test_below_the_baseline_compares_the_monitored_score(caplog):
    """A run monitoring macro-F1 (imbalanced classes) is compared by macro-F1: on SST-2 at 90/10
    a network of validation macro-F1 0.60 was warned about for its accuracy (0.85 against the
    majority-naming baseline's 0.895, whose macro-F1 was 0.47)."""
    import logging
    from types import SimpleNamespace

    from attn.pipelines.train.model import compare_with_baseline

    base = SimpleNamespace(kind="tfidf+logreg", scores={"val": {"accuracy": 0.895, "macro_f1": 0.472}})
    best = [{"best": True, "val_accuracy": 0.85, "val_macro_f1": 0.601}]
    with caplog.at_level(logging.WARNING, logger="attn"):
        compare_with_baseline(best, base, None, "val_macro_f1")
        assert "scores below" not in caplog.text
        compare_with_baseline(best, base, None)  # by accuracy, it is below
    assert "(accuracy 0.8500 vs 0.8950)" in caplog.text


def test_the_mfcc_baseline_removes_the_offset_as_its_model_file_says():
    """The baseline's MFCC statistics ignore a DC offset when the run removes it, and a model file
    keeps that choice; one from before DC removal (no key) rebuilds the baseline that saw it."""
    from attn.models.linear import Blend, LinearBaseline, MfccStats
    from attn.pipelines.store.blend import baseline_from_state, baseline_state

    mel = {"sample_rate": 8000, "n_fft": 256, "hop_length": 80, "n_mels": 32}
    t = torch.arange(4000) / 8000
    wave = (0.1 * torch.sin(2 * torch.pi * 300 * t))[None]
    n = torch.tensor([4000])
    assert torch.allclose(MfccStats(13, mel, True)(wave, n), MfccStats(13, mel, True)(wave + 0.01, n), atol=1e-3)
    assert not torch.allclose(MfccStats(13, mel)(wave, n), MfccStats(13, mel)(wave + 0.01, n), atol=1e-3)

    base = LinearBaseline(MfccStats(13, mel, True), torch.randn(3, 26), torch.zeros(3))
    header, tensors = baseline_state(Blend(torch.nn.Identity(), base, 0.5, {"kind": "mfcc+logreg"}))
    assert baseline_from_state(header, tensors).features.remove_dc is True
    del header["remove_dc"]
    assert baseline_from_state(header, tensors).features.remove_dc is False


@pytest.mark.parametrize("multi_label", [False, True])
def test_the_sparse_tfidf_path_gives_the_dense_numbers(multi_label):
    """Predict gathers the few columns a text has (the dense (B, D) path cost 7x the CNN at 100k
    features); exports keep the dense graph: both must give the same scores."""
    import torch

    from attn.models.linear import LinearBaseline, TfidfFeatures

    g = torch.Generator().manual_seed(0)
    vocab, d, k = 50, 80, 4
    unigram = torch.randint(-1, d, (vocab,), generator=g)
    keys = torch.unique(torch.randint(0, vocab * vocab, (40,), generator=g))
    feats = TfidfFeatures(unigram, keys, torch.randint(0, d, (len(keys),), generator=g), torch.rand(d, generator=g) + 1)
    base = LinearBaseline(feats, torch.randn(k, d, generator=g), torch.randn(k, generator=g), multi_label=multi_label)
    ids = torch.randint(0, 6, (5, 12), generator=g)  # few distinct ids: repeated tokens and pairs
    ids[1] = 3  # one token throughout
    lengths = torch.tensor([12, 12, 5, 1, 0])
    for x in (ids, torch.stack([ids, torch.zeros_like(ids)], -1)):  # (B, T) and hashed n-gram rows (B, T, 2)
        dense = feats(x, lengths) @ base.coef.T + base.intercept
        dense = dense if multi_label else dense.log_softmax(-1)
        assert torch.allclose(base(x, lengths), dense, atol=1e-5)


def test_c_values_tied_on_accuracy_go_to_the_lower_log_loss():
    """Ties went to the smallest C: an underconfident baseline that the log-loss blend then took
    too little of (8-sentence texts: baseline 99.1%, saved model 91.2%)."""
    from attn.pipelines.data.batching import WindowSet
    from attn.pipelines.train.baseline import _fit_choose_c

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 40)
    x = rng.normal(size=(80, 5)) + y[:, None] * 3.0  # separable: every C is 100% right
    ws = WindowSet([np.ones(1, np.int64)] * 40, np.repeat([0, 1], 20), 1, 1, truncate=True)
    xv = rng.normal(size=(40, 5)) + ws.labels[:, None] * 3.0
    _, c = _fit_choose_c(x, y, xv, ws.labels, ws, 2)
    assert c == 100.0  # the sharpest of the tied ones, the smallest log-loss


def test_a_saved_model_naming_one_class_for_everything_is_warned_of(caplog):
    from attn.pipelines.recipe.config import TrainConfig
    from attn.pipelines.train.model import warn_one_class

    metrics = {"confusion": [[0, 100], [0, 900]], "accuracy": 0.9, "split": "test"}
    with caplog.at_level("WARNING", logger="attn"):
        warn_one_class(metrics, ["negative", "positive"])
        warn_one_class({"confusion": [[90, 10], [5, 895]], "accuracy": 0.985}, ["negative", "positive"])
    assert caplog.text.count("names 'positive' for every one of the 1000 test examples") == 1
    assert "try --set train.class_weights=balanced and --set train.monitor=val_macro_f1" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="attn"):  # advice the run already followed is not given again
        warn_one_class(metrics, ["negative", "positive"], TrainConfig(class_weights="balanced"))
        assert caplog.text.rstrip().endswith("try --set train.monitor=val_macro_f1")
        caplog.clear()
        warn_one_class(metrics, ["negative", "positive"], TrainConfig(class_weights="balanced", monitor="val_macro_f1"))
        assert "--set" not in caplog.text and "the smaller classes need more examples" in caplog.text
