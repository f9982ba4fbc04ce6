"""Tests of the fast (expansion-based) C3 message passing.

The reference is an independent float64 restatement of the paper's message
(Yang et al., NeurIPS 2019, Sec. 3): ``zbar_i = sum_j softmax_j(-(v_i -
v_j)^2) z_j`` with ``v_i = mean_p z_i[p]``. Test inputs are built so that
``v`` has a chosen distribution: zero-mean noise per channel plus a
per-channel offset.
"""
import copy
import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from mmc3.models.blocks.message import (binning, centred, dense, dispatch,
                                        expansion,
                                        function, layout, translation)
from mmc3.models.blocks.message import (choose_message_impl, dense_message,
                                        fast_message, message_passing)

_MODULES = (expansion, translation, binning, centred, layout, function, dense,
            dispatch)


class _Names:
    """Every name of the message package's modules, for reading (``fm.X``):
    the tests reach the private parts by one name whatever file holds
    them."""

    def __getattr__(self, name):
        for module in _MODULES:
            if name in vars(module):
                return vars(module)[name]
        raise AttributeError(name)


fm = _Names()


def patch_everywhere(monkeypatch, name, value):
    """Replace ``name`` in every module of the package that defines or
    imports it, so that every caller sees the replacement."""
    patched = [m for m in _MODULES if name in vars(m)]
    assert patched, name
    for module in patched:
        monkeypatch.setattr(module, name, value)
from tests._helpers import build_from_root, float32_sum_bound


