"""train.augment.mix_union: multi-label examples summed with another at a comparable level take
the union of both label sets (a recording of a dog and rain holds both)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_multilabel import _train, audio_recipe

from attn.errors import ConfigError
from attn.pipelines.data.batching import WindowSet
from attn.pipelines.recipe.config import TrainConfig
from attn.pipelines.train.trainer import Trainer

Y = np.array([[1, 0, 0], [0, 1, 1], [1, 1, 0], [0, 0, 1]], dtype=np.float32)


def _trainer(y: np.ndarray = Y, **augment) -> Trainer:
    ws = WindowSet([np.zeros(8, np.float32)] * len(y), y, 8, 8)
    cfg = TrainConfig(augment=augment)
    return Trainer(torch.nn.Linear(1, 3), cfg, ws, None, ["a", "b", "c"], torch.device("cpu"))


def test_unioned_rows_are_trained_on_both_label_sets_the_others_on_mixed_targets():
    tr = _trainer(mix_union=0.5, mixup=0.3)
    y, logits = torch.from_numpy(Y), torch.randn(4, 3)
    lam, perm = torch.tensor([0.4, 0.5, 1.0, 0.2]), torch.tensor([1, 0, 3, 2])
    union = torch.tensor([True, False, False, True])
    want = lam[:, None] * y + (1 - lam[:, None]) * y[perm]
    want[0] = torch.tensor([1.0, 1.0, 1.0])  # {a} + {b, c}
    want[3] = torch.tensor([1.0, 1.0, 1.0])  # {c} + {a, b}
    got = tr._loss(logits, y, (lam, perm), union)
    assert got.item() == pytest.approx(F.binary_cross_entropy_with_logits(logits, want).item(), rel=1e-6)


def test_unioned_pairs_are_mixed_at_0_to_minus_6_db_each_and_other_rows_stay_whole():
    torch.manual_seed(0)
    y = np.eye(3, dtype=np.float32)[np.arange(256) % 3]
    (lam, perm), union = _trainer(y, mix_union=1.0)._mixup(256)
    assert union.all() and lam.min() >= 1 / 3 - 1e-6 and lam.max() <= 2 / 3 + 1e-6
    assert lam.std() > 0.05  # levels vary, both sources stay audible
    (lam, perm), union = _trainer(y, mix_union=0.5)._mixup(256)
    assert 0.35 < union.float().mean() < 0.65
    alone = ~union
    assert (lam[alone] == 1).all() and (perm[alone] == torch.arange(256)[alone]).all()
    mix, union = _trainer(y, mixup=0.3)._mixup(256)  # mixup alone: as before, no union
    assert union is None and mix is not None
    assert _trainer(y)._mixup(256) == (None, None)


def test_mix_union_on_single_label_data_is_refused():
    ws = WindowSet([np.zeros(8, np.float32)] * 4, np.array([0, 1, 2, 0]), 8, 8)
    with pytest.raises(ConfigError, match="mix_union is for multi-label data"):
        Trainer(torch.nn.Linear(1, 3), TrainConfig(augment={"mix_union": 0.5}), ws, None, ["a", "b", "c"],
                torch.device("cpu"))  # fmt: skip


def test_a_tagger_trained_with_mix_union_learns(tmp_path):
    res = _train(audio_recipe(tmp_path, epochs=12, extra=", augment: {mix_union: 0.5}"), tmp_path / "run")
    m = json.loads((res.run_dir / "metrics.json").read_text())
    assert m["macro_map"] > 0.9, m
