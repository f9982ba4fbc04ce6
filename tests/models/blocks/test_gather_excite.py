"""Tests for GEBlock (Hu et al., NeurIPS 2018, Sec. 3)."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from mmc3.models.blocks import GEBlock, SEBlock
from tests._helpers import build_from_root, run_as_mmdet_plugin

EXTENTS = (2, 4, 8, 'global')


def all_configs(in_channels=4, grid_size=(5, 7)):
    """Every option branch of GEBlock, as constructor kwargs."""
    cfgs = []
    for extent in EXTENTS:
        for pooling in ('avg', 'max'):
            cfgs.append(dict(extent=extent, variant='theta-', pooling=pooling))
        for variant in ('theta', 'theta+'):
            cfg = dict(extent=extent, variant=variant)
            if extent == 'global':
                cfg['grid_size'] = grid_size
            cfgs.append(cfg)
    return cfgs


def cfg_id(cfg):
    return '-'.join(f'{k}={v}' for k, v in cfg.items())


# --------------------------------------------------------------------------
# Independent float64 restatement of the equations (numpy, explicit loops).
# --------------------------------------------------------------------------
def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def pool_reference(x: np.ndarray, e, mode: str) -> np.ndarray:
    """Window of extent ``e`` centred at ``e * i``: rows ``e*i-(e-1)`` to
    ``e*i+(e-1)`` clipped to the map; average over the positions that exist
    (padding not counted). ``e='global'``: the whole map."""
    n, c, height, width = x.shape
    if e == 'global':
        red = np.mean if mode == 'avg' else np.max
        return red(x, axis=(2, 3), keepdims=True)
    ho, wo = -(-height // e), -(-width // e)
    out = np.empty((n, c, ho, wo))
    for i in range(ho):
        for j in range(wo):
            r0, r1 = max(0, e * i - (e - 1)), min(height, e * i + e)
            c0, c1 = max(0, e * j - (e - 1)), min(width, e * j + e)
            vals = []
            for r in range(r0, r1):
                for q in range(c0, c1):
                    vals.append(x[:, :, r, q])
            vals = np.stack(vals, axis=-1)
            out[:, :, i, j] = (vals.mean(-1) if mode == 'avg' else
                               vals.max(-1))
    return out


def depthwise_reference(x: np.ndarray, w: np.ndarray, stride: int,
                        pad: int) -> np.ndarray:
    """Depthwise cross-correlation with zero padding, one filter a channel.

    ``x``: (N, C, H, W); ``w``: (C, kh, kw)."""
    n, c, height, width = x.shape
    _, kh, kw = w.shape
    ho = (height + 2 * pad - kh) // stride + 1
    wo = (width + 2 * pad - kw) // stride + 1
    out = np.zeros((n, c, ho, wo))
    for i in range(ho):
        for j in range(wo):
            for a in range(kh):
                for b in range(kw):
                    r, q = i * stride - pad + a, j * stride - pad + b
                    if 0 <= r < height and 0 <= q < width:
                        out[:, :, i, j] += w[None, :, a, b] * x[:, :, r, q]
    return out


def bn_eval_reference(x: np.ndarray, bn: nn.BatchNorm2d) -> np.ndarray:
    mean = bn.running_mean.double().numpy()[None, :, None, None]
    var = bn.running_var.double().numpy()[None, :, None, None]
    gamma = bn.weight.detach().double().numpy()[None, :, None, None]
    beta = bn.bias.detach().double().numpy()[None, :, None, None]
    return (x - mean) / np.sqrt(var + bn.eps) * gamma + beta


def nearest_reference(g: np.ndarray, height: int, width: int) -> np.ndarray:
    """Output row ``i`` reads input row ``floor(i * h / H)``."""
    n, c, h, w = g.shape
    out = np.empty((n, c, height, width))
    for i in range(height):
        for j in range(width):
            out[:, :, i, j] = g[:, :, (i * h) // height, (j * w) // width]
    return out


def ge_reference(block: GEBlock, x: np.ndarray) -> np.ndarray:
    """GE in float64 from the block's parameters (norm layers in eval)."""
    height, width = x.shape[2:]
    if block.variant == 'theta-':
        g = pool_reference(x, block.extent, block.pooling)
    else:
        g = x
        n_convs = len(block.gather_convs)
        for k, (conv, bn) in enumerate(zip(block.gather_convs,
                                           block.gather_norms)):
            w = conv.weight.detach().double().numpy()[:, 0]
            pad, stride = conv.padding[0], conv.stride[0]
            g = bn_eval_reference(depthwise_reference(g, w, stride, pad), bn)
            if k < n_convs - 1:
                g = np.maximum(g, 0.0)
    if block.variant == 'theta+':
        w1 = block.fc1.weight.detach().double().numpy()[:, :, 0, 0]
        b1 = block.fc1.bias.detach().double().numpy()
        w2 = block.fc2.weight.detach().double().numpy()[:, :, 0, 0]
        b2 = block.fc2.bias.detach().double().numpy()
        r = np.maximum(g, 0.0)
        hid = np.maximum(np.einsum('hc,nc...->nh...', w1, r)
                         + b1[None, :, None, None], 0.0)
        g = np.einsum('ch,nh...->nc...', w2, hid) + b2[None, :, None, None]
    gate = nearest_reference(g, height, width)
    return x * sigmoid(gate)


