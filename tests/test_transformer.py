"""The transformer encoder: the properties its papers state (Vaswani 2017, Devlin 2019, Xiong 2020)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from attn.models import registry
from attn.models.attention import AdditiveAttention, MultiHeadAttention, interpolated_positions, sinusoidal_table
from attn.models.base import length_mask


def enc(**kw):
    torch.manual_seed(0)
    params = dict(d_model=16, heads=4, layers=2, ff_dim=32, dropout=0.0) | kw
    return registry.create("transformer", 8, 3, **params).eval()


def test_sinusoidal_table_matches_the_formula():
    e = sinusoidal_table(50, 16)
    for i in (0, 1, 7, 49):
        for j in range(8):
            w = 1 / 10000 ** (2 * j / 16)
            assert e[i, 2 * j].item() == pytest.approx(math.sin(i * w), abs=1e-6)
            assert e[i, 2 * j + 1].item() == pytest.approx(math.cos(i * w), abs=1e-6)
    assert sinusoidal_table(5, 7).shape == (5, 7)  # odd widths work too


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_without_positions_the_encoder_is_permutation_equivariant(norm):
    m = enc(positions="none", pool="mean", norm=norm)
    x = torch.randn(2, 10, 8)
    lens = torch.tensor([10, 10])
    perm = torch.randperm(10)
    with torch.no_grad():
        h, _ = m.encode(x, lens)
        hp, _ = m.encode(x[:, perm], lens)
    assert torch.allclose(hp, h[:, perm], atol=1e-5)  # MHA(PX) = P MHA(X)


@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
@pytest.mark.parametrize("mode", ["sum", "concat"])
def test_with_positions_it_is_not(positions, mode):
    m = enc(positions=positions, position_mode=mode, position_dim=4, pool="mean")
    if positions == "learned":
        torch.nn.init.normal_(m.pos, std=1.0)
    x = torch.randn(1, 10, 8)
    lens = torch.tensor([10])
    perm = torch.arange(9, -1, -1)
    with torch.no_grad():
        h, _ = m.encode(x, lens)
        hp, _ = m.encode(x[:, perm], lens)
    assert not torch.allclose(hp, h[:, perm], atol=1e-3)


VARIANTS = [
    {"pool": "cls"}, {"pool": "mean"}, {"pool": "max"}, {"norm": "pre"}, {"positions": "learned"},
    {"position_mode": "concat", "position_dim": 4}, {"input_norm": True},
    {"patch": (4, 3)}, {"patch": (4, 3), "patch_stride": (2, 2), "positions": "learned"},
    {"patch": (8, 2), "input_norm": True, "pool": "mean"}, {"pool": "attention"},
    {"token_pool": "attention"}, {"pool": "attention", "token_pool": "mean", "position_scale": 0.1},
    {"token_pool": "max", "position_mode": "concat", "position_dim": 4}, {"patch": (4, 3), "token_pool": "attention"},
    {"attention": "additive"}, {"attention": "additive", "patch": (4, 3), "norm": "pre"},
    {"positions": "learned", "max_positions": 5}, {"patch": (4, 3), "positions": "learned", "max_positions": 2},
]  # fmt: skip


@pytest.mark.parametrize("kw", VARIANTS, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_padding_never_changes_a_sequences_output(kw):
    m = enc(**kw).train()
    m(torch.randn(4, 12, 8), torch.tensor([12, 9, 5, 3]))  # batch-norm statistics away from init
    m.eval()
    x = torch.randn(3, 12, 8)
    lens = torch.tensor([12, 7, 1])
    x[1, 7:] = 99.0
    x[2, 1:] = -99.0
    with torch.no_grad():
        batch = m(x, lens)
        for i, n in enumerate(lens.tolist()):
            assert torch.allclose(batch[i], m(x[i : i + 1, :n], lens[i : i + 1])[0], atol=1e-5)


@pytest.mark.parametrize("kind", [MultiHeadAttention, AdditiveAttention])
@settings(max_examples=25, deadline=None)
@given(lengths=st.lists(st.integers(1, 9), min_size=1, max_size=4), seed=st.integers(0, 2**16))
def test_attention_rows_sum_to_one_and_are_zero_on_padding(kind, lengths, seed):
    torch.manual_seed(seed)
    mha = kind(16, 4).eval()
    t = max(lengths)
    x = torch.randn(len(lengths), t, 16) * 3
    mask = length_mask(torch.tensor(lengths), t)
    with torch.no_grad():
        w = mha.weights(x, mask)
        assert w.shape == (len(lengths), 4, t, t)
        assert torch.allclose(w.sum(-1), torch.ones(len(lengths), 4, t), atol=1e-5)
        assert (w >= 0).all() and (w.masked_select(~mask[:, None, None, :]) == 0).all()
        # forward is those weights applied to the values (the dot product's fast path too).
        _, _, v = mha._qkv(x)
        explicit = mha.out((w @ v).transpose(1, 2).reshape(len(lengths), t, 16))
        assert torch.allclose(mha(x, mask), explicit, atol=1e-5)


def test_additive_scores_are_v_tanh_of_query_plus_key_per_head():
    torch.manual_seed(0)
    att = AdditiveAttention(8, 2)
    x = torch.randn(1, 3, 8)
    w_q, w_k = att.qkv.weight[:8], att.qkv.weight[8:16]
    b_q, b_k = att.qkv.bias[:8], att.qkv.bias[8:16]
    with torch.no_grad():
        got = att.scores(*att._qkv(x)[:2])  # (1, 2, 3, 3)
        for h in range(2):
            rows = slice(4 * h, 4 * h + 4)
            for i in range(3):
                for j in range(3):
                    q = w_q[rows] @ x[0, i] + b_q[rows]
                    k = w_k[rows] @ x[0, j] + b_k[rows]
                    assert got[0, h, i, j].item() == pytest.approx((att.v[h] @ torch.tanh(q + k)).item(), abs=1e-5)


def test_class_token_is_trainable_and_read_at_the_output():
    m = enc(pool="cls").train()
    x, lens = torch.randn(2, 5, 8), torch.tensor([5, 3])
    m(x, lens).sum().backward()
    assert m.cls.grad is not None and m.cls.grad.abs().sum() > 0


def test_interpolated_positions_are_linear_interpolation_of_the_table():
    torch.manual_seed(0)
    table = torch.randn(8, 6)
    lengths = torch.tensor([20, 8, 3, 9])
    got = interpolated_positions(table, lengths, 20)  # (4, 20, 6)
    for i, n in enumerate(lengths.tolist()):
        if n <= 8:  # in range: the table itself, bit for bit
            assert torch.equal(got[i, :n], table[:n])
        else:  # longer: what F.interpolate does (BERT/ViT), first and last entries kept
            ref = F.interpolate(table.T[None], size=n, mode="linear", align_corners=True)[0].T
            assert torch.allclose(got[i, :n], ref, atol=1e-6)
            assert torch.equal(got[i, 0], table[0]) and torch.allclose(got[i, n - 1], table[-1], atol=1e-6)


@pytest.mark.parametrize("mode", ["sum", "concat"])
def test_learned_positions_interpolate_on_sequences_longer_than_the_table(mode):
    """A model with an 8-entry table on 20 steps: finite, and exactly the model whose 20-entry table is
    the linear interpolation of those 8; on 8 steps or fewer, the plain table."""
    m = enc(positions="learned", max_positions=8, position_mode=mode, position_dim=4, pool="mean")
    torch.nn.init.normal_(m.pos, std=1.0)
    x = torch.randn(2, 20, 8)
    lens = torch.tensor([20, 6])
    long = enc(positions="learned", max_positions=20, position_mode=mode, position_dim=4, pool="mean")
    long.load_state_dict(m.state_dict() | {"pos": F.interpolate(m.pos.T[None], size=20, mode="linear",
                                                                align_corners=True)[0].T})  # fmt: skip
    with torch.no_grad():
        out = m(x, lens)
        assert torch.isfinite(out).all()
        assert torch.allclose(out[0], long(x[:1], lens[:1])[0], atol=1e-5)
        # In range: the table read as is, whatever the table size beyond it.
        same = enc(positions="learned", max_positions=6, position_mode=mode, position_dim=4, pool="mean")
        same.load_state_dict(m.state_dict() | {"pos": m.pos[:6]})
        assert torch.allclose(out[1], same(x[1:, :6], lens[1:])[0], atol=1e-6)


def test_learned_positions_must_cover_the_recipes_windows():
    from attn.errors import ConfigError
    from attn.pipelines.recipe.load import recipe_from_dict

    r = recipe_from_dict({
        "data": {"root": "x"},
        "features": {"kind": "text", "tokenizer": {"max_len": 300}},
        "model": {"name": "transformer", "positions": "learned", "max_positions": 256},
    })  # fmt: skip
    from attn.pipelines.recipe.build import build_model

    with pytest.raises(ConfigError, match="max_positions"):
        build_model(r, 3, vocab_size=50)


def test_config_checks_head_divisibility():
    from attn.errors import ConfigError

    with pytest.raises(ConfigError, match="divisible"):
        registry.create("transformer", 8, 3, d_model=30, heads=4)


def test_attention_pool_is_a_softmax_weighted_sum_over_valid_tokens():
    m = enc(pool="attention")
    x, lens = torch.randn(2, 6, 8), torch.tensor([6, 4])
    with torch.no_grad():
        h, mask = m.encode(x, lens)
        torch.nn.init.zeros_(m.attn_pool.weight)
        torch.nn.init.zeros_(m.attn_pool.bias)  # equal scores: the mean over valid tokens
        assert torch.allclose(m.forward_features(x, lens)[1], h[1, :4].mean(0), atol=1e-5)
        m.attn_pool.bias.fill_(3.0)
        m.attn_pool.weight.normal_()
        w = (h[1, :4] @ m.attn_pool.weight[0]).softmax(0)
        assert torch.allclose(m.forward_features(x, lens)[1], (w[:, None] * h[1, :4]).sum(0), atol=1e-5)


@pytest.mark.parametrize("how", ["mean", "max", "attention"])
def test_token_pool_reads_the_token_vectors_before_positions_and_attention(how):
    m = enc(pool="mean", token_pool=how)
    assert m.head.in_features == 16 + 16
    x, lens = torch.randn(1, 7, 8), torch.tensor([7])
    perm = torch.randperm(7)
    with torch.no_grad():
        z, zp = m.forward_features(x, lens), m.forward_features(x[:, perm], lens)
    assert torch.allclose(z[:, 16:], zp[:, 16:], atol=1e-5)  # a bag of tokens: order does not matter
    assert not torch.allclose(z[:, :16], zp[:, :16], atol=1e-3)  # the contextual part sees positions
    if how == "mean":
        assert torch.allclose(z[0, 16:], m.proj(x[0]).mean(0), atol=1e-5)


def test_position_scale_zero_is_no_positions():
    x, lens = torch.randn(2, 6, 8), torch.tensor([6, 2])
    with torch.no_grad():
        a = enc(pool="mean", position_scale=0.0)(x, lens)
        b = enc(pool="mean", positions="none")(x, lens)
        c = enc(pool="mean", position_scale=0.5)(x, lens)
    assert torch.allclose(a, b, atol=1e-6) and not torch.allclose(a, c, atol=1e-4)
