"""Generated from the registry: every model family honours the backbone contract."""

from __future__ import annotations

import pytest
import torch

from attn.models import registry
from attn.models.base import MaskedBatchNorm, length_mask
from helpers import assert_padded_batch_equals_single_items

FAMILIES = registry.names()
IN_DIM, K = 24, 5
SMALL = {  # a small instance of each family (keeps the generated tests fast)
    "cnn": {"channels": [4, 8]},
    "transformer": {"d_model": 16, "heads": 2, "layers": 2, "ff_dim": 32, "pool": "cls"},
    "wavenet": {"front_strides": [2, 2], "front_channels": 8, "channels": 8, "skip_channels": 8, "layers": 3},
}
# Options that change what the forward pass computes get the contract tests too: additive
# attention, and a learned position table shorter than the batch's rows (interpolated per row).
VARIANTS = {
    "transformer-additive": ("transformer", {**SMALL["transformer"], "attention": "additive"}),
    "transformer-learned": ("transformer", {**SMALL["transformer"], "positions": "learned", "max_positions": 16}),
}
CASES = FAMILIES + list(VARIANTS)


def small(case: str):
    name, params = VARIANTS.get(case, (case, SMALL.get(case, {})))
    torch.manual_seed(0)
    return registry.create(name, IN_DIM, K, **params)


def batch(lengths=(37, 20, 5, 1)):
    torch.manual_seed(1)
    t = max(lengths)
    x = torch.randn(len(lengths), t, IN_DIM)
    lens = torch.tensor(lengths)
    x = x * length_mask(lens, t)[:, :, None] + 7.0 * ~length_mask(lens, t)[:, :, None]  # junk in padding
    return x, lens


@pytest.mark.parametrize("name", CASES)
def test_forward_shape_and_finite(name):
    m = small(name).eval()
    x, lens = batch()
    out = m(x, lens)
    assert out.shape == (4, K) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", CASES)
def test_backward_reaches_every_parameter(name):
    m = small(name).train()
    x, lens = batch()
    m(x, lens).logsumexp(-1).sum().backward()
    for pname, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("name", CASES)
def test_padded_batch_equals_single_item(name):
    x, lens = batch()
    assert_padded_batch_equals_single_items(small(name), x, lens, name)


@pytest.mark.parametrize("name", CASES)
def test_padding_content_never_matters_in_training_mode(name):
    """Batch statistics come from valid steps only: junk in the padding changes nothing."""
    m = small(name).train()
    x, lens = batch()
    torch.manual_seed(5)
    a = m(x, lens)
    x2 = x.clone()
    x2[~length_mask(lens, x.shape[1])] = -123.0
    torch.manual_seed(5)
    b = m(x2, lens)
    assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("name", FAMILIES)
def test_unknown_hyperparameter_is_rejected(name):
    from attn.errors import ConfigError

    with pytest.raises(ConfigError, match="did you mean|unknown key"):
        registry.create(name, IN_DIM, K, not_a_param=1)


def test_masked_batch_norm_statistics_ignore_padding():
    bn = MaskedBatchNorm(3, momentum=1.0)
    x = torch.randn(2, 3, 10)
    lens = torch.tensor([10, 4])
    x[1, :, 4:] = 1e6
    bn.train()(x, length_mask(lens, 10))
    valid = torch.cat([x[0], x[1, :, :4]], dim=1)
    assert torch.allclose(bn.running_mean, valid.mean(1), atol=1e-4)
    assert torch.allclose(bn.running_var, valid.var(1, unbiased=True), atol=1e-4)


@pytest.mark.parametrize("name", ["cnn", "cnn1d", "wavenet", "transformer"])
def test_a_batch_of_one_one_frame_clip_trains(name):
    """The last batch of an epoch can hold one clip of one frame (a clip of a few ms): batch norm
    has one value per channel there, which the fused kernel refused (an internal error ended the
    run); the running statistics normalise it, and training goes on."""
    model = registry.create(name, IN_DIM, K).train()
    x, lens = torch.randn(1, 1, IN_DIM), torch.tensor([1])
    loss = model(x, lens).logsumexp(-1).sum()
    loss.backward()
    assert torch.isfinite(loss)


def test_fast_cnn_pool_equals_ceil_mode_max_pool():
    from attn.models.cnn import max_pool_2x2

    for shape in [(2, 3, 5, 7), (1, 1, 1, 1), (2, 4, 8, 9), (3, 2, 40, 101)]:
        x = torch.relu(torch.randn(shape))
        assert torch.equal(max_pool_2x2(x), torch.nn.MaxPool2d(2, ceil_mode=True)(x)), shape
