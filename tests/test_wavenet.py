"""The WaveNet family: receptive field (formula and impulse response), causality, centring,
and the padding contract in every padding/norm mode (the registry tests cover the default)."""

from __future__ import annotations

import pytest
import torch

from attn.models import registry
from attn.models.base import length_mask
from helpers import assert_padded_batch_equals_single_items

# Small but with every ingredient: two strided front convs, two stacks, dilations 1, 2, 4.
SMALL = {
    "front_strides": [2, 3],
    "front_pool": False,  # the tests that vary it say so
    "front_channels": 8,
    "channels": 8,
    "skip_channels": 8,
    "layers": 3,
    "stacks": 2,
}
N = 600  # input steps: wide enough that the probed field never reaches either edge


def make(**over):
    torch.manual_seed(0)
    return registry.create("wavenet", 1, 4, **{**SMALL, **over}).eval()


def make64(**over):
    """Float64: the far ends of the field reach an output only ~1e-11 strongly (a product of
    every layer's gain), below float32 resolution, so a float32 check would call them outside."""
    return make(**over).double()


def steps(m, x):
    """Pre-pooling output (S, T') for one unpadded row x (N,)."""
    with torch.no_grad():
        h, _ = m.forward_steps(x[None, :, None], torch.tensor([len(x)]))
    return h[0]


def support(m, t):
    """Input steps whose value reaches pre-pooling output step t (nonzero gradient)."""
    x = torch.randn(N, dtype=torch.float64, requires_grad=True)
    h, _ = m.forward_steps(x[None, :, None], torch.tensor([N]))
    h[0, :, t].pow(2).sum().backward()
    idx = (x.grad.abs() > 0).nonzero().flatten()
    return int(idx.min()), int(idx.max())


def formula(strides, kernels, pool, kernel, layers, stacks):
    """RF = 1 + sum over front stages of (k_i - 1 + [pool] (s_i - 1)) * J_i
    + stacks * (kernel - 1) * (2**layers - 1) * S, with J_i the product of the strides before
    stage i and S the product of all of them."""
    rf, jump = 1, 1
    for s, k in zip(strides, kernels, strict=True):
        rf += (k - 1 + (s - 1 if pool else 0)) * jump
        jump *= s
    return rf + stacks * (kernel - 1) * (2**layers - 1) * jump


@pytest.mark.parametrize(
    "over, kernels",
    [
        ({}, [4, 6]),  # default kernels: 2 * stride
        ({"kernel_size": 2}, [4, 6]),
        ({"front_strides": [4, 4], "layers": 6}, [8, 8]),
        ({"front_strides": [1], "stacks": 1}, [1]),  # stride 1: a 1x1 projection
        ({"front_pool": True}, [4, 6]),
        ({"front_pool": True, "front_kernels": [5, 3]}, [5, 3]),
    ],
)
def test_receptive_field_equals_the_formula(over, kernels):
    m = make(**over)
    cfg = m.cfg
    assert m.receptive_field == formula(
        cfg.front_strides, kernels, cfg.front_pool, cfg.kernel_size, cfg.layers, cfg.stacks
    )
    assert str(m.receptive_field) in m.describe()["receptive_field"]


def test_default_receptive_field_is_documented():
    # pooled front (4, 4, 2), kernels (8, 8, 4): 1 + (7+3) + (7+3)*4 + (3+1)*16 = 115;
    # stacks: 2 * 2 * 31 * 32 = 3968
    m = registry.create("wavenet", 1, 10)
    assert m.receptive_field == 4083 and m.stride == 32


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize(
    "over", [{}, {"kernel_size": 2}, {"front_pool": True}, {"front_pool": True, "front_kernels": [5, 3]}]
)
def test_impulse_response_spans_exactly_the_receptive_field(causal, over):
    m = make64(causal=causal, **over)
    t = 50  # output step; stride 6 -> around input step 300, far from both edges
    lo, hi = support(m, t)
    assert hi - lo + 1 == m.receptive_field
    x = torch.randn(N, dtype=torch.float64)
    base = steps(m, x)[:, t]
    for n, inside in ((lo - 1, False), (lo, True), (hi, True), (hi + 1, False)):
        x2 = x.clone()
        x2[n] += 5.0
        changed = not torch.allclose(steps(m, x2)[:, t], base, atol=0, rtol=0)
        assert changed == inside, (n, lo, hi)