def reference_message(z: torch.Tensor, exclude_self: bool,
                      group_size=None) -> torch.Tensor:
    """Float64 message, written from the equations (log-sum-exp softmax)."""
    n, c, p = z.shape
    g = c if group_size is None else group_size
    zz = z.double().reshape(n * (c // g), g, p)
    v = zz.mean(dim=2)
    scores = -(v[:, :, None] - v[:, None, :])**2
    if exclude_self:
        scores = scores - torch.diag(torch.full((g, ), math.inf,
                                                dtype=torch.float64))
    if exclude_self and g == 1:
        return torch.zeros_like(z, dtype=torch.float64)
    scores = scores - scores.amax(dim=2, keepdim=True)
    weights = scores.exp()
    weights = weights / weights.sum(dim=2, keepdim=True)
    return (weights @ zz).reshape(n, c, p)


def make_z(v: torch.Tensor, positions: int, scale: float = 1.0,
           dtype=torch.float32) -> torch.Tensor:
    """``z`` of shape ``(N, C, P)`` whose channel means are exactly ``v``.

    ``v`` is ``(N, C)``; the noise has zero mean per channel.
    """
    v = v.double()
    noise = torch.randn(*v.shape, positions, dtype=torch.float64) * scale
    noise = noise - noise.mean(dim=2, keepdim=True)
    return (noise + v[..., None]).to(dtype)


def rel_error(out: torch.Tensor, ref: torch.Tensor, z: torch.Tensor,
              group_size=None) -> float:
    """Largest error relative to ``max |z|`` of the group."""
    n, c, p = z.shape
    g = c if group_size is None else group_size
    err = (out.double() - ref).abs().reshape(n * (c // g), g * p).amax(1)
    scale = z.double().abs().reshape(n * (c // g), g * p).amax(1)
    return float((err / scale.clamp(min=1e-300)).max())


def _distribution(name: str, n: int, c: int) -> torch.Tensor:
    """Channel means ``v`` of shape ``(N, C)`` for a named distribution."""
    if name == 'concentrated':
        return torch.randn(n, c) * 0.14
    if name == 'spread':
        return torch.rand(n, c) * 20 - 10
    if name == 'normal2':
        return torch.randn(n, c) * 2
    if name == 'bimodal':
        sign = torch.randint(0, 2, (n, c)) * 2 - 1
        return sign * 3 + torch.randn(n, c) * 0.3
    if name == 'all_equal':
        return torch.full((n, c), 0.7)
    if name == 'one_outlier':
        v = torch.randn(n, c) * 0.3
        v[:, c // 3] = 50.0
        return v
    if name == 'ties':
        # many exact ties, several of them on bin edges of every width
        return torch.randint(-8, 9, (n, c)) * 0.25
    if name == 'clusters_far':
        centres = torch.tensor([0.0, 4.5, 9.0, 30.0, 31.2])
        pick = torch.randint(0, len(centres), (n, c))
        return centres[pick] + torch.randn(n, c) * 0.2
    if name == 'isolated_near_crowd':
        # a crowd and single channels 1.5 .. 6 units away from it
        v = torch.randn(n, c) * 0.05
        v[:, :4] = torch.tensor([1.5, -2.5, 4.0, 6.0])
        return v
    if name == 'large_offset':
        return 1000.0 + torch.randn(n, c) * 1.5
    raise KeyError(name)


DISTRIBUTIONS = ('concentrated', 'spread', 'normal2', 'bimodal', 'all_equal',
                 'one_outlier', 'ties', 'clusters_far', 'isolated_near_crowd',
                 'large_offset')


@pytest.mark.parametrize('exclude_self', [True, False])
@pytest.mark.parametrize('dist', DISTRIBUTIONS)
def test_matches_reference_over_distributions(dist, exclude_self):
    v = _distribution(dist, 2, 768)
    z = make_z(v, 9)
    out = fast_message(z, exclude_self=exclude_self)
    ref = reference_message(z, exclude_self)
    assert out.dtype == z.dtype and out.shape == z.shape
    assert torch.isfinite(out).all()
    assert rel_error(out, ref, z) <= 1e-5


@pytest.mark.parametrize('exclude_self', [True, False])
@pytest.mark.parametrize('dist', ['concentrated', 'spread', 'all_equal',
                                  'one_outlier', 'bimodal'])
def test_full_size_group(dist, exclude_self):
    """C = 2048 (stage 4 of ResNet-101), the size the fast path is for."""
    v = _distribution(dist, 1, 2048)
    z = make_z(v, 7)
    out = fast_message(z, exclude_self=exclude_self)
    ref = reference_message(z, exclude_self)
    assert rel_error(out, ref, z) <= 1e-5


@pytest.mark.parametrize('c', [1, 2, 3])
@pytest.mark.parametrize('exclude_self', [True, False])
def test_tiny_channel_counts(c, exclude_self):
    for dist in ('spread', 'all_equal', 'concentrated'):
        v = _distribution(dist, 3, c)
        z = make_z(v, 5)
        out = fast_message(z, exclude_self=exclude_self)
        ref = reference_message(z, exclude_self)
        assert torch.isfinite(out).all()
        assert rel_error(out, ref, z) <= 1e-5, dist


def test_single_channel_excluded_is_zero_and_kept_is_identity():
    z = torch.randn(2, 1, 6, requires_grad=True)
    out = fast_message(z, exclude_self=True)
    assert torch.equal(out, torch.zeros_like(out))
    out.sum().backward()
    assert torch.equal(z.grad, torch.zeros_like(z))
    kept = fast_message(z, exclude_self=False)
    torch.testing.assert_close(kept, z, rtol=0, atol=1e-6)


def test_isolated_channel_far_from_everyone():
    """The nearest other channel is 40 units away: its weight exp(-1600)
    underflows, yet the softmax over j != i must be exact (the dense path
    with max subtraction gives the nearest channels' average)."""
    v = torch.randn(1, 300) * 0.1
    v[0, 5] = 40.0
    v[0, 6] = -60.0
    z = make_z(v, 4)
    out = fast_message(z, exclude_self=True)
    ref = reference_message(z, True)
    assert torch.isfinite(out).all()
    assert rel_error(out, ref, z) <= 1e-5
    # and it agrees with the (float32) dense path
    assert rel_error(out, dense_message(z, True, None).double(), z) <= 1e-5


@pytest.mark.parametrize('exclude_self', [True, False])
@pytest.mark.parametrize('group_size', [1, 4, 64, 256])
def test_groups_match_reference(group_size, exclude_self):
    # every group gets a different distribution
    parts = [_distribution(d, 2, 256) for d in
             ('concentrated', 'spread', 'bimodal', 'one_outlier')]
    v = torch.cat(parts, dim=1)  # (2, 1024)
    z = make_z(v, 6)
    out = fast_message(z, exclude_self=exclude_self, group_size=group_size)
    ref = reference_message(z, exclude_self, group_size)
    assert rel_error(out, ref, z, group_size) <= 1e-5


def test_samples_are_independent():
    """Bins are per sample: a spread sample must not disturb a concentrated
    one in the same batch."""
    v = torch.stack([_distribution('concentrated', 1, 512)[0],
                     _distribution('spread', 1, 512)[0] * 30])
    z = make_z(v, 8)
    out = fast_message(z)
    alone = fast_message(z[:1])
    assert rel_error(out[:1], reference_message(z[:1], True), z[:1]) <= 1e-5
    assert rel_error(out[1:], reference_message(z[1:], True), z[1:]) <= 1e-5
    scale = float(z[:1].abs().max())
    torch.testing.assert_close(out[:1], alone, rtol=0, atol=2e-5 * scale)


def _truncation_error(h: float, order: int) -> float:
    """The data-blind per-pair bound: the largest ``E[o, p]`` over all grid
    offsets (the kernel's derivatives are negligible beyond ``|o h| = 8``)."""
    table = fm._offset_errors(h, int(math.ceil(8.0 / h)) + 1)
    return float(table[:, order].max())


def _binning(v: torch.Tensor, h: float, tol: float, exclude_self=True):
    """The bins the fast path would use for ``v`` at width ``h``."""
    v_sorted, _ = fm._sorted_summaries(v)
    d_min = math.exp(-fm.ISOLATION_RADIUS**2) if exclude_self else 1.0
    reach = fm._reach(h, tol, v.shape[1], d_min)
    return fm._Binning(v_sorted, h, reach)


@pytest.mark.parametrize('tol', [1e-3, 1e-4])
def test_looser_tolerance_is_met_with_a_lower_order(tol):
    v = _distribution('normal2', 2, 1024)
    z = make_z(v, 5)
    out = fast_message(z, tol=tol)
    assert rel_error(out, reference_message(z, True), z) <= tol
    for h in fm.BIN_WIDTHS:
        loose = fm._required_order(_binning(v, h, tol), tol, True)
        tight = fm._required_order(_binning(v, h, 1e-6), 1e-6, True)
        assert loose < tight <= fm.MAX_ORDER


def test_order_follows_the_data_not_the_worst_case():
    """A crowd makes its own denominators large, so it needs a lower order
    than a lone pair beside the same crowd, which in turn needs no more than
    the data-blind bound (``C`` channels next to a denominator of
    ``d_min``); both meet the tolerance (the lone pair is the case the bound
    must not miss)."""
    c = 2048
    crowd = torch.randn(1, c) * 0.1
    lonely = crowd.clone()
    # a pair 0.99 apart, 3 units from the crowd: denominator ~ 0.6
    lonely[0, :2] = torch.tensor([3.0, 3.99])
    for h in fm.BIN_WIDTHS:
        orders = [fm._required_order(_binning(v, h, 1e-5), 1e-5, True)
                  for v in (crowd, lonely)]
        assert orders[0] < orders[1] <= fm.MAX_ORDER, (h, orders)
        blind = next(o for o in range(fm.MAX_ORDER + 1)
                     if 2 * c * _truncation_error(h, o) / math.exp(-1)
                     <= fm._TRUNCATION_SHARE * 1e-5)
        assert orders[1] <= blind
    for v in (crowd, lonely):
        z = make_z(v, 7)
        for excl in (True, False):
            out = fast_message(z, exclude_self=excl)
            assert rel_error(out, reference_message(z, excl), z) <= 1e-5


def test_float64_reaches_tight_tolerance():
    v = _distribution('normal2', 1, 600)
    z = make_z(v, 5, dtype=torch.float64)
    out = fast_message(z, tol=1e-10)
    assert out.dtype == torch.float64
    assert rel_error(out, reference_message(z, True), z) <= 1e-10


def test_offset_error_table_decreases_and_bounds_a_direct_check():
    for h in fm.BIN_WIDTHS:
        errs = [_truncation_error(h, p) for p in range(2, 14, 2)]
        assert all(b < a for a, b in zip(errs, errs[1:]))
    # direct evaluation of the two-sided polynomial at random points, offset
    # by offset, against that offset's entry of the table
    h, order, reach = 0.5, 10, 12
    weight = fm._translation_weight(h, order, reach)  # (p+1, p+1, 2R+1)
    table = fm._offset_errors(h, reach + 1)
    r = h / 2
    gen = torch.Generator().manual_seed(1)
    sig = (torch.rand(2000, generator=gen, dtype=torch.float64) * 2 - 1)
    dlt = (torch.rand(2000, generator=gen, dtype=torch.float64) * 2 - 1)
    for s in (0, 3, reach - 4, reach, reach + 1, 2 * reach):
        o = reach - s
        powers_s = torch.stack([sig**m for m in range(order + 1)])
        powers_d = torch.stack([dlt**k for k in range(order + 1)])
        approx = torch.einsum('mn,mk,kn->n', powers_s, weight[:, :, s],
                              powers_d)
        exact = torch.exp(-(o * h + (sig - dlt) * r)**2)
        err = (approx - exact).abs().max()
        assert err <= table[abs(o), order]
        # and not loose by orders of magnitude either
        assert err >= table[abs(o), order] / 50


def _translate_reference(moments, h, order, taps):
    """``L_T = sum_o M_o A_{T-o}`` by loops, from ``_translation_weight``."""
    weight = fm._translation_weight(h, order, taps)  # W[m, k, taps - o]
    out = torch.zeros_like(moments)
    num_bins = moments.shape[0]
    for t in range(num_bins):
        for o in range(-taps, taps + 1):
            if 0 <= t - o < num_bins:
                out[t] += moments[t - o] @ weight[:, :, taps - o].T
    return out


@pytest.mark.parametrize('method', ['direct', 'fft', 'toeplitz'])
def test_translation_matches_a_loop(method):
    h, order, reach = 0.5, 6, 4
    gen = torch.Generator().manual_seed(2)
    # the Toeplitz matrix is built for 9 bins; chunks with fewer bins use
    # its leading block
    translation = fm._Translation(h, order, reach, 9, torch.float64,
                                  torch.device('cpu'), method)
    assert translation.method == method
    for num_bins in (1, 3, 9):
        moments = torch.randn(num_bins, 5, order + 1, generator=gen,
                              dtype=torch.float64)
        out = translation(moments)
        ref = _translate_reference(moments, h, order,
                                   min(reach, num_bins - 1))
        torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize('method', ['direct', 'fft', 'toeplitz'])
def test_each_translation_meets_the_tolerance_end_to_end(monkeypatch,
                                                         method):
    """float32 messages and gradients with every translation forced."""
    patch_everywhere(monkeypatch, '_translation_cost',
                        lambda *args: (method, 0.0))
    v = _distribution('normal2', 2, 1024)
    z = make_z(v, 5)
    cot = torch.randn_like(z)
    zf = z.clone().requires_grad_(True)
    out = fast_message(zf)
    (out * cot).sum().backward()
    assert rel_error(out, reference_message(z, True), z) <= 1e-5
    zr = z.double().requires_grad_(True)
    (reference_message(zr, True) * cot.double()).sum().backward()
    assert (zf.grad.double() - zr.grad).abs().max() <= (
        1e-4 * zr.grad.abs().max())


def test_translation_method_follows_the_cost_and_caps_the_matrix():
    # few bins: one large product beats 2R + 1 thin ones
    assert fm._translation_cost(0.5, 12, 10, 34)[0] == 'toeplitz'
    # many bins, long reach: the FFT; the matrix would be too large anyway
    method, _ = fm._translation_cost(0.125, 6, 39, 400)
    assert method == 'fft'
    assert 400 * 7 > fm.TOEPLITZ_MAX_SIZE
    # a single bin within reach of nothing: the direct product is cheapest
    assert fm._translation_cost(0.5, 12, 10, 1)[0] in ('direct', 'toeplitz')


def _message_inputs(v, h, reach, chunk_groups):
    """Bin centres and chunks of ``_FastMessage`` for ``v`` on a fixed
    grid."""
    batch, c = v.shape
    v_sorted, perm = fm._sorted_summaries(v)
    binning = fm._Binning(v_sorted, h, reach)
    b = torch.empty_like(binning.b).scatter_(1, perm, binning.b)
    shift = v_sorted[:, :1] + (b + 0.5) * h
    chunks = []
    for start in range(0, batch, chunk_groups):
        end = min(start + chunk_groups, batch)
        layout = fm._Layout(binning.select(start, end), perm[start:end],
                            v.dtype)
        chunks.append((start * c, end * c, layout))
    return shift.reshape(-1), chunks, binning


@pytest.mark.parametrize('exclude_self', [True, False])
def test_message_function_backward_gradcheck(exclude_self):
    """The written backward (expansion, the summaries' own gradient,
    exact rows) against finite differences of the forward, on a fixed grid,
    over two chunks of groups, with the summaries the means of ``z``."""
    h, order, reach = 0.5, 6, 5
    v = torch.tensor([[0.0, 0.1, 0.3, 0.9, 1.7, 2.2, 4.0],
                      [0.2, 0.2, 0.25, 0.26, 3.1, 3.3, 9.0],
                      [0.5, 0.6, 0.61, 1.0, 1.1, 1.3, 1.35]],
                     dtype=torch.float64)
    shift, chunks, binning = _message_inputs(v, h, reach, 2)
    # group 2: bins 0..6 then 17; the run of 10 empty bins becomes 5
    assert int(binning.g[1, -1]) + 1 == 13
    assert len(chunks) == 2
    z = make_z(v, 3, scale=0.05, dtype=torch.float64).reshape(-1, 3)
    z.requires_grad_(True)
    exact = None
    if exclude_self:
        # 4.0 and 9.0 are isolated; group 0 and 1 have one each
        exact = fm._exact_channels(*fm._sorted_summaries(v))
        assert exact[0].tolist() == [0, 1]
        assert exact[1].tolist() == [[6], [6]]
        exact += (7, )

    for method in ('direct', 'toeplitz'):
        translation = fm._Translation(h, order, reach, binning.num_bins,
                                      torch.float64, torch.device('cpu'),
                                      method)

        def fn(z):
            return fm._FastMessage.apply(z, z.mean(1), shift,
                                         exact, chunks, translation,
                                         exclude_self)

        assert torch.autograd.gradcheck(fn, (z, ))


@pytest.mark.parametrize('exclude_self', [True, False])
def test_chunking_does_not_change_the_message(monkeypatch, exclude_self):
    """Groups are processed in chunks of ``CHUNK_ELEMENTS``; one group per
    chunk and all groups in one chunk give the same message and gradient.

    The two runs sum in different orders, so they may differ by float32
    rounding: each message is a weighted mean over the C channels of a group
    (weights summing to 1), hence two orders differ by at most
    ``2 * gamma_C * max|z|`` (tests._helpers.float32_sum_bound). A chunking
    mistake (a group read at the wrong offset) is of the order of ``max|z|``
    itself. Both runs must also meet the method's tolerance against the
    float64 reference, gradients included.
    """
    n, c, p = 5, 300, 6
    v = _distribution('normal2', n, c)
    z = make_z(v, p)
    cot = torch.randn_like(z)
    zr = z.double().requires_grad_(True)
    (reference_message(zr, exclude_self) * cot.double()).sum().backward()
    results = []
    for elements in (1, 1 << 30):
        patch_everywhere(monkeypatch, 'CHUNK_ELEMENTS', elements)
        assert len(fm._chunks(n, c, p)) == (n if elements == 1 else 1)
        zz = z.clone().requires_grad_(True)
        out = fast_message(zz, exclude_self=exclude_self)
        (out * cot).sum().backward()
        results.append((out.detach(), zz.grad))
        assert rel_error(out, reference_message(z, exclude_self), z) <= 1e-5
        grad_err = (zz.grad.double() - zr.grad).abs().max()
        assert grad_err <= 1e-4 * zr.grad.abs().max()
    bound = 2 * float32_sum_bound(c, float(z.abs().max()))
    diff = (results[0][0] - results[1][0]).abs().max()
    assert diff <= bound, (float(diff), bound)


@pytest.mark.parametrize('exclude_self', [True, False])
@pytest.mark.parametrize('group_size', [None, 3])
def test_fast_message_gradcheck(exclude_self, group_size):
    """End-to-end gradcheck (float64, tight tolerance so that bin edges and
    the isolation test stay put under the finite-difference steps)."""
    v = torch.tensor([[0.0, 0.4, 0.5, 2.9, 3.3, 7.0]], dtype=torch.float64)
    z = make_z(v, 3, scale=0.3, dtype=torch.float64).requires_grad_(True)

    def fn(z):
        return fast_message(z, exclude_self=exclude_self,
                            group_size=group_size, tol=1e-12)

    assert torch.autograd.gradcheck(fn, (z, ), atol=1e-6)


@pytest.mark.parametrize('exclude_self', [True, False])
@pytest.mark.parametrize('dist', ['normal2', 'concentrated', 'one_outlier',
                                  'isolated_near_crowd'])
def test_gradients_match_reference(dist, exclude_self):
    v = _distribution(dist, 2, 1024)
    z = make_z(v, 5)
    cot = torch.randn_like(z)
    zf = z.clone().requires_grad_(True)
    (fast_message(zf, exclude_self=exclude_self) * cot).sum().backward()
    zr = z.double().requires_grad_(True)
    (reference_message(zr, exclude_self) * cot.double()).sum().backward()
    err = (zf.grad.double() - zr.grad).abs().max()
    scale = zr.grad.abs().max()
    assert torch.isfinite(zf.grad).all()
    assert err <= 1e-4 * scale


class LargestTensor(TorchDispatchMode):
    """Records the largest tensor (in elements) any operation creates."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in (out if isinstance(out, (tuple, list)) else (out, )):
            if isinstance(t, torch.Tensor):
                # sparse matrices count their stored entries
                size = (t.numel() if t.layout == torch.strided else
                        t._nnz())
                self.largest = max(self.largest, size)
        return out


def test_fast_path_never_builds_a_channel_by_channel_tensor():
    """No tensor with C * C / 8 or more elements is created, even when all
    channels are within reach of each other (all equal). The largest
    tensors are O(C P) or the translation matrix, whose size is capped
    independently of C (``TOEPLITZ_MAX_SIZE^2`` = C * C / 16 here)."""
    c = 4096
    assert fm.TOEPLITZ_MAX_SIZE**2 <= c * c / 16

    for dist in ('all_equal', 'concentrated', 'spread', 'normal2'):
        z = make_z(_distribution(dist, 1, c), 2).requires_grad_(True)
        rec = LargestTensor()
        with rec:
            out = fast_message(z)
            out.sum().backward()
        assert rec.largest < c * c / 8, (dist, rec.largest)


def test_auto_is_fast_at_2048_and_dense_at_small_c(monkeypatch):
    cpu = torch.device('cpu')
    assert choose_message_impl(2048, 49, cpu) == 'fast'
    assert choose_message_impl(2048, 1681, cpu) == 'fast'
    assert choose_message_impl(512, 49, cpu) == 'fast'
    assert choose_message_impl(64, 49, cpu) == 'dense'
    assert choose_message_impl(2, 1681, cpu) == 'dense'
    # the measured crossovers (128-192 channels at P = 49, 256-384 at
    # P = 196), never below the floor; CUDA: a constant
    assert fm.fast_min_channels(49, cpu) == 175
    assert fm.fast_min_channels(196, cpu) == 350
    assert fm.fast_min_channels(4, cpu) == fm.FAST_MIN_CHANNELS['cpu'] == 128
    assert fm.fast_min_channels(1681, cpu) < 1024
    for p in (1, 49, 196, 1681):
        threshold = fm.fast_min_channels(p, cpu)
        assert choose_message_impl(threshold - 1, p, cpu) == 'dense'
        assert choose_message_impl(threshold, p, cpu) == 'fast'
    # not measured on CUDA: 'auto' stays dense there, at any size
    assert fm.fast_min_channels(49, torch.device('cuda')) is None
    assert choose_message_impl(4096, 49, torch.device('cuda')) == 'dense'

    calls = []
    real_fast, real_dense = fm.fast_message, fm.dense_message
    patch_everywhere(monkeypatch, 'fast_message',
                        lambda *a, **k: calls.append('fast') or real_fast(
                            *a, **k))
    patch_everywhere(monkeypatch, 'dense_message',
                        lambda *a, **k: calls.append('dense') or real_dense(
                            *a, **k))
    z = make_z(_distribution('normal2', 1, 2048), 3)
    message_passing(z)
    message_passing(z, group_size=64)
    message_passing(z, impl='dense')
    message_passing(z[:, :64], impl='fast')
    assert calls == ['fast', 'dense', 'dense', 'fast']


@pytest.mark.parametrize('impl', ['auto', 'dense', 'fast'])
def test_message_passing_dispatch_matches_reference(impl):
    z = make_z(_distribution('bimodal', 2, 512), 6)
    out = message_passing(z, exclude_self=True, group_size=256, impl=impl)
    assert rel_error(out, reference_message(z, True, 256), z, 256) <= 1e-5


def test_float32_under_autocast_and_half_inputs():
    z = make_z(_distribution('normal2', 2, 512), 8)
    ref = reference_message(z, True)
    with torch.autocast(device_type='cpu', dtype=torch.bfloat16):
        out = fast_message(z)
    assert out.dtype == torch.float32
    assert rel_error(out, ref, z) <= 1e-5
    zb = z.to(torch.bfloat16)
    outb = fast_message(zb)
    assert outb.dtype == torch.bfloat16
    refb = reference_message(zb.float(), True)
    assert rel_error(outb, refb, zb.float()) <= 1e-2


def test_non_finite_input_falls_back_to_dense():
    z = make_z(_distribution('normal2', 1, 400), 3)
    z[0, 3, 0] = float('nan')
    out = fast_message(z)
    dense = dense_message(z, True, None)
    assert torch.equal(torch.isnan(out), torch.isnan(dense))


def test_errors_name_the_function_argument_and_value():
    z = torch.randn(1, 8, 3)
    with pytest.raises(ValueError, match=r"fast_message: z must be a \(N, C, "
                       r"P\) tensor, got \(8, 3\)"):
        fast_message(z[0])
    with pytest.raises(ValueError, match='tol must be a float in \\(0, 1\\), '
                       'got 0'):
        fast_message(z, tol=0)
    with pytest.raises(TypeError, match="tol must be a float in \\(0, 1\\), "
                       "got str '1e-5'"):
        fast_message(z, tol='1e-5')
    with pytest.raises(ValueError, match='group_size must be a positive '
                       'divisor of the channel count 8, got 3'):
        fast_message(z, group_size=3)
    with pytest.raises(TypeError, match='exclude_self must be a bool, got '
                       'int 1'):
        fast_message(z, exclude_self=1)
    with pytest.raises(ValueError, match="message_passing: impl must be one "
                       "of \\('auto', 'dense', 'fast'\\), got 'sparse'"):
        message_passing(z, impl='sparse')


# --- C3Block's message_impl / message_tol -----------------------------------


def _count_calls(monkeypatch):
    calls = []
    real_fast, real_dense = fm.fast_message, fm.dense_message
    patch_everywhere(monkeypatch, 'fast_message',
                        lambda *a, **k: calls.append('fast') or real_fast(
                            *a, **k))
    patch_everywhere(monkeypatch, 'dense_message',
                        lambda *a, **k: calls.append('dense') or real_dense(
                            *a, **k))
    return calls


def test_c3block_uses_the_fast_path_at_2048_channels_by_default(monkeypatch):
    calls = _count_calls(monkeypatch)
    block = build_from_root(dict(type='C3Block', in_channels=2048,
                                 grid_size=3))
    assert block.message_impl == 'auto' and block.message_tol == 1e-5
    assert "message_impl='auto'" in repr(block)
    block(torch.randn(2, 2048, 3, 3))
    assert calls == ['fast']
    small = build_from_root(dict(type='C3Block', in_channels=64,
                                 grid_size=3))
    small(torch.randn(2, 64, 3, 3))
    grouped = build_from_root(dict(type='C3Block', in_channels=2048,
                                   grid_size=3, group_size=64))
    grouped(torch.randn(1, 2048, 3, 3))
    assert calls == ['fast', 'dense', 'dense']


def _inf_norm(weight: torch.Tensor) -> float:
    """Largest absolute row sum: ``|W y|_max <= _inf_norm(W) * |y|_max``."""
    return float(weight.detach().abs().sum(dim=1).max())


@pytest.mark.parametrize('exclude_self', [True, False])
def test_c3block_fast_matches_dense(exclude_self):
    """Inside the block, the fast message meets its tolerance, and the
    block's output differs from the float64 restatement (``x +
    g_out(relu(g_in(zbar)))`` with the reference message) by no more than
    the message's actual error carried through the decoder (Lipschitz with
    constant ``|W_out|_inf |W_in|_inf`` in the max norm) plus the float32
    rounding of the decoder's short sums and of the residual add. That
    bound is far below the effect of ``exclude_self`` itself, so the test
    tells the two settings apart; the dense path is held to the same
    bound."""
    block = build_from_root(dict(type='C3Block', in_channels=2048,
                                 grid_size=(3, 4), ratio=4,
                                 exclude_self=exclude_self,
                                 message_impl='fast'))
    # channel means spread widely, so that each channel's own weight in the
    # softmax (what exclude_self removes) is large enough to see
    x = torch.randn(2, 2048, 3, 4) + torch.randn(2, 2048, 1, 1) * 30
    z = block.encoder(x.flatten(2)).detach()
    decoder64 = copy.deepcopy(block.decoder).double()

    def restated(exclude):
        zbar = reference_message(z, exclude)
        with torch.no_grad():
            return x.double() + decoder64(zbar).reshape(x.shape), zbar

    out_ref, ref = restated(exclude_self)
    msg = block._message(z)
    assert rel_error(msg, ref, z) <= block.message_tol
    message_err = float((msg.double() - ref).abs().max())
    lipschitz = _inf_norm(decoder64.fc_out.weight) * _inf_norm(
        decoder64.fc_in.weight)
    magnitude = lipschitz * float(ref.abs().max()) + float(x.abs().max())
    bound = lipschitz * message_err + float32_sum_bound(12 + 3 + 1,
                                                        magnitude)
    with torch.no_grad():
        out_fast = block(x)
    diff = float((out_fast.double() - out_ref).abs().max())
    assert diff <= bound, (diff, bound)
    effect = float((restated(not exclude_self)[0] - out_ref).abs().max())
    assert effect > 20 * bound, (effect, bound)
    # the dense path, whose message is exact up to rounding in 2048-term sums
    block.message_impl = 'dense'
    with torch.no_grad():
        out_dense = block(x)
    dense_bound = lipschitz * float32_sum_bound(
        2048 + 12, float(z.abs().max())) + bound
    assert float((out_dense.double() - out_ref).abs().max()) <= dense_bound


def test_c3block_fast_path_trains():
    block = build_from_root(dict(type='C3Block', in_channels=512,
                                 grid_size=3, ratio=1,
                                 message_impl='fast', message_tol=1e-4))
    out = block(torch.randn(3, 512, 5, 5))
    out.square().mean().backward()
    for name, param in block.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name
    # an RoI head can see zero RoIs
    empty = block(torch.randn(0, 512, 3, 3))
    assert empty.shape == (0, 512, 3, 3)


def test_c3block_message_option_errors():
    with pytest.raises(ValueError, match="C3Block: message_impl must be one "
                       "of \\('auto', 'dense', 'fast'\\), got 'sparse'"):
        build_from_root(dict(type='C3Block', in_channels=8, grid_size=3,
                             message_impl='sparse'))
    with pytest.raises(ValueError, match='C3Block: message_tol must be a '
                       'float in \\(0, 1\\), got 1.5'):
        build_from_root(dict(type='C3Block', in_channels=8, grid_size=3,
                             message_tol=1.5))
    with pytest.raises(TypeError, match="C3Block: message_tol must be a "
                       "float in \\(0, 1\\), got str '1e-5'"):
        build_from_root(dict(type='C3Block', in_channels=8, grid_size=3,
                             message_tol='1e-5'))


def test_double_backward_raises_instead_of_being_wrong():
    """The hand-written backward is once-differentiable: asking for a
    second derivative raises."""
    v = _distribution('normal2', 1, 300)
    z = make_z(v, 5).requires_grad_(True)
    out = fast_message(z, exclude_self=True)
    (grad, ) = torch.autograd.grad((out * out).sum(), z, create_graph=True)
    with pytest.raises(RuntimeError, match='once_differentiable'):
        grad.sum().backward()


def test_exact_rows_are_released_after_backward(monkeypatch):
    """The exactly computed rows go through save_for_backward: once the
    backward pass has run they are freed, even while the output (and so
    the autograd node) is still alive."""
    import gc
    import weakref
    refs = []
    original = fm._exact_weights

    def recording(*args):
        weights = original(*args)
        refs.append(weakref.ref(weights))
        return weights

    patch_everywhere(monkeypatch, '_exact_weights', recording)
    v = _distribution('isolated_near_crowd', 2, 512)
    z = make_z(v, 5).requires_grad_(True)
    out = fast_message(z, exclude_self=True)
    assert refs and refs[0]() is not None, 'no exact rows in this input'
    out.sum().backward()
    gc.collect()
    assert out.grad_fn is not None  # the node is alive ...
    assert refs[0]() is None  # ... its saved exact rows are not


def test_module_level_caches_hold_host_memory_only():
    """The cached translation filters are CPU float64 whatever device and
    dtype the message runs on; each call moves its own copy."""
    fm._toeplitz_matrix.cache_clear()
    fm._translation_spectrum.cache_clear()
    translation = fm._Translation(0.5, 4, 6, 20, torch.float32,
                                  torch.device('cpu'), 'toeplitz')
    assert translation.matrix.dtype == torch.float32
    fm._translate(torch.randn(20, 7, 5, dtype=torch.float32), 0.5, 4, 6,
                  'fft')
    cached = [fm._toeplitz_matrix(0.5, 4, 6, 20),
              fm._translation_spectrum(0.5, 4, 6, fm._fft_size(20 + 12))]
    assert fm._toeplitz_matrix.cache_info().hits == 1
    assert fm._translation_spectrum.cache_info().hits == 1
    for tensor in cached:
        assert tensor.device.type == 'cpu'
        assert tensor.dtype in (torch.float64, torch.complex128)
    assert translation.matrix is not cached[0]


@pytest.mark.parametrize('exclude_self', [True, False])
def test_dense_path_in_chunks_is_the_same_message(exclude_self):
    """Groups beyond ``max_elements`` affinities are processed in chunks
    (recomputed in the backward pass): same message and gradient as one
    batch, up to float32 rounding of the same sums."""
    z = make_z(_distribution('normal2', 6, 64), 5)
    cot = torch.randn_like(z)
    results = []
    for budget in (None, 64 * 64 * 2):  # all at once, two groups at a time
        zz = z.clone().requires_grad_(True)
        out = dense_message(zz, exclude_self, 32, max_elements=budget)
        (out * cot).sum().backward()
        results.append((out.detach(), zz.grad))
    bound = 2 * float32_sum_bound(32, float(z.abs().max()))
    assert (results[0][0] - results[1][0]).abs().max() <= bound
    # gradients: both against the float64 reference, as elsewhere
    zr = z.double().requires_grad_(True)
    (reference_message(zr, exclude_self, 32) * cot.double()).sum().backward()
    for _, grad in results:
        err = (grad.double() - zr.grad).abs().max()
        assert err <= 1e-4 * zr.grad.abs().max()


def test_dense_path_memory_is_bounded_in_forward_and_backward():
    """With a budget of two groups' affinities, no tensor of the forward or
    the backward pass is larger than that (times the few affinity-sized
    temporaries of one chunk), whatever the number of groups."""
    c, groups = 64, 40
    budget = 2 * c * c
    z = make_z(_distribution('normal2', groups, c), 3).requires_grad_(True)
    rec = LargestTensor()
    with rec:
        out = dense_message(z, True, None, max_elements=budget)
        out.sum().backward()
    assert rec.largest <= budget, rec.largest
    # and the backward pass keeps no chunk's affinities: what autograd saves
    # is far less than all groups' C x C matrices
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(
            lambda t: saved.append(t.numel()) or t, lambda t: t):
        dense_message(z, True, None, max_elements=budget)
    assert sum(saved) < groups * c * c / 4, sum(saved)
    # without a budget the whole batch's affinities are one tensor
    rec = LargestTensor()
    with rec:
        dense_message(z.detach(), True, None)
    assert rec.largest >= groups * c * c


# --------------------------------------------------------------------------
# The centred expansion (summaries within MAX_SPAN of each other)
# --------------------------------------------------------------------------
def _strategy_calls(monkeypatch):
    """Record which fast strategy each call of fast_message takes."""
    calls = []
    real_centred, real_apply = function.centred_message, \
        function._FastMessage.apply
    monkeypatch.setattr(function, 'centred_message',
                        lambda *a, **k: calls.append('centred') or
                        real_centred(*a, **k))
    monkeypatch.setattr(function._FastMessage, 'apply',
                        lambda *a, **k: calls.append('binned') or
                        real_apply(*a, **k))
    return calls


def test_strategy_follows_the_span(monkeypatch):
    """Groups within MAX_SPAN take the centred expansion, wider ones the
    binned one; the widest group of the batch decides."""
    calls = _strategy_calls(monkeypatch)
    span = fm.MAX_SPAN
    v = torch.linspace(0, 1, 256).repeat(2, 1)
    fast_message(make_z(v * span * 0.99, 3))
    fast_message(make_z(v * span * 1.01, 3))
    wide = v * span * 0.5
    wide[1] = wide[1] * 2.1  # one group beyond
    fast_message(make_z(wide, 3))
    assert calls == ['centred', 'binned', 'binned']


@pytest.mark.parametrize('exclude_self', [True, False])
@pytest.mark.parametrize('layout', ['uniform', 'ends', 'lone', 'equal'])
def test_centred_meets_the_tolerance_up_to_the_widest_span(exclude_self,
                                                           layout):
    """At the widest span the centred path accepts, and for the layouts
    that stress it (all channels at the two ends; one channel alone at one
    end, whose denominator is the smallest), float32 meets ``tol`` and
    float64 meets a 1e-10 one."""
    torch.manual_seed(3)
    c, span = 512, fm.MAX_SPAN * 0.999
    if layout == 'uniform':
        v = torch.rand(3, c) * span
    elif layout == 'ends':
        v = (torch.rand(3, c) > 0.5).float() * span
    elif layout == 'lone':
        v = torch.zeros(3, c)
        v[:, 7] = span
    else:
        v = torch.full((3, c), -0.4)
    for dtype, tol in ((torch.float32, 1e-5), (torch.float64, 1e-10)):
        z = make_z(v, 5, scale=0.5, dtype=dtype)
        assert fm.centred_order(float(
            (z.mean(2).amax(1) - z.mean(2).amin(1)).max()), tol) is not None
        out = fast_message(z, exclude_self, None, tol)
        assert out.dtype == dtype
        assert rel_error(out, reference_message(z, exclude_self), z) <= tol


def test_centred_order_bound_holds_and_is_the_smallest():
    """The order meets the stated bound ``2 eps_K / (exp(-4 r^2) - eps_K)
    <= 0.4 tol`` and one order less does not; spans beyond MAX_SPAN or
    tolerances beyond MAX_ORDER give None."""
    def bound(span, order):
        r2 = (span / 2)**2
        eps = (2 * r2)**(order + 1) / math.factorial(order + 1) * math.exp(
            2 * r2)
        return 2 * eps / (math.exp(-4 * r2) - eps)

    for span in (0.0, 0.01, 0.3, 1.0, fm.MAX_SPAN):
        for tol in (1e-3, 1e-5, 1e-8):
            order = fm.centred_order(span, tol)
            assert order is not None and bound(span, order) <= 0.4 * tol
            if order > 0:
                assert bound(span, order - 1) > 0.4 * tol
    assert fm.centred_order(fm.MAX_SPAN * 1.001, 1e-5) is None
    assert fm.centred_order(float('nan'), 1e-5) is None
    assert fm.centred_order(fm.MAX_SPAN, 1e-300) is None


@pytest.mark.parametrize('exclude_self', [True, False])
def test_centred_gradcheck_in_z_and_v(exclude_self):
    """Autograd through the centred expansion is the gradient of the
    approximation, in the values and in separately given summaries."""
    z = torch.randn(2, 6, 3, dtype=torch.float64) * 0.2
    v = torch.rand(2, 6, dtype=torch.float64)
    z.requires_grad_(True)
    v.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda a, b: fm.centred_message(a, b, exclude_self, 8), (z, v))


def _centred_by_autograd(z, v, exclude_self, order):
    """The centred expansion written as plain tensor operations, for
    autograd to differentiate: ``K~_ij = sum_k A_ik B_jk`` with ``A_ik =
    exp(-a_i^2) (a_i / r)^k``, ``B_jk = A_jk (2 r^2)^k / k!``, ``a = v -
    c``; centre ``c`` and half-span ``r`` taken as constants."""
    vd = v.detach()
    hi, lo = vd.amax(1, keepdim=True), vd.amin(1, keepdim=True)
    r = ((hi - lo) / 2).clamp_min(1e-3)
    a = v - (hi + lo) / 2
    k = torch.arange(order + 1, dtype=v.dtype)
    left = torch.exp(-a * a).unsqueeze(2) * (a / r).unsqueeze(2)**k
    right = left * ((2 * r * r).unsqueeze(2)**k / torch.exp(
        torch.lgamma(k + 1)))
    kernel = left @ right.transpose(1, 2)  # (B, C, C)
    if exclude_self:
        kernel = kernel - torch.diag_embed(torch.diagonal(kernel, 0, 1, 2))
    return (kernel @ z) / kernel.sum(2, keepdim=True)


@pytest.mark.parametrize('exclude_self', [True, False])
@pytest.mark.parametrize('order,span', [(0, 0.01), (3, 0.5), (8, 1.2),
                                        (12, fm.MAX_SPAN)])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_centred_written_backward_matches_autograd(exclude_self, order,
                                                   span, dtype):
    """The centred message's written forward and backward equal autograd
    through the expansion written as a ``C x C`` kernel: values and both
    gradients to 1e-5 relative in float32 (sums of ``C`` terms of size
    up to 1 over a denominator of at least ``(C - 1) exp(-4 r^2)``), 1e-12
    in float64, including the group of equal summaries."""
    g = torch.Generator().manual_seed(order)
    b, c, p = 3, 40, 5
    v = torch.rand(b, c, generator=g, dtype=torch.float64) * span
    v[2] = 0.3  # equal summaries: r at its floor
    z = torch.randn(b, c, p, generator=g, dtype=torch.float64)
    up = torch.randn(b, c, p, generator=g, dtype=torch.float64)
    z, v, up = (t.to(dtype) for t in (z, v, up))
    z64, v64 = (t.double().requires_grad_() for t in (z, v))
    ref = _centred_by_autograd(z64, v64, exclude_self, order)
    ref_gz, ref_gv = torch.autograd.grad(ref, (z64, v64), up.double())
    zz, vv = z.clone().requires_grad_(), v.clone().requires_grad_()
    got = fm.centred_message(zz, vv, exclude_self, order)
    got_gz, got_gv = torch.autograd.grad(got, (zz, vv), up)
    rtol = 1e-5 if dtype == torch.float32 else 1e-12
    for a, e in ((got, ref), (got_gz, ref_gz), (got_gv, ref_gv)):
        assert a.dtype == dtype
        scale = float(e.abs().max())
        assert float((a.double() - e).abs().max()) <= rtol * scale, (
            float((a.double() - e).abs().max()), scale)
    # one input at a time: the other's gradient is not asked for
    (only_z, ) = torch.autograd.grad(
        fm.centred_message(zz, v, exclude_self, order), zz, up)
    (only_v, ) = torch.autograd.grad(
        fm.centred_message(z, vv, exclude_self, order), vv, up)
    torch.testing.assert_close(only_z, got_gz, rtol=0, atol=0)
    torch.testing.assert_close(only_v, got_gv, rtol=0, atol=0)


def test_centred_double_backward_raises():
    """The written backward is once-differentiable: a second derivative
    raises instead of being silently wrong."""
    z = torch.randn(2, 30, 4, requires_grad=True)
    v = torch.rand(2, 30, requires_grad=True)
    out = fm.centred_message(z, v, True, 5)
    (gz, ) = torch.autograd.grad((out * out).sum(), z, create_graph=True)
    with pytest.raises(RuntimeError, match='once_differentiable'):
        gz.sum().backward()


# --------------------------------------------------------------------------
# Summaries given apart from the values (the C3 block's factorized path)
# --------------------------------------------------------------------------
def reference_with_summaries(z, v, exclude_self, group_size=None):
    """Float64 softmax message of ``z`` weighted by given ``v``."""
    n, c, p = z.shape
    g = c if group_size is None else group_size
    zz = z.double().reshape(n * (c // g), g, p)
    vv = v.double().reshape(n * (c // g), g)
    scores = -(vv[:, :, None] - vv[:, None, :])**2
    if exclude_self:
        scores = scores.masked_fill(torch.eye(g, dtype=torch.bool), -math.inf)
    return (torch.softmax(scores, dim=2) @ zz).reshape(n, c, p)


@pytest.mark.parametrize('impl', ['dense', 'fast'])
@pytest.mark.parametrize('spread', [0.2, 6.0])
@pytest.mark.parametrize('exclude_self, group_size', [(True, None),
                                                      (False, 128)])
def test_given_summaries_weight_the_message(impl, spread, exclude_self,
                                            group_size):
    """With ``v`` given, the weights come from it, not from the means of
    ``z``; values and both gradients match the float64 restatement."""
    torch.manual_seed(4)
    z = torch.randn(2, 256, 4, dtype=torch.float64, requires_grad=True)
    v = (torch.randn(2, 256, dtype=torch.float64) * spread).requires_grad_()
    up = torch.randn(2, 256, 4, dtype=torch.float64)
    out = message_passing(z, exclude_self, group_size, impl=impl, tol=1e-10,
                          v=v)
    ref = reference_with_summaries(z, v, exclude_self, group_size)
    assert rel_error(out, ref.detach(), z) <= 1e-9
    grads = torch.autograd.grad(out, (z, v), up)
    ref_grads = torch.autograd.grad(ref, (z, v), up)
    for g, r in zip(grads, ref_grads):
        assert float((g - r).abs().max() / r.abs().max()) <= 1e-8
    # the means of z would weight it differently
    assert rel_error(out, reference_message(z.detach(), exclude_self,
                                            group_size), z) > 1e-3


def test_given_summaries_of_the_wrong_shape_raise():
    z = torch.randn(2, 8, 3)
    for fn in (lambda v: dense_message(z, True, None, v=v),
               lambda v: fast_message(z, v=v),
               lambda v: message_passing(z, v=v)):
        with pytest.raises(ValueError, match=r'v must be None or a \(2, 8\) '
                           r'tensor .* got \(2, 8, 1\)'):
            fn(torch.randn(2, 8, 1))


def test_many_isolated_channels_go_to_the_chunked_dense_path(monkeypatch):
    """Channel means spread over hundreds of units isolate most channels;
    their exact rows would be a (groups, M, C) tensor in one piece, so the
    call goes to the dense path (chunked) and still gives the exact message;
    a few isolated channels stay on the fast path."""
    calls = []
    real_dense = function.dense_message
    monkeypatch.setattr(function, 'dense_message',
                        lambda *a, **k: calls.append('dense') or real_dense(
                            *a, **k))
    torch.manual_seed(5)
    # 20 x 2048 channels 1.5 units apart (isolated: nobody within 1): exact
    # rows of 20 x 2048 x 2048 weights, beyond DENSE_MAX_ELEMENTS
    v = torch.stack([torch.randperm(2048) * 1.5 for _ in range(20)])
    z = make_z(v, 4, scale=0.3)
    out = fast_message(z)
    assert calls == ['dense']
    assert rel_error(out, reference_message(z, True), z) <= 1e-5
    few = torch.randn(3, 256) * 0.3
    few[:, :3] = torch.tensor([40.0, 80.0, -60.0])
    fast_message(make_z(few, 4))
    assert calls == ['dense']
