"""Tests for SEBlock (Hu et al., CVPR 2018, Eq. 2-4)."""
import math

import numpy as np
import pytest
import torch

from mmc3.models.blocks import SEBlock
from tests._helpers import build_from_root, run_as_mmdet_plugin


def se_reference(x: np.ndarray, w1: np.ndarray, b1: np.ndarray,
                 w2: np.ndarray, b2: np.ndarray) -> np.ndarray:
    """Float64 restatement of SE, loop by loop.

    ``x``: (N, C, H, W); ``w1``: (h, C); ``b1``: (h,); ``w2``: (C, h);
    ``b2``: (C,).
    """
    n, c, height, width = x.shape
    out = np.empty_like(x)
    for i in range(n):
        z = np.zeros(c)
        for k in range(c):
            z[k] = sum(x[i, k, p, q] for p in range(height)
                       for q in range(width)) / (height * width)
        hidden = np.array([max(0.0, sum(w1[j, k] * z[k] for k in range(c))
                               + b1[j]) for j in range(w1.shape[0])])
        for k in range(c):
            s = sum(w2[k, j] * hidden[j] for j in range(w1.shape[0])) + b2[k]
            gate = 1.0 / (1.0 + math.exp(-s))
            out[i, k] = x[i, k] * gate
    return out


@pytest.mark.parametrize('in_channels, ratio, hidden', [
    (32, 16, 2), (64, 16, 4), (8, 16, 1), (1, 16, 1), (6, 4, 1), (5, 1, 5),
])
def test_construction_and_hidden_width(in_channels, ratio, hidden):
    block = SEBlock(in_channels, ratio=ratio)
    assert block.hidden_channels == hidden
    assert block.fc1.weight.shape == (hidden, in_channels, 1, 1)
    assert block.fc2.weight.shape == (in_channels, hidden, 1, 1)
    assert block.fc1.bias is not None and block.fc2.bias is not None
    n_params = sum(p.numel() for p in block.parameters())
    assert n_params == 2 * in_channels * hidden + hidden + in_channels
    assert SEBlock._abbr_ == 'se_block'
    assert 'ratio=' in repr(block)


@pytest.mark.parametrize('shape', [(1, 6, 1, 1), (2, 6, 1, 1), (1, 6, 5, 7),
                                   (2, 6, 7, 3), (2, 6, 4, 4), (1, 6, 1, 9)])
@pytest.mark.parametrize('train', [True, False])
def test_shape_and_value_parity(shape, train):
    block = SEBlock(6, ratio=2).double()
    block.train(train)
    x = torch.randn(*shape, dtype=torch.float64)
    out = block(x)
    assert out.shape == x.shape
    ref = se_reference(x.numpy(),
                       block.fc1.weight[:, :, 0, 0].detach().numpy(),
                       block.fc1.bias.detach().numpy(),
                       block.fc2.weight[:, :, 0, 0].detach().numpy(),
                       block.fc2.bias.detach().numpy())
    np.testing.assert_allclose(out.detach().numpy(), ref, rtol=1e-10,
                               atol=1e-12)


def test_empty_batch():
    """An RoI head can see zero RoIs: empty in, empty out, finite grads."""
    block = SEBlock(8, ratio=4)
    x = torch.randn(0, 8, 7, 7, requires_grad=True)
    out = block(x)
    assert out.shape == x.shape
    out.sum().backward()
    for name, p in block.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_float32_matches_float64_reference():
    block = SEBlock(16)
    x = torch.randn(2, 16, 5, 3)
    ref = se_reference(x.double().numpy(),
                       block.fc1.weight[:, :, 0, 0].double().detach().numpy(),
                       block.fc1.bias.double().detach().numpy(),
                       block.fc2.weight[:, :, 0, 0].double().detach().numpy(),
                       block.fc2.bias.double().detach().numpy())
    np.testing.assert_allclose(block(x).detach().numpy(), ref, rtol=1e-5,
                               atol=1e-6)


def identity_mlp_se(channels: int) -> SEBlock:
    """An SEBlock whose two 1x1 convs are identities with zero bias."""
    block = SEBlock(channels, ratio=1)
    with torch.no_grad():
        for fc in (block.fc1, block.fc2):
            fc.weight.copy_(torch.eye(channels)[:, :, None, None])
            fc.bias.zero_()
    return block


def test_without_mlp_is_sigmoid_of_mean():
    """SE with its MLP made the identity (and a non-negative squeeze, so
    the ReLU is the identity too) gates by ``sigmoid(mean_hw(x))``."""
    block = identity_mlp_se(4)
    x = torch.rand(2, 4, 5, 6) + 0.1
    expected = x * torch.sigmoid(x.mean(dim=(2, 3), keepdim=True))
    torch.testing.assert_close(block(x), expected)


