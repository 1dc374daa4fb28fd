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

import attn
from attn.pipelines.container import read_container

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
    assert metrics["baseline"] == b
    header = read_container(res.model_path, header_only=True).header
    assert header["baseline"] == b
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


def test_stored_baseline_scores_like_the_fitted_model(tmp_path):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from attn.pipelines.baseline import Baseline, fit_text

    paths = _text_data(tmp_path, n_per_class=30, seed=3)
    rows = {s: list(csv.DictReader(p.open())) for s, p in paths.items()}
    labels = sorted(WORDS)
    texts = {s: [r["text"] for r in rs] for s, rs in rows.items()}
    ys = {s: np.array([labels.index(r["label"]) for r in rs]) for s, rs in rows.items()}
    b = fit_text(texts, ys, labels)
    restored = Baseline.from_state(*b.state())
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    x = vec.fit_transform(texts["train"])
    ref = LogisticRegression(C=b.C, max_iter=2000).fit(x, ys["train"]).predict_proba(vec.transform(texts["test"]))
    assert np.allclose(restored.probs(texts["test"]), ref, atol=1e-5)


def test_audio_baseline_statistics_ignore_padding():
    """A clip's MFCC mean/std are the same computed alone or in a batch with a longer clip."""
    from attn.features.config import AudioFeatures
    from attn.pipelines.baseline import clip_features, mfcc_module

    rng = np.random.default_rng(0)
    short, long = rng.standard_normal(4000).astype(np.float32), rng.standard_normal(16000).astype(np.float32)
    mfcc = mfcc_module(AudioFeatures(sample_rate=8000, n_fft=256, hop_length=80, n_mels=40))
    together = clip_features([short, long], mfcc)
    alone = clip_features([short], mfcc)
    assert np.allclose(together[0], alone[0], atol=1e-4)
