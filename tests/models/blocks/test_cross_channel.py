"""Tests for C3Block and its dense message passing (Yang et al., NeurIPS
2019, Sec. 3: encoder, message passing, decoder, residual)."""
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmc3.models.blocks import C3Block
from mmc3.models.blocks.message import dense_message
from tests._helpers import build_from_root, float32_sum_bound, \
    run_as_mmdet_plugin

# --------------------------------------------------------------------------
# Independent float64 restatement of the equations (loops on purpose)
# --------------------------------------------------------------------------


def _nearest_resize(m: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Nearest resize of one (H, W) map: source index floor(dst * in / out).

    Only used with size ratios that are exact in binary (0.5, 1.25, 2, ...).
    """
    in_h, in_w = m.shape
    out = np.empty((out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            out[i, j] = m[min(in_h - 1, (i * in_h) // out_h),
                          min(in_w - 1, (j * in_w) // out_w)]
    return out


def _mlp(vec: np.ndarray, w_in, b_in, w_out, b_out) -> np.ndarray:
    """f_out(ReLU(f_in(vec))) written as sums."""
    hidden = [max(0.0, sum(w_in[h, p] * vec[p] for p in range(len(vec)))
                  + b_in[h]) for h in range(w_in.shape[0])]
    return np.array([sum(w_out[p, h] * hidden[h] for h in range(len(hidden)))
                     + b_out[p] for p in range(w_out.shape[0])])


def _message_reference(z: np.ndarray, exclude_self: bool,
                       group_size) -> np.ndarray:
    """zbar_i = sum_j softmax_j(-(v_i - v_j)^2) z_j, one sample, (C, P)."""
    c, _ = z.shape
    gs = c if group_size is None else group_size
    v = [float(np.mean(z[i])) for i in range(c)]
    zbar = np.zeros_like(z)
    for i in range(c):
        start = (i // gs) * gs
        partners = [j for j in range(start, start + gs)
                    if not (exclude_self and j == i)]
        if not partners:
            continue  # nobody to talk to: zero message
        weights = [math.exp(-(v[i] - v[j])**2) for j in partners]
        total = sum(weights)
        for wgt, j in zip(weights, partners):
            zbar[i] += wgt / total * z[j]
    return zbar


def c3_reference(block: C3Block, x: torch.Tensor) -> np.ndarray:
    """The block's output restated from the paper's equations in float64."""
    sd = {k: v.detach().double().numpy()
          for k, v in block.state_dict().items()}
    xn = x.detach().double().numpy()
    n, c, height, width = xn.shape
    gh, gw = block.grid_size if block.grid_size else (height, width)
    out = np.empty_like(xn)
    for s in range(n):
        maps = [xn[s, i] if (gh, gw) == (height, width) else
                _nearest_resize(xn[s, i], gh, gw) for i in range(c)]
        flat = np.stack([m.reshape(-1) for m in maps])  # (C, P)
        if block.encode_decode:
            z = np.stack([_mlp(flat[i], sd['encoder.fc_in.weight'],
                               sd['encoder.fc_in.bias'],
                               sd['encoder.fc_out.weight'],
                               sd['encoder.fc_out.bias']) for i in range(c)])
        else:
            z = flat
        zbar = (_message_reference(z, block.exclude_self, block.group_size)
                if block.message_passing else z)
        if block.encode_decode:
            xbar = np.stack([_mlp(zbar[i], sd['decoder.fc_in.weight'],
                                  sd['decoder.fc_in.bias'],
                                  sd['decoder.fc_out.weight'],
                                  sd['decoder.fc_out.bias'])
                             for i in range(c)])
        else:
            xbar = zbar
        for i in range(c):
            res = xbar[i].reshape(gh, gw)
            if (gh, gw) != (height, width):
                res = _nearest_resize(res, height, width)
            out[s, i] = xn[s, i] + res
            if block.post_act:
                out[s, i] = np.maximum(out[s, i], 0.0)
    return out


def _param_formula(p: int, k: int) -> int:
    return 2 * (2 * p * (p // k) + p // k + p)


# --------------------------------------------------------------------------
# Construction, parameter count, options
# --------------------------------------------------------------------------


@pytest.mark.parametrize('grid, k', [((16, 16), 8), ((8, 8), 8), ((7, 7), 8),
                                     ((4, 6), 4), ((14, 14), 8)])
def test_parameter_count_matches_formula(grid, k):
    p = grid[0] * grid[1]
    block = C3Block(16, grid_size=grid, ratio=k)
    assert sum(t.numel() for t in block.parameters()) == _param_formula(p, k)
    # independent of C
    other = C3Block(3, grid_size=grid, ratio=k)
    assert sum(t.numel() for t in other.parameters()) == _param_formula(p, k)


def test_cifar_placement_adds_68880_parameters():
    blocks = [C3Block(16, grid_size=16), C3Block(16, grid_size=(16, 16)),
              C3Block(32, grid_size=8)]
    counts = [sum(t.numel() for t in b.parameters()) for b in blocks]
    assert counts == [_param_formula(256, 8)] * 2 + [_param_formula(64, 8)]
    assert counts == [33344, 33344, 2192]
    assert sum(counts) == 68880


def test_layers_and_hidden_width_clamped():
    block = C3Block(4, grid_size=(2, 3), ratio=8)  # P = 6 < k
    assert block.encoder.fc_in.weight.shape == (1, 6)
    assert block.encoder.fc_out.weight.shape == (6, 1)
    assert block.decoder.fc_in.weight.shape == (1, 6)
    assert block.decoder.fc_in.weight is not block.encoder.fc_in.weight
    assert C3Block(4, grid_size=4, ratio=3).encoder.fc_in.out_features == 5
    assert C3Block._abbr_ == 'c3_block'
    assert 'grid_size=(2, 3)' in repr(block)


def test_no_parameters_without_encoder_decoder():
    block = C3Block(4, grid_size=None, encode_decode=False)
    assert len(list(block.parameters())) == 0
    assert block.grid_size is None


OPTIONS = list(itertools.product(
    [True, False],  # exclude_self
    [None, 2],  # group_size
    ['nearest', 'area', 'bilinear'],  # resize_mode
    [False, True],  # post_act
    [True, False],  # message_passing
    [True, False],  # encode_decode
))


@pytest.mark.parametrize(
    'exclude_self, group_size, resize_mode, post_act, mp, ed', OPTIONS)
def test_every_option_branch_runs(exclude_self, group_size, resize_mode,
                                  post_act, mp, ed):
    block = C3Block(4, grid_size=(3, 4), ratio=2,
                    exclude_self=exclude_self, group_size=group_size,
                    resize_mode=resize_mode, post_act=post_act,
                    message_passing=mp, encode_decode=ed)
    for hw in [(3, 4), (5, 7)]:
        x = torch.randn(2, 4, *hw)
        out = block(x)
        assert out.shape == x.shape
        assert torch.isfinite(out).all()
        if post_act:
            assert (out >= 0).all()


@pytest.mark.parametrize('hw', [(7, 5), (3, 8), (1, 1), (4, 4), (9, 9)])
@pytest.mark.parametrize('batch', [1, 2])
@pytest.mark.parametrize('train', [True, False])
def test_shapes_odd_nonsquare_1x1_batch_mode(hw, batch, train):
    block = C3Block(6, grid_size=4, ratio=4)
    block.train(train)
    x = torch.randn(batch, 6, *hw)
    out = block(x)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()
    # the residual really changes the input
    assert not torch.equal(out, x)


@pytest.mark.parametrize('hw', [(7, 7), (5, 9)])
def test_empty_batch_runs(hw):
    """An RoI head can see zero RoIs."""
    block = C3Block(4, grid_size=7, group_size=2)
    x = torch.randn(0, 4, *hw, requires_grad=True)
    out = block(x)
    assert out.shape == x.shape
    out.sum().backward()
    assert all(p.grad is not None for p in block.parameters())


# --------------------------------------------------------------------------
# Value parity with the float64 restatement
# --------------------------------------------------------------------------

PARITY = [
    # (C, grid, k, input hw, exclude_self, group_size, post_act, mp, ed)
    (5, (3, 4), 2, (3, 4), True, None, False, True, True),  # no resize
    (5, (3, 4), 2, (3, 4), False, None, False, True, True),
    (6, (2, 2), 1, (4, 4), True, 3, False, True, True),  # downsample x2
    (6, (4, 6), 4, (2, 3), False, 2, True, True, True),  # upsample x2
    (4, (4, 4), 2, (5, 5), True, None, False, True, True),  # scale 1.25
    (4, (4, 4), 2, (7, 5), True, 2, True, True, True),  # odd, non-square
    (3, (3, 3), 2, (1, 1), True, None, False, True, True),  # 1x1 input
    (4, (3, 3), 2, (3, 3), True, None, False, False, True),  # enc-dec only
    (4, None, 8, (3, 5), True, None, False, True, False),  # message only
    (4, None, 8, (3, 5), False, 2, True, True, False),
    (1, (2, 2), 2, (2, 2), True, None, False, True, True),  # C = 1
    (1, (2, 2), 2, (2, 2), False, None, False, True, True),
]


@pytest.mark.parametrize('c, grid, k, hw, exclude_self, group_size, post_act,'
                         ' mp, ed', PARITY)
def test_value_parity_with_float64_reference(c, grid, k, hw, exclude_self,
                                             group_size, post_act, mp, ed):
    block = C3Block(c, grid_size=grid, ratio=k, exclude_self=exclude_self,
                    group_size=group_size, post_act=post_act,
                    message_passing=mp, encode_decode=ed).double()
    # spread the channel means so the affinities are far from uniform
    x = torch.randn(2, c, *hw, dtype=torch.float64)
    x = x + torch.linspace(-1.0, 1.0, c, dtype=torch.float64).view(1, c, 1, 1)
    out = block(x)
    ref = c3_reference(block, x)
    np.testing.assert_allclose(out.detach().numpy(), ref, rtol=1e-10,
                               atol=1e-10)


def test_float32_matches_reference():
    block = C3Block(8, grid_size=(4, 4), ratio=4, group_size=4)
    x = torch.randn(2, 8, 6, 6)
    ref = c3_reference(block, x)
    np.testing.assert_allclose(block(x).detach().numpy(), ref, rtol=1e-4,
                               atol=1e-5)


# --------------------------------------------------------------------------
# Reductions to known cases
# --------------------------------------------------------------------------


def test_without_message_passing_is_decoder_of_encoder_plus_x():
    block = C3Block(5, grid_size=(3, 4), message_passing=False)
    x = torch.randn(2, 5, 3, 4)
    expected = block.decoder(block.encoder(x.flatten(2))).view_as(x) + x
    torch.testing.assert_close(block(x), expected)


def test_without_encode_decode_is_x_plus_message_of_x():
    block = C3Block(6, grid_size=None, encode_decode=False, group_size=3)
    x = torch.randn(2, 6, 3, 5)
    expected = x + dense_message(x.flatten(2), True, 3).view_as(x)
    torch.testing.assert_close(block(x), expected)
    # with a grid it resizes, runs the message on the grid, and resizes back
    gridded = C3Block(6, grid_size=(6, 10), encode_decode=False)
    up = F.interpolate(x, size=(6, 10), mode='nearest')
    msg = dense_message(up.flatten(2), True, None).view_as(up)
    torch.testing.assert_close(
        gridded(x), x + F.interpolate(msg, size=(3, 5), mode='nearest'))


def test_both_ablations_off_doubles_the_input():
    block = C3Block(3, grid_size=None, message_passing=False,
                    encode_decode=False)
    x = torch.randn(2, 3, 4, 5)
    torch.testing.assert_close(block(x), 2 * x)


def test_message_reveals_affinities():
    """With z_j = alpha_j * e_j (P = C) the message entry zbar[i, j] equals
    a_ij * alpha_j, so the attention matrix can be read off exactly."""
    c = 5
    alpha = torch.tensor([0.3, -1.0, 2.0, 0.5, 1.7], dtype=torch.float64)
    z = torch.diag(alpha).unsqueeze(0)  # (1, C, P=C)
    v = alpha / c
    dist = -(v.view(-1, 1) - v.view(1, -1))**2
    for exclude_self in (True, False):
        attn = dense_message(z, exclude_self, None)[0] / alpha.view(1, -1)
        expected = dist.clone()
        if exclude_self:
            expected.fill_diagonal_(float('-inf'))
        expected = torch.softmax(expected, dim=1)
        torch.testing.assert_close(attn, expected)
        torch.testing.assert_close(attn.sum(dim=1),
                                   torch.ones(c, dtype=torch.float64))
        diag = torch.diagonal(attn)
        if exclude_self:
            assert torch.equal(diag, torch.zeros(c, dtype=torch.float64))
        else:
            # j = i has score 0, the row maximum
            assert (diag >= attn.max(dim=1).values - 1e-12).all()


def test_exclude_self_true_and_false_differ_only_by_the_diagonal():
    a = C3Block(4, grid_size=3, ratio=2, exclude_self=True)
    b = C3Block(4, grid_size=3, ratio=2, exclude_self=False)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 4, 3, 3)
    assert not torch.allclose(a(x), b(x))
    # two channels: excluding self, each channel receives exactly the other
    z = torch.randn(3, 2, 7)
    torch.testing.assert_close(dense_message(z, True, None), z.flip(1))
    included = dense_message(z, False, None)
    assert not torch.allclose(included, z.flip(1))


@pytest.mark.parametrize('exclude_self', [True, False])
def test_single_channel_is_finite_and_reduces(exclude_self):
    block = C3Block(1, grid_size=(2, 3), ratio=2,
                    exclude_self=exclude_self)
    x = torch.randn(2, 1, 2, 3, requires_grad=True)
    out = block(x)
    assert torch.isfinite(out).all()
    flat = x.flatten(2)
    if exclude_self:  # no message at all
        expected = x + block.decoder(torch.zeros_like(flat)).view_as(x)
    else:  # softmax over itself = 1
        expected = x + block.decoder(block.encoder(flat)).view_as(x)
    torch.testing.assert_close(out, expected)
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    for name, p in block.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name


def test_groups_of_one_with_exclude_self_give_zero_message():
    z = torch.randn(2, 4, 5, requires_grad=True)
    msg = dense_message(z, True, 1)
    assert torch.equal(msg, torch.zeros_like(msg))
    msg.sum().backward()  # stays in the graph
    assert torch.equal(z.grad, torch.zeros_like(z))
    # without exclusion each channel only hears itself
    torch.testing.assert_close(dense_message(z, False, 1), z)


def test_group_size_restricts_communication():
    z = torch.randn(2, 6, 5)
    z2 = z.clone()
    z2[:, 0] += 3.0 * torch.randn(2, 5)  # perturb a channel of group 0
    grouped = [dense_message(t, True, 3) for t in (z, z2)]
    torch.testing.assert_close(grouped[1][:, 3:], grouped[0][:, 3:])
    assert not torch.allclose(grouped[1][:, :3], grouped[0][:, :3])
    # without groups the perturbation reaches every channel
    full = [dense_message(t, True, None) for t in (z, z2)]
    assert not torch.allclose(full[1][:, 3:], full[0][:, 3:])

    # the same through the block: group 1's output ignores group 0
    block = C3Block(6, grid_size=(2, 3), ratio=2, group_size=3)
    x = torch.randn(2, 6, 2, 3)
    x2 = x.clone()
    x2[:, 1] += 2.0
    torch.testing.assert_close(block(x2)[:, 3:], block(x)[:, 3:])
    assert not torch.allclose(block(x2)[:, :3], block(x)[:, :3])


def test_groups_equal_separate_blocks():
    """Grouped message passing equals running each group on its own."""
    z = torch.randn(3, 8, 4, dtype=torch.float64)
    grouped = dense_message(z, True, 4)
    separate = torch.cat([dense_message(z[:, :4], True, None),
                          dense_message(z[:, 4:], True, None)], dim=1)
    torch.testing.assert_close(grouped, separate)


# --------------------------------------------------------------------------
# Resizing
# --------------------------------------------------------------------------


def _count_interpolate(monkeypatch):
    calls = []
    original = F.interpolate

    def spy(*args, **kwargs):
        calls.append(kwargs.get('mode'))
        return original(*args, **kwargs)

    monkeypatch.setattr(F, 'interpolate', spy)
    return calls


@pytest.mark.parametrize('mode', ['nearest', 'area', 'bilinear'])
def test_input_at_grid_is_not_resized(monkeypatch, mode):
    block = C3Block(4, grid_size=(3, 5), resize_mode=mode)
    nearest = C3Block(4, grid_size=(3, 5))
    nearest.load_state_dict(block.state_dict())
    x = torch.randn(2, 4, 3, 5)
    calls = _count_interpolate(monkeypatch)
    out = block(x)
    assert calls == []
    # with nothing resized, every mode gives the same output
    torch.testing.assert_close(out, nearest(x))


@pytest.mark.parametrize('mode', ['nearest', 'area', 'bilinear'])
def test_input_off_grid_is_resized_there_and_back(monkeypatch, mode):
    block = C3Block(4, grid_size=(3, 5), resize_mode=mode)
    x = torch.randn(2, 4, 6, 10)
    calls = _count_interpolate(monkeypatch)
    out = block(x)
    assert calls == [mode, mode]
    assert out.shape == x.shape
    # the residual is computed on the grid and brought back with `mode`
    kwargs = dict(align_corners=False) if mode == 'bilinear' else {}
    grid_x = F.interpolate(x, size=(3, 5), mode=mode, **kwargs)
    on_grid = C3Block(4, grid_size=(3, 5))
    on_grid.load_state_dict(block.state_dict())
    xbar = on_grid(grid_x) - grid_x
    expected = x + F.interpolate(xbar, size=(6, 10), mode=mode, **kwargs)
    torch.testing.assert_close(out, expected)


def test_area_downsampling_averages_blocks():
    """'area' resizing to a grid that divides the input is a block mean."""
    block = C3Block(2, grid_size=(2, 2), resize_mode='area',
                    encode_decode=True, message_passing=False)
    x = torch.randn(1, 2, 4, 6)
    pooled = x.view(1, 2, 2, 2, 2, 3).mean(dim=(3, 5))
    residual = block.decoder(block.encoder(pooled.flatten(2))).view(1, 2, 2, 2)
    # area upsampling of a 2x2 map to 4x6 repeats each value over its block
    expected = x + residual.repeat_interleave(2, 2).repeat_interleave(3, 3)
    torch.testing.assert_close(block(x), expected)


# --------------------------------------------------------------------------
# Gradients, numerics
# --------------------------------------------------------------------------


@pytest.mark.parametrize('hw', [(4, 4), (5, 3)])
@pytest.mark.parametrize('exclude_self, group_size', [(True, None),
                                                      (False, 2)])
def test_every_parameter_gets_a_finite_gradient(hw, exclude_self, group_size):
    block = C3Block(4, grid_size=4, ratio=4, exclude_self=exclude_self,
                    group_size=group_size, post_act=True)
    x = torch.randn(2, 4, *hw, requires_grad=True)
    block(x).pow(2).mean().backward()
    assert torch.isfinite(x.grad).all()
    for name, p in block.named_parameters():
        assert p.grad is not None, f'{name} got no gradient'
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f'{name} got an all-zero gradient'


@pytest.mark.parametrize('c, hw, grid, exclude_self, group_size', [
    (3, (1, 3), (1, 3), True, None),
    (4, (3, 3), (2, 2), False, 2),
    (4, (1, 2), (2, 2), True, 2),
])
def test_gradcheck_block(c, hw, grid, exclude_self, group_size):
    block = C3Block(c, grid_size=grid, ratio=2, exclude_self=exclude_self,
                    group_size=group_size).double()
    x = torch.randn(1, c, *hw, dtype=torch.float64, requires_grad=True)
    params = tuple(block.parameters())

    def fn(inp, *weights):
        return torch.func.functional_call(
            block, dict(zip([n for n, _ in block.named_parameters()],
                            weights)), (inp, ))

    assert torch.autograd.gradcheck(fn, (x, ) + params, eps=1e-6, atol=1e-5)


@pytest.mark.parametrize('exclude_self, group_size', [(True, None),
                                                      (False, None),
                                                      (True, 2)])
def test_gradcheck_message(exclude_self, group_size):
    z = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda t: dense_message(t, exclude_self, group_size), (z, ))


def test_message_under_autocast_is_computed_in_float32():
    z = torch.randn(2, 6, 9) * 4
    ref = dense_message(z, True, 3)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        low = dense_message(z.bfloat16(), True, 3)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), ref, rtol=0.05, atol=0.1)
    block = C3Block(6, grid_size=3, group_size=3)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = block(torch.randn(2, 6, 5, 5))
    assert torch.isfinite(out).all()


def test_huge_channel_means_do_not_produce_nan():
    z = torch.zeros(1, 3, 4)
    z[0, 0] = 3e19  # (v_0 - v_j)^2 overflows float32
    z[0, 1] = -3e19
    msg = dense_message(z, True, None)
    assert not torch.isnan(msg).any()


# --------------------------------------------------------------------------
# Configuration errors
# --------------------------------------------------------------------------


@pytest.mark.parametrize('kwargs, error, match', [
    (dict(in_channels=0, grid_size=3), ValueError,
     r'C3Block: in_channels must be a positive int, got 0'),
    (dict(in_channels=4.0, grid_size=3), TypeError,
     r'C3Block: in_channels must be a positive int, got float 4.0'),
    (dict(in_channels=4), ValueError,
     r'C3Block: grid_size is required when encode_decode=True'),
    (dict(in_channels=4, grid_size=(0, 7)), ValueError,
     r'C3Block: grid_size must be a positive int or \(h, w\), got \(0, 7\)'),
    (dict(in_channels=4, grid_size=-2), ValueError,
     r'C3Block: grid_size must be a positive int or \(h, w\), got -2'),
    (dict(in_channels=4, grid_size=(3, 4, 5)), TypeError,
     r'C3Block: grid_size must be a positive int or \(h, w\)'),
    (dict(in_channels=4, grid_size=2.5), TypeError,
     r'C3Block: grid_size must be a positive int or \(h, w\), got float'),
    (dict(in_channels=4, grid_size=3, ratio=0), ValueError,
     r'C3Block: ratio must be a positive int, got 0'),
    (dict(in_channels=4, grid_size=3, ratio=0.5), TypeError,
     r'C3Block: ratio must be a positive int, got float 0.5'),
    (dict(in_channels=6, grid_size=3, group_size=4), ValueError,
     r'C3Block: group_size must divide in_channels \(6\), got 4'),
    (dict(in_channels=6, grid_size=3, group_size=0), ValueError,
     r'C3Block: group_size must be a positive int, got 0'),
    (dict(in_channels=6, grid_size=3, group_size='2'), TypeError,
     r'C3Block: group_size must be a positive int, got str'),
    (dict(in_channels=4, grid_size=3, resize_mode='bicubic'), ValueError,
     r"C3Block: resize_mode must be one of \('nearest', 'area', "
     r"'bilinear'\), got 'bicubic'"),
    (dict(in_channels=4, grid_size=3, exclude_self=1), TypeError,
     r'C3Block: exclude_self must be a bool, got int 1'),
    (dict(in_channels=4, grid_size=3, post_act='yes'), TypeError,
     r'C3Block: post_act must be a bool'),
    (dict(in_channels=4, grid_size=3, message_passing=None), TypeError,
     r'C3Block: message_passing must be a bool'),
    (dict(in_channels=4, grid_size=3, encode_decode=0), TypeError,
     r'C3Block: encode_decode must be a bool'),
])
def test_configuration_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        C3Block(**kwargs)


def test_wrong_input_raises():
    block = C3Block(4, grid_size=3)
    with pytest.raises(ValueError, match=r'C3Block: expected input of shape '
                       r'\(N, 4, H, W\), got \(2, 3, 3, 3\)'):
        block(torch.randn(2, 3, 3, 3))
    with pytest.raises(ValueError, match=r'got \(4, 3, 3\)'):
        block(torch.randn(4, 3, 3))


def test_message_argument_errors():
    with pytest.raises(ValueError, match=r'dense_message: z must be a '
                       r'\(N, C, P\) tensor, got \(2, 3\)'):
        dense_message(torch.randn(2, 3), True, None)
    with pytest.raises(ValueError, match=r'dense_message: group_size must be '
                       r'a positive divisor of the channel count 6, got 4'):
        dense_message(torch.randn(1, 6, 2), True, 4)
    with pytest.raises(TypeError, match=r'dense_message: group_size must be '
                       r'None or a positive int, got float 2.0'):
        dense_message(torch.randn(1, 6, 2), True, 2.0)


# --------------------------------------------------------------------------
# Checkpoints, registry, host
# --------------------------------------------------------------------------


def test_state_dict_round_trip():
    block = C3Block(4, grid_size=(3, 4), ratio=4)
    assert sorted(block.state_dict()) == sorted(
        f'{part}.{layer}.{kind}' for part in ('encoder', 'decoder')
        for layer in ('fc_in', 'fc_out') for kind in ('weight', 'bias'))
    fresh = C3Block(4, grid_size=(3, 4), ratio=4)
    x = torch.randn(2, 4, 5, 5)
    assert not torch.allclose(fresh(x), block(x))
    fresh.load_state_dict(block.state_dict())
    torch.testing.assert_close(fresh(x), block(x))
    # a block for another grid cannot silently take these weights
    with pytest.raises(RuntimeError, match='size mismatch'):
        C3Block(4, grid_size=(4, 4), ratio=4).load_state_dict(
            block.state_dict())


def test_init_cfg_is_honoured():
    block = C3Block(4, grid_size=3, init_cfg=dict(type='Constant',
                                                  layer='Linear', val=0.0))
    x = torch.randn(2, 4, 5, 5)
    assert not torch.allclose(block(x), x)
    block.init_weights()
    assert all(torch.count_nonzero(p) == 0 for p in block.parameters())
    torch.testing.assert_close(block(x), x)  # zero residual


def test_builds_by_plain_name_from_root_registry():
    block = build_from_root(
        dict(type='C3Block', in_channels=8, grid_size=(2, 3), group_size=4,
             exclude_self=False))
    assert isinstance(block, C3Block)
    assert block.group_size == 4 and block.grid_size == (2, 3)
    assert block(torch.randn(1, 8, 2, 3)).shape == (1, 8, 2, 3)


@pytest.mark.parametrize('grid, input_hw', [
    (2, (64, 64)),  # stage 4 sees 2x2: no resizing
    ((2, 3), (32, 64)),  # stage 4 sees 1x2: resized to the grid and back
])
def test_runs_as_mmdet_resnet_plugin(grid, input_hw):
    # ratio 2: with k = 8 these 4- and 6-position grids have a single
    # hidden unit, which a ReLU can switch off for a whole batch (then its
    # input weights rightly get no gradient); the helper wants every
    # parameter to learn
    backbone, outs = run_as_mmdet_plugin(
        dict(type='C3Block', grid_size=grid, ratio=2), input_hw=input_hw)
    names = [n for n, m in backbone.named_modules()
             if isinstance(m, C3Block)]
    assert len(names) == 3
    assert all(n.endswith('.c3_block') for n in names), names
    stage4 = [m for m in backbone.modules() if isinstance(m, C3Block)]
    assert all(m.in_channels == outs[-1].shape[1] for m in stage4)
    assert outs[-1].shape[-2:] == (input_hw[0] // 32, input_hw[1] // 32)


# --------------------------------------------------------------------------
# The factorized path (z and zbar never formed)
# --------------------------------------------------------------------------
def _count_forward(module, calls, name):
    """Count calls of ``module``'s forward without registering a hook."""
    real = module.forward
    module.forward = lambda *a, **k: calls.append(name) or real(*a, **k)


@pytest.mark.parametrize('cfg', [
    dict(), dict(exclude_self=False, group_size=4), dict(
        message_passing=False), dict(post_act=True, grid_size=(2, 2))
])
def test_factorized_path_skips_the_inner_layers_and_equals_the_literal(cfg):
    """By default the encoder's fc_out and the decoder's fc_in are never
    run (their product is) and, for an input at the grid, no layer module
    is (the fused ends compute with their weights); the output and every
    gradient equal those of the literal steps (factorize=False) to float64
    rounding."""
    torch.manual_seed(0)
    kw = dict(dict(grid_size=(3, 4), ratio=2), **cfg)
    fact = C3Block(8, **kw).double()
    literal = C3Block(8, factorize=False, **kw).double()
    literal.load_state_dict(fact.state_dict())
    calls = {id(fact): [], id(literal): []}
    for block in (fact, literal):
        for name in ('fc_in', 'fc_out'):
            _count_forward(getattr(block.encoder, name), calls[id(block)],
                           'encoder.' + name)
            _count_forward(getattr(block.decoder, name), calls[id(block)],
                           'decoder.' + name)
    x = torch.randn(2, 8, 3, 4, dtype=torch.float64, requires_grad=True)
    up = torch.randn(2, 8, 3, 4, dtype=torch.float64)
    outs, grads = [], []
    for block in (fact, literal):
        out = block(x)
        outs.append(out)
        grads.append(torch.autograd.grad(out, [x] + list(block.parameters()),
                                         up))
    resized = kw['grid_size'] != (3, 4)
    assert sorted(calls[id(fact)]) == (['decoder.fc_out', 'encoder.fc_in']
                                       if resized else [])
    assert sorted(calls[id(literal)]) == ['decoder.fc_in', 'decoder.fc_out',
                                          'encoder.fc_in', 'encoder.fc_out']
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-12, atol=1e-12)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize('where', ['encoder', 'encoder.fc_out', 'decoder',
                                   'decoder.fc_in', 'decoder.fc_out'])
