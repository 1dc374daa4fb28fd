"""Training cases: attn's trainer vs a minimal hand-written loop, and TREC vs TF-IDF + LR."""

from __future__ import annotations

import time

import numpy as np

from .common import case, data_root, load_resolved

FAMILIES = {
    # name: (recipe, overrides) -- the shipped recipes, so the numbers describe what users run
    # (augmentation is the trainer's, not the model's, and the reference loop has none: off, so
    # both sides run the same steps)
    "cnn": ("recipes/digits.yaml", ["train.augment.mixup=0"]),
    "transformer (frames)": (
        "recipes/digits_transformer.yaml",
        ["train.augment.freq_mask=0", "train.augment.time_mask=0", "train.augment.gain_db=0"],
    ),
    "wavenet (raw audio)": ("recipes/digits_wavenet.yaml", ["train.augment.gain_db=0"]),
    "transformer (text)": ("recipes/trec_transformer.yaml", []),
    "cnn1d (text)": ("recipes/trec.yaml", []),
}


def _sets(recipe, quick):
    from attn.pipelines.data.prepared import PreparedData, load_datasets
    from attn.pipelines.data.sources import collect_labels, list_items, split_items

    splits = split_items(list_items(recipe.data, recipe.modality), recipe.data)
    labels = collect_labels(splits)
    n = 256 if quick else 1024
    splits = {"train": splits["train"][:n], "val": [], "test": []}
    data = load_datasets(recipe, PreparedData(splits, tuple(labels)))
    return data.train, labels, data.tokenizer


def trainer_vs_loop(quick: bool = False) -> list[dict]:
    import os
    from pathlib import Path

    import torch
    import torch.nn.functional as F

    from attn.pipelines.recipe.build import build_model
    from attn.pipelines.train.trainer import Trainer

    root = data_root()
    if root is None:
        return [{"case": "trainer throughput", "skipped": "shared data not found"}]
    os.environ.setdefault("ATTN_DATA", str(root))
    rows = []
    for family, (path, sets_) in FAMILIES.items():
        if not Path(path).exists():
            continue
        r = load_resolved(path, sets_ + ["train.epochs=1"])
        ws, labels, tok = _sets(r, quick)
        vocab = None if tok is None else tok.vocab_size
        bs = r.train.batch_size

        torch.manual_seed(0)
        trainer = Trainer(build_model(r, len(labels), vocab), r.train, ws, None, labels, torch.device("cpu"))

        # The reference: the same model, batches and training semantics (label smoothing,
        # gradient clipping, weight averaging when the recipe asks for them) in the plainest loop.
        torch.manual_seed(0)
        model = build_model(r, len(labels), vocab).train()
        opt = torch.optim.AdamW(model.parameters(), lr=r.train.lr, fused=True)
        params = list(model.parameters())
        avg = [p.detach().clone() for p in params] if r.train.ema else None
        gen = np.random.default_rng([r.train.seed, 0, 0x5EED])
        windows = ws.random_windows(gen) if r.train.windows == "random" else ws.all_windows
        batches = list(ws.batches(windows, bs, gen.permutation(len(windows))))

        def plain():
            for b in batches:
                loss = F.cross_entropy(model(b.x, b.lengths), b.y, label_smoothing=r.train.label_smoothing)
                opt.zero_grad()
                loss.backward()
                if r.train.grad_clip:
                    torch.nn.utils.clip_grad_norm_(params, r.train.grad_clip)
                opt.step()
                if avg is not None:
                    torch._foreach_lerp_(avg, [p.detach() for p in params], 1 - r.train.ema)

        # Interleaved rounds, so drift in the machine's load hits both sides alike.
        trainer.train_epoch(0)
        plain()
        t_attn_runs, t_plain_runs = [], []
        for _ in range(2 if quick else 3):
            t0 = time.perf_counter()
            trainer.train_epoch(0)
            t_attn_runs.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            plain()
            t_plain_runs.append(time.perf_counter() - t0)
        t_attn, t_plain = float(np.median(t_attn_runs)), float(np.median(t_plain_runs))
        n = len(windows)
        rows.append(case(f"training throughput: {family}", f"{path}, {n} examples, batch {bs}",
                         "hand-written loop: same model, batches, clipping, smoothing, EMA", n / t_attn,
                         n / t_plain, "samples/s", "≥ 0.95x", t_plain / t_attn >= 0.95))  # fmt: skip
    return rows


def trec_vs_tfidf(quick: bool = False) -> list[dict]:
    import json
    import os
    import subprocess
    import tempfile

    from .common import attn_cmd

    root = data_root()
    if root is None:
        return [{"case": "TREC", "skipped": "shared data not found"}]
    import csv

    def read(name):
        with open(root / "trec" / name, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        return [r["text"] for r in rows], [r["label"] for r in rows]

    xtr, ytr = read("train.csv")
    xte, yte = read("test.csv")
    try:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        return [{"case": "TREC", "skipped": "scikit-learn not installed (pip install -e '.[bench]')"}]
    t0 = time.perf_counter()
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    clf = LogisticRegression(C=10, max_iter=2000).fit(vec.fit_transform(xtr), ytr)
    acc_lr = float(np.mean(clf.predict(vec.transform(xte)) == np.array(yte)))
    t_lr = time.perf_counter() - t0

    out = tempfile.mkdtemp()
    extra = ["--set", "train.epochs=3"] if quick else []
    env = dict(os.environ, ATTN_DATA=str(root))
    t0 = time.perf_counter()
    r = subprocess.run([*attn_cmd(), "train", "recipes/trec.yaml", "--out", f"{out}/trec", "--quiet", "--format",
                        "json", *extra], capture_output=True, text=True, env=env)  # fmt: skip
    t_attn = time.perf_counter() - t0
    if r.returncode != 0:
        return [{"case": "TREC", "error": r.stderr[-300:]}]
    acc = json.loads(r.stdout)["test_accuracy"]
    return [case("TREC test accuracy: recipes/trec.yaml vs TF-IDF + logistic regression", "TREC 5452 train / 500 test",
                 "TF-IDF (1-2 grams) + LR, same run", acc, acc_lr, "accuracy", "beat it", acc > acc_lr,
                 attn_train_seconds=round(t_attn, 1), tfidf_seconds=round(t_lr, 2))]  # fmt: skip
