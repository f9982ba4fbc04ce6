"""Every parameterised module of every block is called in its forward, so
forward hooks, FLOP counters and pruning tools see it; SE and GE expose
their gate as a module. The fast layers equal the convolutions they
replace."""
import pytest
import torch
import torch.nn.functional as F

from mmc3.models.blocks._layers import FullMapDepthwiseConv, PointwiseConv
from tests._helpers import build_from_root

BLOCKS = {
    'se': dict(type='SEBlock', ratio=4),
    'c3': dict(type='C3Block', grid_size=(5, 6)),
    'ce': dict(type='CEBlock', group_size=8),
    'ge-': dict(type='GEBlock', extent=2),
    'ge-theta-2': dict(type='GEBlock', variant='theta', extent=2),
    'ge-theta+global': dict(type='GEBlock', variant='theta+', extent='global',
                            grid_size=(5, 6), ratio=4),
}


@pytest.mark.parametrize('name', sorted(BLOCKS))
def test_every_parameterised_module_is_called(name):
    block = build_from_root(dict(BLOCKS[name], in_channels=16))
    called = set()
    owners = {n for n, m in block.named_modules()
              if any(True for _ in m.parameters(recurse=False))}
    for n, m in block.named_modules():
        m.register_forward_hook(
            lambda mod, inp, out, n=n: called.add(n))
    block(torch.randn(2, 16, 5, 6))
    assert owners <= called, sorted(owners - called)
    assert owners or name == 'ge-'  # only the parameter-free GE has none


@pytest.mark.parametrize('name', ['se', 'ge-theta+global', 'ge-', 'ce'])
def test_gate_is_a_hookable_module(name):
    block = build_from_root(dict(BLOCKS[name], in_channels=16))
    seen = []
    block.gate.register_forward_hook(lambda m, i, o: seen.append(o))
    x = torch.rand(2, 16, 5, 6) + 0.5
    out = block(x)
    (gate, ) = seen
    assert ((gate > 0) & (gate < 1)).all()
    assert gate.shape[:2] == (2, 16)  # a gate per sample and channel
    if gate.dim() == 4 and gate.shape[2:] == (1, 1):
        torch.testing.assert_close(out, x * gate)


def test_fast_layers_equal_the_convolutions():
    x = torch.randn(3, 8, 4, 5, dtype=torch.float64)
    pointwise = PointwiseConv(8, 6).double()
    torch.testing.assert_close(
        pointwise(x), F.conv2d(x, pointwise.weight, pointwise.bias))
    full = FullMapDepthwiseConv(8, (4, 5)).double()
    torch.testing.assert_close(full(x), F.conv2d(x, full.weight, groups=8))
    # and so do their gradients, first and second order
    x.requires_grad_()
    upstream = torch.randn(3, 8, 1, 1, dtype=torch.float64)
    grads = torch.autograd.grad(full(x), [x, full.weight], upstream,
                                create_graph=True)
    ref = torch.autograd.grad(F.conv2d(x, full.weight, groups=8),
                              [x, full.weight], upstream, create_graph=True)
    for g, r in zip(grads, ref):
        torch.testing.assert_close(g, r)
    second = torch.autograd.grad(grads[1].square().sum(), x)[0]
    torch.testing.assert_close(
        second, torch.autograd.grad(ref[1].square().sum(), x)[0])
    assert isinstance(pointwise, torch.nn.Conv2d)
    assert full.weight.shape == (8, 1, 4, 5)
    with pytest.raises(ValueError, match=r'FullMapDepthwiseConv: expected '
                       r'maps of size \(4, 5\), got \(4, 4\)'):
        full(x[..., :4])


def test_global_pool_and_channel_scale_equal_the_plain_ops():
    """GlobalAvgPool and scale_channels give the values and gradients of
    AdaptiveAvgPool2d(1) and of a broadcast product (float64), keep the
    pooling type for counters, and fall back to the product for gates that
    are not per channel."""
    from mmc3.models.blocks._layers import GlobalAvgPool, scale_channels
    torch.manual_seed(0)
    x = torch.randn(3, 5, 4, 6, dtype=torch.float64, requires_grad=True)
    gate = torch.rand(3, 5, 1, 1, dtype=torch.float64, requires_grad=True)
    up = torch.randn(3, 5, 4, 6, dtype=torch.float64)
    pool = GlobalAvgPool()
    assert isinstance(pool, torch.nn.AdaptiveAvgPool2d)
    ours = scale_channels(x, gate) + pool(x) * 0.5
    plain = x * gate + F.adaptive_avg_pool2d(x, 1) * 0.5
    torch.testing.assert_close(ours, plain)
    for a, b in zip(torch.autograd.grad(ours, (x, gate), up),
                    torch.autograd.grad(plain, (x, gate), up)):
        torch.testing.assert_close(a, b)
    assert torch.autograd.gradcheck(scale_channels, (x, gate))
    spatial = torch.rand(3, 5, 4, 6, dtype=torch.float64)
    torch.testing.assert_close(scale_channels(x, spatial), x * spatial)


@pytest.mark.parametrize('shape,out_features,packed', [
    ((4, 16, 6), 6, 4),    # C3's hidden units at a 7x7 grid: 4 rows in one
    ((4, 16, 6), 1, 4),    # the channel means v
    ((3, 5, 6), 6, 1),     # 15 rows: no power of two divides them
    ((2, 8, 1), 3, 8),     # one hidden unit (the widest output sets k)
    ((2, 8, 40), 6, 1),    # wide rows are not packed
    ((64, 5), 2, 4),
])
def test_narrow_linear_equals_linear(shape, out_features, packed):
    """The packed product gives F.linear's values and gradients (float64),
    with and without bias, and packs the rows it should."""
    from mmc3.models.blocks._layers import _pack_factor, narrow_linear
    rows, width = torch.Size(shape[:-1]).numel(), shape[-1]
    assert _pack_factor(rows, max(width, out_features)) == packed
    torch.manual_seed(0)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    w = torch.randn(out_features, width, dtype=torch.float64,
                    requires_grad=True)
    b = torch.randn(out_features, dtype=torch.float64, requires_grad=True)
    for bias in (b, None):
        got = narrow_linear(x, w, bias)
        ref = F.linear(x, w, bias)
        assert got.shape == ref.shape
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
        up = torch.randn_like(ref)
        wanted = (x, w) if bias is None else (x, w, b)
        for a, c in zip(torch.autograd.grad(got, wanted, up),
                        torch.autograd.grad(ref, wanted, up)):
            torch.testing.assert_close(a, c, rtol=1e-12, atol=1e-12)
    # not contiguous: plain F.linear
    strided = torch.cat([x.detach(), x.detach()], dim=-1)[..., :width]
    assert not strided.is_contiguous()
    torch.testing.assert_close(narrow_linear(strided, w, b),
                               F.linear(strided, w, b))