def test_a_hook_on_a_skipped_layer_runs_the_literal_steps(where):
    """A forward hook on a layer the factorized path skips (or whose output
    it sums into) sees that layer run, with the block's output unchanged."""
    torch.manual_seed(1)
    block = C3Block(6, grid_size=(3, 3), ratio=2)
    x = torch.randn(2, 6, 3, 3)
    before = block(x)
    seen = []
    handle = block.get_submodule(where).register_forward_hook(
        lambda m, i, o: seen.append(o.shape))
    after = block(x)
    assert len(seen) == 1
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-6)
    handle.remove()
    assert block._runs_factorized()


def test_a_global_hook_runs_the_literal_steps():
    block = C3Block(6, grid_size=(3, 3), ratio=2)
    seen = []
    handle = torch.nn.modules.module.register_module_forward_hook(
        lambda m, i, o: seen.append(m))
    try:
        assert not block._runs_factorized()
        block(torch.randn(1, 6, 3, 3))
    finally:
        handle.remove()
    assert block.encoder.fc_out in seen and block.decoder.fc_in in seen
    assert block._runs_factorized()


@pytest.mark.parametrize('c, group_size', [(1, None), (4, 1)])
def test_groups_of_one_with_exclude_self_stay_literal(c, group_size):
    """With nobody to talk to the message is zero, not a convex combination
    of encoded maps: the literal steps give x + Dec(0)."""
    block = C3Block(c, grid_size=(2, 2), group_size=group_size)
    assert not block._runs_factorized()
    x = torch.randn(2, c, 2, 2)
    dec0 = block.decoder(torch.zeros(2, c, 4)).reshape(x.shape)
    torch.testing.assert_close(block(x), x + dec0)
    assert C3Block(c, grid_size=(2, 2), group_size=group_size,
                   exclude_self=False)._runs_factorized()