@pytest.mark.parametrize("pool", [False, True])
def test_causal_output_never_sees_the_future(pool):
    m = make64(causal=True, front_pool=pool)
    s = m.stride
    x = torch.randn(N, dtype=torch.float64)
    base = steps(m, x)
    for n in (0, 123, 300, N - 1):
        x2 = x.clone()
        x2[n:] = torch.randn(N - n, dtype=torch.float64)  # rewrite sample n and everything after it
        out = steps(m, x2)
        first = n // s  # first output step whose block holds sample n
        assert torch.equal(out[:, :first], base[:, :first]), n
        assert not torch.allclose(out[:, first], base[:, first])
    t = 50
    _, hi = support(m, t)
    assert hi == (t + 1) * s - 1  # the field ends at the last sample of the step's own block


@pytest.mark.parametrize("pool", [False, True])
def test_centred_output_sees_both_sides(pool):
    m = make64(causal=False, front_pool=pool)
    t = 50
    lo, hi = support(m, t)
    centre = t * m.stride
    assert lo < centre - m.receptive_field // 3 and hi > centre + m.receptive_field // 3
    assert abs((centre - lo) - (hi - centre)) <= 2 * m.stride  # centred up to the front's stride


@pytest.mark.parametrize(
    "over",
    [
        {"causal": True},
        {"norm": "weight"},
        {"norm": "none"},
        {"pool": "max"},
        {"front_pool": True},
        {"front_pool": True, "causal": True, "front_kernels": [3, 5]},
        {"front_pool": True, "norm": "none"},
    ],
)
def test_padded_batch_equals_single_item_in_every_mode(over):
    torch.manual_seed(1)
    lens = torch.tensor([97, 50, 13, 1])
    x = torch.randn(4, 97, 1)
    x[~length_mask(lens, 97)] = 7.0  # junk in the padding
    m = make(**over)
    assert_padded_batch_equals_single_items(m, x, lens, over)
    with torch.no_grad():
        h, hl = m.forward_steps(x, lens)
        assert (h * ~length_mask(hl, h.shape[-1])[:, None, :] == 0).all()  # padding stays zero


def test_logmel_frames_work_too():
    """Feature frames (C = n_mels) go through the same code; stride 1 keeps every frame."""
    torch.manual_seed(0)
    m = registry.create("wavenet", 40, 10, front_strides=[1], layers=4).eval()
    out, lens = m.forward_steps(torch.randn(2, 101, 40), torch.tensor([101, 60]))
    assert out.shape[-1] == 101 and lens.tolist() == [101, 60]
    assert m.receptive_field == 1 + 2 * 2 * 15


def test_uses_the_parametrized_weight_norm():
    m = make(norm="weight")
    names = [n for n, _ in m.named_parameters()]
    assert any("parametrizations.weight.original0" in n for n in names)
    assert not any(n.endswith("weight_g") for n in names)  # the deprecated torch.nn.utils.weight_norm


@pytest.mark.parametrize("t", [1, 3, 4, 5, 17, 4001])
def test_traced_pool_path_equals_max_pool(t, monkeypatch):
    """The front pool's export/compile path (pad, reshape, max) gives what ceil-mode max_pool1d
    gives eagerly."""
    from attn.models.wavenet import max_pool_ceil

    x = torch.relu(torch.randn(2, 3, t))
    eager = max_pool_ceil(x, 4)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert torch.equal(max_pool_ceil(x, 4), eager)
    assert eager.shape == (2, 3, -(-t // 4))