def test_gate_is_spatially_constant_and_in_unit_interval():
    block = SEBlock(8, ratio=4)
    x = torch.randn(2, 8, 5, 7).abs() + 0.5
    gate = block(x) / x
    assert ((gate > 0) & (gate < 1)).all()
    torch.testing.assert_close(gate, gate[:, :, :1, :1].expand_as(gate))


def test_every_parameter_gets_a_finite_gradient():
    block = SEBlock(8, ratio=4)
    x = torch.randn(2, 8, 5, 3, requires_grad=True)
    block(x).pow(2).sum().backward()
    params = dict(block.named_parameters())
    assert set(params) == {'fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias'}
    for name, p in params.items():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert torch.isfinite(x.grad).all()


def test_gradcheck():
    block = SEBlock(3, ratio=2).double()
    x = torch.randn(2, 3, 3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(block, (x,))

    # gradients with respect to the weights as well
    def fn(x, w1, b1, w2, b2):
        params = {'fc1.weight': w1, 'fc1.bias': b1,
                  'fc2.weight': w2, 'fc2.bias': b2}
        return torch.func.functional_call(block, params, (x,))

    weights = tuple(p.detach().clone().requires_grad_(True)
                    for p in (block.fc1.weight, block.fc1.bias,
                              block.fc2.weight, block.fc2.bias))
    assert torch.autograd.gradcheck(fn, (x, *weights))


@pytest.mark.parametrize('kwargs, exc, match', [
    (dict(in_channels=0), ValueError, r'SEBlock: in_channels .* got 0'),
    (dict(in_channels=-3), ValueError, r'SEBlock: in_channels .* got -3'),
    (dict(in_channels=2.5), TypeError, r'SEBlock: in_channels .*2\.5'),
    (dict(in_channels=True), TypeError, r'SEBlock: in_channels .*bool'),
    (dict(in_channels=8, ratio=0), ValueError, r'SEBlock: ratio .* got 0'),
    (dict(in_channels=8, ratio='16'), TypeError, r"SEBlock: ratio .*'16'"),
])
def test_configuration_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        SEBlock(**kwargs)


def test_wrong_input_raises():
    block = SEBlock(8)
    with pytest.raises(ValueError, match=r'SEBlock: expected input of shape '
                       r'\(N, 8, H, W\), got \(2, 4, 3, 3\)'):
        block(torch.randn(2, 4, 3, 3))
    with pytest.raises(ValueError, match=r'SEBlock: expected .* got \(8, 3\)'):
        block(torch.randn(8, 3))


def test_state_dict_round_trip():
    torch.manual_seed(1)
    a = SEBlock(16, ratio=4)
    torch.manual_seed(2)
    b = SEBlock(16, ratio=4)
    x = torch.randn(2, 16, 3, 5)
    assert not torch.allclose(a(x), b(x))
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)
    assert set(a.state_dict()) == {'fc1.weight', 'fc1.bias', 'fc2.weight',
                                   'fc2.bias'}


def test_builds_by_plain_name():
    block = build_from_root(dict(type='SEBlock', in_channels=32, ratio=8))
    assert isinstance(block, SEBlock)
    assert block.hidden_channels == 4
    x = torch.randn(1, 32, 3, 3)
    assert block(x).shape == x.shape


def test_init_cfg_is_applied():
    block = SEBlock(8, ratio=2, init_cfg=dict(type='Constant', val=0.0,
                                              layer='Conv2d'))
    block.init_weights()
    x = torch.randn(2, 8, 3, 3)
    torch.testing.assert_close(block(x), 0.5 * x)


def test_as_mmdet_resnet_plugin():
    backbone, outs = run_as_mmdet_plugin(dict(type='SEBlock'))
    assert all(torch.isfinite(o).all() for o in outs)
    stage4 = backbone.layer4
    # base_channels=8: stage 4 bottlenecks output 8 * 8 * 4 = 256 channels
    assert stage4[0].se_block.in_channels == 256
    assert stage4[0].se_block.hidden_channels == 16


def test_bias_free_variant():
    """``bias=False``: no biases, ``C^2 / r * 2`` parameters, and the value
    ``x * sigmoid(W2 relu(W1 mean(x)))`` restated in float64."""
    from mmc3.models.blocks import SEBlock
    block = SEBlock(16, ratio=8, bias=False)
    assert block.fc1.bias is None and block.fc2.bias is None
    assert sum(p.numel() for p in block.parameters()) == 2 * 16 * 2
    x = torch.randn(2, 16, 5, 5)
    w1 = block.fc1.weight.double().flatten(1)
    w2 = block.fc2.weight.double().flatten(1)
    s = x.double().mean((2, 3))
    expected = x.double() * torch.sigmoid(
        torch.relu(s @ w1.T) @ w2.T)[:, :, None, None]
    assert torch.allclose(block(x).double(), expected, rtol=0, atol=1e-6)
    with pytest.raises(TypeError, match=r'SEBlock: bias must be a bool'):
        SEBlock(16, bias=1)