def randomise_norms(block: GEBlock) -> None:
    """Give every norm layer non-trivial statistics and affine parameters."""
    for m in block.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)


# --------------------------------------------------------------------------
# Construction and shapes
# --------------------------------------------------------------------------
@pytest.mark.parametrize('cfg', all_configs(), ids=cfg_id)
def test_every_branch_constructs_and_runs(cfg):
    block = GEBlock(4, **cfg)
    x = torch.randn(2, 4, 5, 7)
    for train in (True, False):
        block.train(train)
        out = block(x)
        assert out.shape == x.shape
        assert torch.isfinite(out).all()
    assert GEBlock._abbr_ == 'ge_block'
    assert f"variant='{cfg['variant']}'" in repr(block)


@pytest.mark.parametrize('variant, extent, n_convs', [
    ('theta', 2, 1), ('theta', 4, 2), ('theta', 8, 3), ('theta', 'global', 1),
    ('theta+', 8, 3), ('theta+', 'global', 1),
])
def test_parameter_counts(variant, extent, n_convs):
    c = 32
    kw = dict(grid_size=(3, 4)) if extent == 'global' else {}
    block = GEBlock(c, extent=extent, variant=variant, **kw)
    assert len(block.gather_convs) == n_convs == len(block.gather_norms)
    k = 3 * 4 if extent == 'global' else 9
    expected = n_convs * (c * k + 2 * c)  # depthwise weights + BN affine
    if variant == 'theta+':
        expected += 2 * c * 2 + 2 + c  # MLP 32 -> 2 -> 32 with biases
    assert sum(p.numel() for p in block.parameters()) == expected
    for conv in block.gather_convs:
        assert conv.groups == c and conv.bias is None


@pytest.mark.parametrize('pooling', ['avg', 'max'])
def test_parameter_free_has_no_parameters(pooling):
    assert list(GEBlock(8, extent=4, pooling=pooling).parameters()) == []
    assert GEBlock(8).state_dict() == {}


@pytest.mark.parametrize('hw', [(1, 1), (2, 2), (3, 5), (7, 9), (8, 13),
                                (17, 4), (16, 16)])
@pytest.mark.parametrize('extent', [2, 4, 8])
@pytest.mark.parametrize('variant', ['theta-', 'theta', 'theta+'])
def test_gather_size_is_ceil_and_output_is_input_size(hw, extent, variant):
    block = GEBlock(3, extent=extent, variant=variant)
    x = torch.randn(2, 3, *hw)
    g = block.gather(x)
    assert tuple(g.shape) == (2, 3, math.ceil(hw[0] / extent),
                              math.ceil(hw[1] / extent))
    assert block(x).shape == x.shape


@pytest.mark.parametrize('cfg', all_configs(in_channels=3, grid_size=(1, 1)),
                         ids=cfg_id)
@pytest.mark.parametrize('batch', [1, 2])
@pytest.mark.parametrize('train', [True, False])
def test_one_by_one_input(cfg, batch, train):
    block = GEBlock(3, **cfg).train(train)
    x = torch.randn(batch, 3, 1, 1)
    if train and batch == 1 and cfg['variant'] != 'theta-':
        # documented: BN in training mode needs more than one value a channel
        with pytest.raises(ValueError, match='more than 1 value per channel'):
            block(x)
        return
    out = block(x)
    assert out.shape == x.shape and torch.isfinite(out).all()


@pytest.mark.parametrize('shape', [(1, 3, 5, 7), (2, 3, 5, 7), (1, 3, 9, 2),
                                   (2, 3, 4, 11)])
