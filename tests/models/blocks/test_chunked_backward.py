"""The chunked backward passes of ``scale_channels`` (SE's and GE's gating
product) and of the full-map depthwise convolution (parametric global GE)
give the gradients of the plain products: in float64 for every chunk size
(one row, ragged last chunk, one chunk), for every combination of inputs
that need a gradient, for layouts the chunks cannot view, and twice
differentiated; in float32 at the C4 head's width within what float32
rounding of those sums can produce."""
import pytest
import torch
import torch.nn.functional as F

import mmc3.models.blocks._layers as layers
from mmc3.models.blocks._layers import FullMapDepthwiseConv, scale_channels
from tests._helpers import FLOAT32_UNIT_ROUNDOFF, build_from_root, \
    float32_sum_bound

# chunk sizes in elements at maps of 4 x 6 = 24 elements: one map per
# chunk, a ragged last chunk (5 maps, 3 x 5 = 15 maps in all), everything
# in one chunk; and a chunk smaller than one map (still one map)
CHUNKS = [24, 5 * 24, 2**20, 7]


def _plain_grads(x, gate, up, wanted):
    return torch.autograd.grad(x * gate, wanted, up)


@pytest.mark.parametrize('chunk', CHUNKS)
@pytest.mark.parametrize('needs', ['both', 'gate', 'x'])
def test_channel_scale_backward_equals_the_plain_product(
        monkeypatch, chunk, needs):
    monkeypatch.setattr(layers, 'CHUNK_ELEMENTS', chunk)
    torch.manual_seed(0)
    x = torch.randn(3, 5, 4, 6, dtype=torch.float64,
                    requires_grad=needs in ('both', 'x'))
    gate = torch.rand(3, 5, 1, 1, dtype=torch.float64,
                      requires_grad=needs in ('both', 'gate'))
    up = torch.randn(3, 5, 4, 6, dtype=torch.float64)
    wanted = [t for t in (x, gate) if t.requires_grad]
    ours = torch.autograd.grad(scale_channels(x, gate), wanted, up)
    for a, b in zip(ours, _plain_grads(x, gate, up, wanted)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_channel_scale_backward_with_layouts_it_cannot_chunk():
    """channels-last inputs and a non-contiguous upstream gradient take
    the plain products and give the same gradients."""
    torch.manual_seed(0)
    x = torch.randn(3, 5, 4, 6, dtype=torch.float64).to(
        memory_format=torch.channels_last).requires_grad_()
    gate = torch.rand(3, 5, 1, 1, dtype=torch.float64, requires_grad=True)
    up = torch.randn(3, 5, 6, 4, dtype=torch.float64).transpose(2, 3)
    assert not x.is_contiguous() and not up.is_contiguous()
    ours = torch.autograd.grad(scale_channels(x, gate), (x, gate), up)
    for a, b in zip(ours, _plain_grads(x, gate, up, (x, gate))):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_channel_scale_is_twice_differentiable(monkeypatch):
    monkeypatch.setattr(layers, 'CHUNK_ELEMENTS', 24)
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 6, dtype=torch.float64, requires_grad=True)
    gate = torch.rand(2, 3, 1, 1, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(scale_channels, (x, gate))


def test_channel_scale_of_an_empty_batch():
    x = torch.randn(0, 5, 4, 6, requires_grad=True)
    gate = torch.rand(0, 5, 1, 1, requires_grad=True)
    gx, gg = torch.autograd.grad(scale_channels(x, gate).sum(), (x, gate))
    assert gx.shape == x.shape and gg.shape == gate.shape


@pytest.mark.parametrize('chunk', [1, 2 * 5 * 4 * 6, 2**20])
def test_full_map_weight_gradient_in_chunks_equals_the_convolution(
        monkeypatch, chunk):
    """One sample per chunk, a ragged last chunk (2 + 2 + 1 samples) and
    one chunk: the output (also formed a chunk of samples at a time) and
    the weight's and the input's gradients of the depthwise convolution
    (float64)."""
    monkeypatch.setattr(layers, 'CHUNK_ELEMENTS', chunk)
    torch.manual_seed(0)
    conv = FullMapDepthwiseConv(5, (4, 6)).double()
    x = torch.randn(5, 5, 4, 6, dtype=torch.float64, requires_grad=True)
    up = torch.randn(5, 5, 1, 1, dtype=torch.float64)
    out = conv(x)
    expected = F.conv2d(x, conv.weight, groups=5)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    ours = torch.autograd.grad(out, (x, conv.weight), up)
    ref = torch.autograd.grad(expected, (x, conv.weight), up)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('layout', ['contiguous', 'channels_last',
                                    'float64', 'empty', 'bfloat16'])
def test_spatial_sum_equals_the_sum_over_the_map(layout):
    """The squeeze's sum over ``(H, W)`` (a matrix-vector product for
    contiguous float maps, the reduction otherwise) equals ``x.sum``:
    within float32 rounding of 12 terms, exactly in the other cases."""
    torch.manual_seed(0)
    x = torch.randn(3, 5, 4, 3)
    if layout == 'channels_last':
        x = x.to(memory_format=torch.channels_last)
        assert not x.is_contiguous()
    elif layout == 'float64':
        x = x.double()
    elif layout == 'empty':
        x = x[:0]
    elif layout == 'bfloat16':
        x = x.bfloat16()
    ours = layers.spatial_sum(x)
    ref = x.double().sum(dim=(2, 3), keepdim=True)
    assert ours.shape == (x.shape[0], 5, 1, 1) and ours.dtype == x.dtype
    bound = float32_sum_bound(12, 1.0) * x.double().abs().sum(
        dim=(2, 3), keepdim=True)
    if layout == 'bfloat16':
        torch.testing.assert_close(ours, x.sum(dim=(2, 3), keepdim=True))
    else:
        assert ((ours.double() - ref).abs() <= bound).all()


@pytest.mark.parametrize('layout', ['contiguous', 'strided', 'float64',
                                    'empty', 'bfloat16'])
def test_row_dot_and_column_sum_equal_the_reductions(layout):
    """C3's per-row dot products over its hidden units and its bias
    gradient over all rows (matrix-vector products for contiguous float
    tensors, reductions otherwise) equal ``vecdot`` and ``sum(0)``: within
    float32 rounding of the sums, exactly in the other cases."""
    torch.manual_seed(0)
    a, b = torch.randn(4, 9, 6), torch.randn(4, 9, 6)
    m = torch.randn(37, 6)
    if layout == 'strided':
        a, b = torch.randn(4, 6, 9).transpose(1, 2), b
        m = torch.randn(6, 37).t()
        assert not a.is_contiguous() and not m.is_contiguous()
    elif layout == 'float64':
        a, b, m = a.double(), b.double(), m.double()
    elif layout == 'empty':
        a, b, m = a[:0], b[:0], m[:0]
    elif layout == 'bfloat16':
        a, b, m = a.bfloat16(), b.bfloat16(), m.bfloat16()
    dot, col = layers.row_dot(a, b), layers.column_sum(m)
    assert dot.shape == a.shape[:-1] and dot.dtype == a.dtype
    assert col.shape == (6, ) and col.dtype == m.dtype
    if layout == 'bfloat16':
        torch.testing.assert_close(dot, torch.linalg.vecdot(a, b))
        torch.testing.assert_close(col, m.sum(dim=0))
        return
    terms = a.double() * b.double()
    bound = float32_sum_bound(6 + 1, 1.0) * terms.abs().sum(dim=-1)
    assert ((dot.double() - terms.sum(dim=-1)).abs() <= bound).all()
    bound = float32_sum_bound(37 + 1, 1.0) * m.double().abs().sum(dim=0)
    assert ((col.double() - m.double().sum(dim=0)).abs() <= bound).all()


def test_float32_at_the_head_width_is_within_rounding(monkeypatch):
    """float32, 6 x 2048 x 7 x 7 in chunks of 1000 maps and 4 samples
    (ragged): each gradient entry within the float32 rounding bound of its
    sum (Higham's ``gamma_n`` times the sum of the terms' magnitudes) of
    the float64 products, element by element."""
    monkeypatch.setattr(layers, 'CHUNK_ELEMENTS', 1000 * 49)
    torch.manual_seed(0)
    x = torch.randn(6, 2048, 7, 7, requires_grad=True)
    gate = torch.rand(6, 2048, 1, 1, requires_grad=True)
    up = torch.randn(6, 2048, 7, 7)
    gx, gg = torch.autograd.grad(scale_channels(x, gate), (x, gate), up)
    x64, g64, up64 = x.detach().double(), gate.detach().double(), \
        up.double()
    ref_gg = (up64 * x64).sum(dim=(2, 3), keepdim=True)
    bound_gg = float32_sum_bound(
        49 + 1, 1.0) * (up64 * x64).abs().sum(dim=(2, 3), keepdim=True)
    assert ((gg.double() - ref_gg).abs() <= bound_gg).all()
    ref_gx = up64 * g64
    assert ((gx.double() - ref_gx).abs()
            <= FLOAT32_UNIT_ROUNDOFF * ref_gx.abs()).all()

    monkeypatch.setattr(layers, 'CHUNK_ELEMENTS', 4 * 2048 * 49)
    conv = FullMapDepthwiseConv(2048, (7, 7))
    up = torch.randn(6, 2048, 1, 1)
    (gw, ) = torch.autograd.grad(conv(x), (conv.weight, ), up)
    terms = up.double() * x64  # (N, C, 7, 7): summed over N
    ref_gw = terms.sum(dim=0)[:, None]
    bound_gw = float32_sum_bound(6 + 1, 1.0) * terms.abs().sum(dim=0)[:, None]
    assert ((gw.double() - ref_gw).abs() <= bound_gw).all()


BLOCKS = {
    'se': dict(type='SEBlock'),
    'ge-theta+global': dict(type='GEBlock', variant='theta+',
                            extent='global', grid_size=7),
    'ge-theta-global': dict(type='GEBlock'),
}


def _relative(a, b):
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize('name', sorted(BLOCKS))
def test_blocks_float32_gradients_match_float64(monkeypatch, name):
    """SE and GE at 2048 channels, 7x7, training mode, in chunks smaller
    than the input (ragged): output, the input's gradient and every
    parameter's within 1e-5 of the same block in float64, relative to the
    largest entry (float32 rounding of the longest sum, 49 terms for the
    gate and 4 samples for the full-map weight, is ~1e-6 of that)."""
    monkeypatch.setattr(layers, 'CHUNK_ELEMENTS', 3000 * 49)
    torch.manual_seed(0)
    block = build_from_root(dict(BLOCKS[name], in_channels=2048)).train()
    block64 = build_from_root(dict(BLOCKS[name], in_channels=2048))
    block64.load_state_dict(block.state_dict())
    block64.double().train()
    x = torch.randn(4, 2048, 7, 7, requires_grad=True)
    x64 = x.detach().double().requires_grad_()
    up = torch.randn(4, 2048, 7, 7)
    out = block(x)
    ref = block64(x64)
    assert _relative(out, ref) <= 1e-5
    grads = torch.autograd.grad(out, [x] + list(block.parameters()), up)
    ref_grads = torch.autograd.grad(ref, [x64] + list(block64.parameters()),
                                    up.double())
    names = ['x'] + [n for n, _ in block.named_parameters()]
    for n, g, r in zip(names, grads, ref_grads):
        assert _relative(g, r) <= 1e-5, n
