"""train.class_weights: balanced lifts the recall of a rare class that plain cross-entropy
learns to ignore (a generated imbalanced set)."""

from __future__ import annotations

import csv

import numpy as np

import attn

FILLER = ["the", "a", "on", "of", "new", "big", "old", "red", "and", "then", "we", "it"]


def _imbalanced(tmp_path, seed=0):
    """Label 'rare' (1 in 20 training texts) carries the cue word 'storm' in 60% of its texts;
    'common' in 5%. Given the cue, a 'rare' text is 12x as likely per class but the class is 19x
    smaller, so plain cross-entropy learns to answer 'common' for every text, while equal class
    weights make the cue decide."""
    rng = np.random.default_rng(seed)

    def text(p_cue):
        toks = list(rng.choice(FILLER, 6))
        if rng.random() < p_cue:
            toks[rng.integers(6)] = "storm"
        return " ".join(toks)

    paths = {}
    for split, n_common, n_rare in (("train", 380, 20), ("val", 40, 40), ("test", 60, 60)):
        rows = [{"text": text(0.05), "label": "common"} for _ in range(n_common)]
        rows += [{"text": text(0.6), "label": "rare"} for _ in range(n_rare)]
        paths[split] = tmp_path / f"{split}.csv"
        with paths[split].open("w", newline="") as f:
            w = csv.DictWriter(f, ["text", "label"])
            w.writeheader()
            w.writerows(rows)
    return {k: str(v) for k, v in paths.items()}


def _without_and_with_weights(tmp_path, embed_dim: int, model: dict, train: dict) -> dict:
    """The test metrics of the same recipe on `_imbalanced` data, trained with class_weights none
    and balanced: {"none": metrics, "balanced": metrics}."""
    data, out = _imbalanced(tmp_path), {}
    features = {"kind": "text", "tokenizer": {"level": "word", "max_len": 8}, "embed_dim": embed_dim}
    for weights in ("none", "balanced"):
        recipe = {"data": data, "features": features, "model": model, "train": {**train, "class_weights": weights}}
        out[weights] = attn.train(recipe, out=str(tmp_path / f"run-{weights}"), device="cpu").metrics
    return out


def test_balanced_class_weights_raise_minority_recall(tmp_path):
    metrics = _without_and_with_weights(
        tmp_path, 16, {"name": "transformer", "d_model": 16, "heads": 2, "layers": 1, "ff_dim": 32, "pool": "mean"},
        {"epochs": 8, "batch_size": 16, "lr": 0.01, "patience": 0, "baseline": False})  # fmt: skip
    recall = {w: m["per_class"]["rare"]["recall"] for w, m in metrics.items()}
    assert recall["none"] < 0.25  # answers 'common' (almost) always
    assert recall["balanced"] >= recall["none"] + 0.25  # the cue now decides: ~60% of the rare texts


def test_balanced_class_weights_reach_the_baseline_the_blend_mixes_in(tmp_path):
    """On SST-2 at 90/10 the TF-IDF baseline, fitted without the weights, named the majority for
    every text, and the blend carried that into the saved model whatever the network learnt (8 of
    8 runs with balanced weights and the macro-F1 monitor: minority recall 0; sweep of stop 39)."""
    metrics = _without_and_with_weights(tmp_path, 8, {"name": "cnn1d", "filters": 4},
                                        {"epochs": 1, "batch_size": 32, "refit": False})  # fmt: skip
    f1 = {w: m["baseline"]["macro_f1"] for w, m in metrics.items()}  # test: 60 texts of each class
    assert f1["none"] < 0.6  # the unweighted baseline answers 'common' for most 'rare' texts (0.52 here)
    assert f1["balanced"] >= f1["none"] + 0.1  # weighted, the cue decides (0.72)


def _resolved(data: dict, **data_keys):
    from attn.pipelines.data.auto import resolve_auto
    from attn.pipelines.data.prepared import prepare_data
    from attn.pipelines.recipe.load import recipe_from_dict

    r = recipe_from_dict({"data": {**data, **data_keys}, "features": {"kind": "text", "tokenizer": {"max_len": 8}},
                          "model": {"name": "cnn1d", "filters": 4},
                          "train": {"class_weights": "auto", "monitor": "auto"}})  # fmt: skip
    resolved, _, chosen = resolve_auto(r, prepare_data(r))
    return resolved.train, chosen


def test_auto_weights_and_monitor_follow_the_class_sizes(tmp_path):
    """`auto` (the general recipes): imbalanced training classes get balanced weights and the
    macro-F1 monitor, as accuracy and the loss reward naming the majority; equal ones keep none and
    the monitor of their validation size; multi-label data keeps none."""
    t, chosen = _resolved(_imbalanced(tmp_path))
    assert (t.class_weights, t.monitor) == ("balanced", "val_macro_f1")
    assert "'common' has 380 examples, 'rare' 20: 19x" in chosen["train.class_weights"]["why"]
    assert chosen["train.monitor"]["why"].startswith(chosen["train.class_weights"]["why"])

    even = tmp_path / "even.csv"  # 2 to 1: uneven, but not imbalanced
    with even.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows([[f"a b c {i}", "x" if i % 3 else "y"] for i in range(300)])
    t, chosen = _resolved({"train": str(even)}, val_fraction=0.2, test_fraction=0.0)
    assert (t.class_weights, t.monitor) == ("none", "val_loss")  # 60 validation texts: the smoother loss
    assert chosen["train.class_weights"]["why"] == "the training classes are about equal in size"

    tags = tmp_path / "tags.csv"  # multi-label: one class in most rows, another in few
    with tags.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows([[f"a b {i}", "x;y" if i % 10 == 0 else "x"] for i in range(200)])
    t, _ = _resolved({"train": str(tags)}, multi_label=True, val_fraction=0.2, test_fraction=0.0)
    assert (t.class_weights, t.monitor) == ("none", "val_loss")