@pytest.mark.parametrize('train', [True, False])
@pytest.mark.parametrize('variant', ['theta-', 'theta', 'theta+'])
@pytest.mark.parametrize('extent', [2, 4, 8])
def test_odd_and_non_square_shapes(shape, train, variant, extent):
    block = GEBlock(3, extent=extent, variant=variant).train(train)
    x = torch.randn(*shape)
    gathered = shape[0] * math.ceil(shape[2] / extent) * math.ceil(
        shape[3] / extent)
    if train and variant != 'theta-' and gathered == 1:
        # documented: BN in training mode needs more than one value a channel
        with pytest.raises(ValueError, match='more than 1 value per channel'):
            block(x)
        return
    out = block(x)
    assert out.shape == x.shape and torch.isfinite(out).all()


@pytest.mark.parametrize('shape', [(1, 3, 5, 7), (2, 3, 9, 2)])
@pytest.mark.parametrize('variant', ['theta', 'theta+'])
@pytest.mark.parametrize('train', [True, False])
def test_parametric_global_at_grid_size(shape, variant, train):
    block = GEBlock(3, variant=variant, grid_size=shape[2:]).train(train)
    x = torch.randn(*shape)
    if train and shape[0] == 1:
        # documented: a 1x1 gather of one sample has no batch statistics
        with pytest.raises(ValueError, match='more than 1 value per channel'):
            block(x)
        return
    assert block.gather(x).shape == (shape[0], 3, 1, 1)
    assert block(x).shape == x.shape


@pytest.mark.parametrize('cfg', all_configs(in_channels=3, grid_size=(5, 7)),
                         ids=cfg_id)
@pytest.mark.parametrize('train', [True, False])
def test_empty_batch(cfg, train):
    """An RoI head can see zero RoIs: empty in, empty out, finite
    gradients, and the norm layers' running statistics stay as they were."""
    block = GEBlock(3, **cfg).train(train)
    before = {k: v.clone() for k, v in block.state_dict().items()
              if 'running' in k}
    x = torch.randn(0, 3, 5, 7, requires_grad=True)
    out = block(x)
    assert out.shape == x.shape
    out.sum().backward()
    for name, p in block.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    for k, v in before.items():
        torch.testing.assert_close(block.state_dict()[k], v)


# --------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------
@pytest.mark.parametrize('cfg', all_configs(in_channels=3, grid_size=(5, 7)),
                         ids=cfg_id)
@pytest.mark.parametrize('hw', [(5, 7), (8, 3), (1, 1)])
def test_value_parity_with_float64_reference(cfg, hw):
    if 'grid_size' in cfg:
        cfg = dict(cfg, grid_size=hw)
    block = GEBlock(3, **cfg).double()
    randomise_norms(block)
    block.eval()
    x = torch.randn(2, 3, *hw, dtype=torch.float64)
    ref = ge_reference(block, x.numpy())
    np.testing.assert_allclose(block(x).detach().numpy(), ref, rtol=1e-10,
                               atol=1e-12)


def test_float32_matches_float64_reference():
    block = GEBlock(6, extent=4, variant='theta+', ratio=2)
    randomise_norms(block)
    block.eval()
    x = torch.randn(2, 6, 9, 14)
    ref = ge_reference(block, x.double().numpy())
    np.testing.assert_allclose(block(x).detach().numpy(), ref, rtol=1e-5,
                               atol=1e-6)