def test_factorize_option_is_checked_and_shown():
    with pytest.raises(TypeError, match='C3Block: factorize must be a bool'):
        C3Block(4, grid_size=2, factorize=1)
    assert 'factorize=True' in repr(C3Block(4, grid_size=2))
    assert not C3Block(4, grid_size=2, factorize=False)._runs_factorized()
    assert not C3Block(4, encode_decode=False)._runs_factorized()


def test_fused_and_autograd_factorized_paths_agree_and_fused_is_once_differentiable():
    """The fused ends (input at the grid, no autocast) and the autograd
    factorized path (taken under autocast or when resizing; forced here by
    patching) give the same output and gradients; differentiating the fused
    path twice raises instead of returning a wrong second derivative."""
    torch.manual_seed(2)
    block = C3Block(16, grid_size=(3, 3), ratio=2, group_size=8).double()
    x = torch.randn(2, 16, 3, 3, dtype=torch.float64, requires_grad=True)
    up = torch.randn_like(x)
    fused = block(x)
    grads = torch.autograd.grad(fused, [x] + list(block.parameters()), up,
                                retain_graph=True)
    xbar = block._factorized(x.flatten(2)).reshape(x.shape)
    plain = x + xbar
    ref = torch.autograd.grad(plain, [x] + list(block.parameters()), up)
    torch.testing.assert_close(fused, plain, rtol=1e-12, atol=1e-12)
    for a, b in zip(grads, ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    (gx, ) = torch.autograd.grad(fused, x, up, create_graph=True)
    with pytest.raises(RuntimeError,
                       match='once_differentiable|does not require grad'):
        gx.sum().backward()


@pytest.mark.parametrize('rows,n,m', [(0, 7, 49), (1, 7, 49), (5, 7, 49),
                                      (64, 7, 49), (200, 7, 49),
                                      (4099, 7, 49), (1500, 40, 90)])
def test_tall_product_is_the_transposed_product(rows, n, m):
    """The blocked weight-gradient product equals ``narrow^T wide`` for any
    row count, with and without a remainder after the blocks, for narrow
    operands (64 blocks) and wider ones (a few), within the float32 error
    of a sum of ``rows`` products."""
    from mmc3.models.blocks.cross_channel import _tall_product
    g = torch.Generator().manual_seed(rows)
    narrow = torch.randn(rows, n, generator=g)
    wide = torch.randn(rows, m, generator=g)
    got = _tall_product(narrow, wide)
    assert got.shape == (n, m)
    ref = narrow.double().t() @ wide.double()
    magnitude = narrow.double().abs().t() @ wide.double().abs()
    bound = float32_sum_bound(max(rows, 1), 1.0) * magnitude + 1e-30
    assert bool(((got.double() - ref).abs() <= 2 * bound).all())


@pytest.mark.parametrize('rows,n,m,expected', [
    (2**20, 7, 49, 64),  # C4 head, 512 RoIs: the full 64 blocks
    (2**18, 6, 49, 64),
    (4096, 210, 1681, 2),  # DeepLab 41x41: two partials, not 64 (90 MB)
    (4096, 211, 1681, 2),
    (5, 7, 49, 1),
    (0, 7, 49, 1),
])
def test_tall_product_partials_stay_small(rows, n, m, expected):
    """Blocking keeps the ``(b, n, m)`` partial products at no more than an
    eighth of the operands (at 41x41, 64 blocks took 4x the time of one
    product), and at the full 64 blocks for the C4 head's tall operands."""
    from mmc3.models.blocks.cross_channel import _tall_blocks
    b = _tall_blocks(rows, n, m)
    assert b == expected
    assert b == 1 or 8 * b * n * m <= rows * (n + m)