def test_training_mode_uses_batch_statistics():
    """In training mode the norm layer normalises with the batch's own
    statistics: the gather output of GE-theta (one conv) has zero mean and
    unit variance per channel."""
    block = GEBlock(4, extent=2, variant='theta').double().train()
    x = torch.randn(3, 4, 6, 5, dtype=torch.float64)
    g = block.gather(x)
    torch.testing.assert_close(g.mean(dim=(0, 2, 3)),
                               torch.zeros(4, dtype=torch.float64))
    torch.testing.assert_close(g.var(dim=(0, 2, 3), unbiased=False),
                               torch.ones(4, dtype=torch.float64),
                               rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------
# Reductions to known cases
# --------------------------------------------------------------------------
def test_global_avg_equals_se_without_mlp():
    ge = GEBlock(4, extent='global', variant='theta-', pooling='avg')
    x = torch.randn(2, 4, 5, 6)
    torch.testing.assert_close(
        ge(x), x * torch.sigmoid(x.mean(dim=(2, 3), keepdim=True)))

    # SE with its MLP removed; a positive squeeze makes SE's ReLU the identity
    se = SEBlock(4, ratio=1)
    with torch.no_grad():
        for fc in (se.fc1, se.fc2):
            fc.weight.copy_(torch.eye(4)[:, :, None, None])
            fc.bias.zero_()
    xp = torch.rand(2, 4, 5, 6) + 0.1
    torch.testing.assert_close(ge(xp), se(xp))


def test_global_max_is_sigmoid_of_max():
    ge = GEBlock(4, extent='global', pooling='max')
    x = torch.randn(2, 4, 3, 7)
    torch.testing.assert_close(
        ge(x), x * torch.sigmoid(x.amax(dim=(2, 3), keepdim=True)))


@pytest.mark.parametrize('extent', EXTENTS)
def test_max_and_avg_pooling_differ(extent):
    x = torch.randn(2, 4, 9, 9)
    avg = GEBlock(4, extent=extent, pooling='avg')
    mx = GEBlock(4, extent=extent, pooling='max')
    assert not torch.allclose(avg(x), mx(x))
    # the max gather is never below the average gather, and above it here
    assert (mx.gather(x) >= avg.gather(x) - 1e-6).all()
    assert (mx.gather(x) > avg.gather(x)).any()


@pytest.mark.parametrize('variant', ['theta', 'theta+'])
def test_parametric_global_gather_is_the_depthwise_conv(variant):
    """The global gather is computed as a weighted sum; it must equal the
    depthwise convolution it stands for, values and gradients."""
    block = GEBlock(5, variant=variant, grid_size=(3, 4)).double().train()
    conv, norm = block.gather_convs[0], block.gather_norms[0]
    x = torch.randn(3, 5, 3, 4, dtype=torch.float64, requires_grad=True)
    g = block.gather(x)
    ref = norm(conv(x))
    torch.testing.assert_close(g, ref)
    gw, gx = torch.autograd.grad(g.pow(3).sum(), (conv.weight, x))
    rw, rx = torch.autograd.grad(ref.pow(3).sum(), (conv.weight, x))
    torch.testing.assert_close(gw, rw)
    torch.testing.assert_close(gx, rx)


def test_parametric_global_reduces_to_global_average():
    """A depthwise kernel of constant 1/(h*w) and an identity BN turn
    GE-theta (global) into GE-theta- (global, avg)."""
    block = GEBlock(4, variant='theta', grid_size=(3, 5)).eval()
    with torch.no_grad():
        block.gather_convs[0].weight.fill_(1.0 / 15)
    bn = block.gather_norms[0]
    bn.running_var.fill_(1.0 - bn.eps)
    x = torch.randn(2, 4, 3, 5)
    torch.testing.assert_close(block(x), GEBlock(4)(x))


def test_extent_one_window_reduces_to_pointwise_gate():
    """An extent-2 parametric gather on a map with a single centre tap and an
    identity BN gates every even position by itself."""
    block = GEBlock(2, extent=2, variant='theta').eval()
    with torch.no_grad():
        block.gather_convs[0].weight.zero_()
        block.gather_convs[0].weight[:, :, 1, 1] = 1.0
    block.gather_norms[0].running_var.fill_(1.0 - block.gather_norms[0].eps)
    x = torch.randn(1, 2, 4, 6)
    out = block(x)
    torch.testing.assert_close(out[:, :, ::2, ::2],
                               x[:, :, ::2, ::2] * torch.sigmoid(
                                   x[:, :, ::2, ::2]))
    # nearest upsampling: odd positions reuse the gate of the even one before
    torch.testing.assert_close(out[:, :, 1::2, 1::2],
                               x[:, :, 1::2, 1::2] * torch.sigmoid(
                                   x[:, :, ::2, ::2]))


# --------------------------------------------------------------------------
# Size mismatch of the parametric global gather
# --------------------------------------------------------------------------
@pytest.mark.parametrize('variant', ['theta', 'theta+'])
def test_parametric_global_rejects_other_sizes(variant):
    block = GEBlock(4, variant=variant, grid_size=7)
    assert block.grid_size == (7, 7)
    with pytest.raises(ValueError, match=r"GEBlock: variant='theta\+?' with "
                       r"extent='global' was built for grid_size=\(7, 7\), "
                       r'got an input of spatial size \(14, 14\)'):
        block(torch.randn(2, 4, 14, 14))


def test_parametric_global_resize():
    block = GEBlock(4, variant='theta', grid_size=(3, 2),
                    size_mismatch='resize').eval()
    randomise_norms(block)
    x = torch.randn(2, 4, 6, 4)
    out = block(x)
    assert out.shape == x.shape
    # the input is area-resized to grid_size: 2x2 averages here
    torch.testing.assert_close(block.gather(x),
                               block.gather(nn.functional.avg_pool2d(x, 2)))
    # inputs already at grid_size are untouched
    x3 = torch.randn(2, 4, 3, 2)
    ref = ge_reference(block.double(), x3.double().numpy())
    np.testing.assert_allclose(block(x3.double()).detach().numpy(), ref,
                               rtol=1e-10)
    # smaller inputs are upsampled and still give an (H, W) output
    assert block(torch.randn(2, 4, 1, 1).double()).shape == (2, 4, 1, 1)


# --------------------------------------------------------------------------
# Gradients
# --------------------------------------------------------------------------
@pytest.mark.parametrize('cfg', all_configs(in_channels=4, grid_size=(9, 7)),
                         ids=cfg_id)
def test_gradients_reach_every_parameter_and_input(cfg):
    block = GEBlock(4, ratio=2, **cfg).train()
    # four samples: a training-mode BN over only two values a channel (the
    # global gather of a batch of 2) outputs +-1 whatever the conv weights,
    # which would leave them without gradient
    x = torch.randn(4, 4, 9, 7, requires_grad=True)
    block(x).pow(2).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    params = dict(block.named_parameters())
    if cfg['variant'] == 'theta-':
        assert params == {}
    else:
        assert params
    for name, p in params.items():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize('cfg', all_configs(in_channels=2, grid_size=(3, 2)),
                         ids=cfg_id)
def test_gradcheck(cfg):
    block = GEBlock(2, ratio=1, **cfg).double().train()
    x = torch.randn(3, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(block, (x,))


# --------------------------------------------------------------------------
# Configuration errors
# --------------------------------------------------------------------------
@pytest.mark.parametrize('kwargs, exc, match', [
    (dict(in_channels=0), ValueError, r'GEBlock: in_channels .* got 0'),
    (dict(in_channels='8'), TypeError, r"GEBlock: in_channels .*'8'"),
    (dict(in_channels=8, extent=3), ValueError,
     r"GEBlock: extent must be one of 2, 4, 8, 'global', got 3"),
    (dict(in_channels=8, extent=16), ValueError, r'GEBlock: extent .* got 16'),
    (dict(in_channels=8, extent=2.0), ValueError,
     r'GEBlock: extent .* got 2\.0'),
    (dict(in_channels=8, extent=True), ValueError,
     r'GEBlock: extent .* got True'),
    (dict(in_channels=8, extent='local'), ValueError,
     r"GEBlock: extent .* got 'local'"),
    (dict(in_channels=8, variant='plus'), ValueError,
     r"GEBlock: variant must be one of 'theta-', 'theta', 'theta\+', "
     r"got 'plus'"),
    (dict(in_channels=8, pooling='min'), ValueError,
     r"GEBlock: pooling must be one of 'avg', 'max', got 'min'"),
    (dict(in_channels=8, extent=2, variant='theta', pooling='max'),
     ValueError, r"GEBlock: pooling='max' only applies to variant='theta-'"),
    (dict(in_channels=8, variant='theta'), ValueError,
     r"GEBlock: variant='theta' with extent='global' needs grid_size"),
    (dict(in_channels=8, variant='theta+'), ValueError,
     r"GEBlock: variant='theta\+' with extent='global' needs grid_size"),
    (dict(in_channels=8, grid_size=7), ValueError,
     r'GEBlock: grid_size is only used by .* got grid_size=7'),
    (dict(in_channels=8, extent=4, variant='theta', grid_size=7), ValueError,
     r'GEBlock: grid_size is only used by .* extent=4'),
    (dict(in_channels=8, variant='theta', grid_size=(0, 7)), ValueError,
     r'GEBlock: grid_size must be a positive int or \(h, w\), got \(0, 7\)'),
    (dict(in_channels=8, variant='theta', grid_size=(7, 7, 7)), TypeError,
     r'GEBlock: grid_size must be .* got tuple \(7, 7, 7\)'),
    (dict(in_channels=8, variant='theta', grid_size='7'), TypeError,
     r"GEBlock: grid_size must be .* got str '7'"),
    (dict(in_channels=8, size_mismatch='crop'), ValueError,
     r"GEBlock: size_mismatch must be one of 'error', 'resize', "
     r"got 'crop'"),
    (dict(in_channels=8, ratio=0), ValueError, r'GEBlock: ratio .* got 0'),
    (dict(in_channels=8, extent=2, variant='theta', norm_cfg=None), TypeError,
     r"GEBlock: norm_cfg must be a dict with a 'type' key, got None"),
])
def test_configuration_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        GEBlock(**kwargs)


def test_wrong_input_raises():
    block = GEBlock(8, extent=2)
    with pytest.raises(ValueError, match=r'GEBlock: expected input of shape '
                       r'\(N, 8, H, W\), got \(2, 3, 4, 4\)'):
        block(torch.randn(2, 3, 4, 4))


def test_norm_cfg_is_honoured():
    block = GEBlock(8, extent=4, variant='theta',
                    norm_cfg=dict(type='GN', num_groups=2))
    assert all(isinstance(m, nn.GroupNorm) for m in block.gather_norms)
    # GroupNorm has no batch statistics: batch 1 and a 1x1 gather train fine
    block.train()
    x = torch.randn(1, 8, 3, 3)
    assert block(x).shape == x.shape


# --------------------------------------------------------------------------
# Persistence, registry, host
# --------------------------------------------------------------------------
@pytest.mark.parametrize('cfg', [dict(extent=4, variant='theta'),
                                 dict(extent=2, variant='theta+'),
                                 dict(variant='theta+', grid_size=(3, 4))],
                         ids=cfg_id)
def test_state_dict_round_trip(cfg):
    torch.manual_seed(1)
    a = GEBlock(8, ratio=4, **cfg)
    a.train()
    a(torch.randn(4, 8, 3, 4))  # moves the BN running statistics
    a.eval()
    torch.manual_seed(2)
    b = GEBlock(8, ratio=4, **cfg).eval()
    x = torch.randn(2, 8, 3, 4)
    assert not torch.allclose(a(x), b(x))
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)
    keys = set(a.state_dict())
    assert 'gather_convs.0.weight' in keys
    assert 'gather_norms.0.running_mean' in keys


def test_builds_by_plain_name():
    block = build_from_root(dict(type='GEBlock', in_channels=16, extent=4,
                                 variant='theta+', ratio=4))
    assert isinstance(block, GEBlock)
    assert block.hidden_channels == 4
    x = torch.randn(2, 16, 5, 5)
    assert block(x).shape == x.shape


@pytest.mark.parametrize('block_cfg', [
    dict(type='GEBlock'),
    dict(type='GEBlock', extent=2, pooling='max'),
    dict(type='GEBlock', extent=4, variant='theta'),
    dict(type='GEBlock', extent=8, variant='theta+'),
    # shrunk ResNet-50 on 64x64: stage 4 sees 64 / 32 = 2x2 maps
    dict(type='GEBlock', variant='theta', grid_size=2),
    dict(type='GEBlock', variant='theta+', grid_size=(2, 2)),
], ids=lambda c: cfg_id({k: v for k, v in c.items() if k != 'type'}) or
   'default')
def test_as_mmdet_resnet_plugin(block_cfg):
    backbone, outs = run_as_mmdet_plugin(block_cfg)
    assert all(torch.isfinite(o).all() for o in outs)
    assert backbone.layer4[0].ge_block.in_channels == 256


def test_host_norm_eval_freezes_the_gather_norm():
    """Documented host interaction: mmdet's ``norm_eval=True`` puts the
    gather's BN in eval mode, so its running statistics do not move."""
    import mmc3  # noqa: F401
    from mmdet.registry import MODELS as MMDET_MODELS
    backbone = MMDET_MODELS.build(
        dict(type='mmdet.ResNet', depth=50, base_channels=8, norm_eval=True,
             init_cfg=None,
             plugins=[dict(cfg=dict(type='GEBlock', extent=2,
                                    variant='theta'),
                           stages=(False, False, False, True),
                           position='after_conv3')]))
    backbone.train()
    norm = backbone.layer4[0].ge_block.gather_norms[0]
    assert not norm.training
    backbone(torch.randn(2, 3, 64, 64))
    torch.testing.assert_close(norm.running_mean, torch.zeros(256))
    torch.testing.assert_close(norm.running_var, torch.ones(256))
