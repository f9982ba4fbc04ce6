"""C3 message passing without the ``C x C`` affinity matrix.

Yang, Ren, Gan, Zhu, Parikh, "Cross-channel Communication Networks",
NeurIPS 2019, Sec. 3 "Message Passing":

    v_i = mean_p z_i[p],   zbar_i = sum_j softmax_j(-(v_i - v_j)^2) z_j

Written densely this builds a ``C x C`` score matrix per sample (and per
channel group): ``O(C^2 P)`` time and ``O(C^2)`` memory, which dominates stage
4 of a C4 detector (every RoI is a sample with 2048 channels). Because the
softmax is shift invariant, the message is a ratio of two Gauss transforms in
one dimension with vector-valued weights,

    zbar_i = sum_j K(v_i - v_j) z_j / sum_j K(v_i - v_j),   K(u) = exp(-u^2),

and a 1-D Gauss transform can be evaluated in ``O(C P)`` time to a requested
accuracy (Greengard and Strain, "The fast Gauss transform", SIAM J. Sci.
Stat. Comput. 1991; here with Taylor expansions on both sides).

Method (:func:`fast_message`), per sample and channel group:

1. Bins. The summaries ``v`` are cut into bins of width ``h`` on a grid
   anchored at the group's minimum. Each channel gets the offset
   ``delta_j = v_j - c_b(j)`` from its bin centre, ``|delta_j| <= h / 2``.
   Runs of empty bins longer than the kernel's reach are shortened to
   ``reach + 1`` bins (found from the sorted ``v``), so that an outlier at
   ``v = 1e4`` costs one bin, not ``1e4 / h``.
2. Source moments. ``A_b,k = sum_{j in b} (delta_j / r)^k z_j`` for
   ``k = 0..p`` (``r = h / 2``): ``p + 1`` scatter-adds over the channels.
3. Translation. For a target bin ``T`` and a source bin ``B = T - o``
   (``Delta = o h``), Taylor's theorem on ``K(Delta + sigma - delta)`` in
   ``t = sigma - delta`` truncated at order ``p`` gives
   ``K ~ sum_{m+k<=p} K^(m+k)(Delta) (-1)^k sigma^m delta^k / (m! k!)`` with
   ``K^(n)(x) = (-1)^n H_n(x) exp(-x^2)`` (physicists' Hermite). The local
   coefficients ``L_T,m = sum_{|o|<=R} sum_k M_o[m, k] A_{T-o},k`` are one
   1-D convolution over the bin axis with a ``(p+1) x (p+1) x (2R+1)`` kernel.
   Source bins more than ``R`` bins away are skipped.
4. Evaluation. ``S_i = sum_m (sigma_i / r)^m L_{T(i),m}`` (Horner, ``p + 1``
   gathers). Numerator and denominator are carried together by appending a
   constant channel position of ones to ``z``.
5. Self exclusion. The expansion is exact at ``t = 0``, so the self pair
   contributes ``1 * z_i`` to the numerator and ``1`` to the denominator;
   ``exclude_self`` subtracts exactly that. When every other channel is far
   away (nearest neighbour farther than ``ISOLATION_RADIUS = 1``) this
   subtraction would cancel catastrophically, so these *isolated* targets
   are evaluated exactly instead: one row of scores against all channels of
   their group, with the softmax's max subtraction, as the dense path does
   (the softmax is taken relative to the nearest other channel, so it cannot
   underflow even when that channel is 100 units away).

Error control. Let ``tol`` be the requested error of the message relative to
``max |z|`` (the message is a convex combination of the ``z_j``, so this is
the natural scale). Every target that is not isolated has a denominator of at
least ``d_min = exp(-ISOLATION_RADIUS^2)`` with ``exclude_self`` (``1``
without). The per-pair truncation error ``E(h, p)`` (the largest remainder of
the order-``p`` Taylor polynomial of ``K`` over ``|t| <= h``, tabulated once
per ``(h, p)`` in float64 with a safety factor of 2) and the per-pair weight
of a skipped bin ``exp(-(R h)^2)`` are both held below
``tol * d_min / (5 C)``; then numerator and denominator are off by at most
``0.4 tol d_min`` and the message by at most ``tol`` (``C`` = channels per
group). Among bin widths ``h`` in ``(0.125, 0.25, 0.5, 1)`` the one with the
smallest estimated cost (scatter/gather passes ``~ 2 (p+1) C P`` against the
translation ``~ n_bins (2R+1) (p+1)^2 P``) is used, so concentrated ``v``
(one or two bins) and spread ``v`` (tens of bins) are both cheap. Float32
rounding sets a floor near ``1e-6``; float64 inputs are computed in float64.

When it pays (:func:`choose_message_impl`). The fast path costs ``O(C P p)``
plus the sort, the dense path ``O(C^2 P)``. On the CPU the fast path wins
from a few hundred channels per group (the measured crossover is
``FAST_MIN_CHANNELS['cpu']``); 'auto' therefore keeps the dense path for
small groups and switches to the fast one at and above the crossover.

Gradients. :class:`_GaussTransform` has a written backward (the gradient of
the approximation itself, not of the exact softmax): the translation is its
own adjoint because ``K`` is even, so the backward is another moment pass, one
convolution and two evaluation passes, and needs none of the forward's
intermediate ``(C, P)`` tensors.
"""
import functools
import math
import warnings
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ._message_passing import dense_message

#: Nearest-neighbour distance in ``v`` beyond which a target is evaluated
#: exactly when the self pair is excluded (see the module docstring).
ISOLATION_RADIUS = 1.0

#: Candidate bin widths ``h`` (in units of ``v``).
BIN_WIDTHS = (0.125, 0.25, 0.5, 1.0)

#: Largest expansion order considered.
MAX_ORDER = 40

#: Smallest channel count per group from which 'auto' picks the fast path,
#: per device type. CPU: measured crossover (2 cores, torch 2.9.1, P = 49 and
#: P = 196, see ``tools/analysis_tools/benchmark_message_passing.py``). CUDA:
#: not measured; chosen where the dense ``C x C`` intermediates of a batch of
#: RoIs start to cost gigabytes.
FAST_MIN_CHANNELS = {'cpu': 384, 'cuda': 1024}

#: Accepted values of ``impl`` (and of ``C3Block``'s ``message_impl``).
MESSAGE_IMPLS = ('auto', 'dense', 'fast')

# Relative costs (measured on the CPU, single thread): one sparse
# multiply-add of the moment/evaluation passes per channel, order and
# position = 1; one multiply-add of the direct translation = 0.16; one bin of
# the float64 FFT translation per order (transforms, products, copies) = 33.
_CONV_COST = 0.16
_FFT_COST = 33.0


def _kernel_derivatives(x: Tensor, order: int) -> Tensor:
    """``K^(n)(x)`` for ``n = 0..order``, ``K(x) = exp(-x^2)``.

    Uses ``K^(n)(x) = (-1)^n H_n(x) exp(-x^2)`` with the physicists' Hermite
    recurrence ``H_{n+1} = 2 x H_n - 2 n H_{n-1}``.

    Shape:
        - x: any shape ``S``
        - output: ``(order + 1, *S)``
    """
    herm = [torch.ones_like(x)]
    if order >= 1:
        herm.append(2 * x)
    for n in range(1, order):
        herm.append(2 * x * herm[n] - 2 * n * herm[n - 1])
    gauss = torch.exp(-x * x)
    return torch.stack([(-1)**n * h * gauss for n, h in enumerate(herm)])


@functools.lru_cache(maxsize=None)
def _truncation_errors(h: float) -> Tuple[float, ...]:
    """``_truncation_error(h, p)`` for ``p = 0..MAX_ORDER`` (one pass)."""
    t = torch.linspace(-h, h, 401, dtype=torch.float64)
    offsets = torch.arange(0, int(math.ceil(8.0 / h)) + 1,
                           dtype=torch.float64) * h
    deriv = _kernel_derivatives(offsets, MAX_ORDER)  # (p + 1, O)
    powers = torch.stack([t**n / float(math.factorial(n))
                          for n in range(MAX_ORDER + 1)])  # (p + 1, T)
    # (p+1, O, 1) * (p+1, 1, T) -> (p+1, O, T), partial sums over the order
    approx = torch.cumsum(deriv[:, :, None] * powers[:, None, :], dim=0)
    exact = torch.exp(-(offsets[:, None] + t[None, :])**2)  # (O, T)
    errors = (approx - exact).abs().amax(dim=(1, 2))
    return tuple(2.0 * float(e) for e in errors)


def _truncation_error(h: float, order: int) -> float:
    """Largest error of the order-``p`` Taylor polynomial of ``K`` about any
    grid offset ``Delta = o h`` over steps ``|t| <= h``, times 2 for safety.

    The two-sided expansion in ``(sigma, delta)`` truncated at total degree
    ``p`` equals this one-sided polynomial in ``t = sigma - delta``, and
    ``|t| <= h`` because both offsets lie within half a bin of their centre.
    """
    return _truncation_errors(h)[order]


@functools.lru_cache(maxsize=None)
def _translation_weight(h: float, order: int, reach: int) -> Tensor:
    """Convolution kernel of the translation step, float64.

    ``W[m, k, s] = M_{reach - s}[m, k]`` with
    ``M_o[m, k] = K^(m+k)(o h) (-1)^k r^(m+k) / (m! k!)`` for ``m + k <= p``
    (0 otherwise), ``r = h / 2`` (moments and evaluation use offsets scaled
    by ``1 / r``), so that ``conv1d(A, W, padding=reach)`` computes
    ``L_T,m = sum_o sum_k M_o[m, k] A_{T-o},k``.

    Shape:
        - output: ``(p + 1, p + 1, 2 reach + 1)``
    """
    r = h / 2
    offsets = torch.arange(reach, -reach - 1, -1, dtype=torch.float64) * h
    deriv = _kernel_derivatives(offsets, order)  # (p + 1, 2 reach + 1)
    weight = torch.zeros(order + 1, order + 1, 2 * reach + 1,
                         dtype=torch.float64)
    for m in range(order + 1):
        for k in range(order + 1 - m):
            scale = (-1)**k * r**(m + k) / (
                math.factorial(m) * math.factorial(k))
            weight[m, k] = deriv[m + k] * scale
    return weight


def _expansion_candidates(tol: float, channels: int,
                          exclude_self: bool) -> List[Tuple[float, int, int]]:
    """``(h, p, reach)`` for each bin width that can meet ``tol``."""
    d_min = math.exp(-ISOLATION_RADIUS**2) if exclude_self else 1.0
    budget = tol * d_min / (5.0 * channels)
    reach_dist = math.sqrt(max(-math.log(budget), 0.0))
    out = []
    for h in BIN_WIDTHS:
        for order in range(1, MAX_ORDER + 1):
            if _truncation_error(h, order) <= budget:
                out.append((h, order, max(1, math.ceil(reach_dist / h))))
                break
    return out


def _sorted_summaries(v: Tensor) -> Tuple[Tensor, Tensor]:
    """``v`` sorted per group and the sorting permutation.

    Shape:
        - v: ``(B, C)``, detached
        - outputs: ``(B, C)``
    """
    return torch.sort(v, dim=1)


def _bins(v_sorted: Tensor, perm: Tensor, h: float,
          reach: int) -> Tuple[Tensor, Tensor, int]:
    """Grid bins of width ``h`` anchored at each group's minimum, with long
    empty runs shortened.

    Returns the (uncompressed) bin index ``b`` of every channel, its
    compressed bin index ``g`` (bin offsets up to ``reach`` are kept exactly;
    a run of more than ``reach`` empty bins becomes ``reach`` empty bins, so
    nothing across it interacts, as before) and the number of compressed
    bins ``G`` of the longest group.

    Shape:
        - v_sorted, perm: ``(B, C)`` from :func:`_sorted_summaries`
        - b, g: ``(B, C)`` int64, in the channels' original order
    """
    b_sorted = torch.floor((v_sorted - v_sorted[:, :1]) / h).long()
    steps = (b_sorted[:, 1:] - b_sorted[:, :-1]).clamp_(max=reach + 1)
    g_sorted = torch.cat([torch.zeros_like(b_sorted[:, :1]),
                          torch.cumsum(steps, dim=1)], dim=1)
    b = torch.empty_like(b_sorted).scatter_(1, perm, b_sorted)
    g = torch.empty_like(g_sorted).scatter_(1, perm, g_sorted)
    return b, g, int(g_sorted[:, -1].max()) + 1


def _num_bins(v_sorted: Tensor, h: float, reach: int) -> int:
    """``G`` of :func:`_bins` without building the per-channel indices."""
    b_sorted = torch.floor((v_sorted - v_sorted[:, :1]) / h)
    steps = (b_sorted[:, 1:] - b_sorted[:, :-1]).clamp_(max=reach + 1)
    return int(steps.sum(dim=1).max()) + 1 if steps.numel() else 1


def _fft_size(n: int) -> int:
    """Smallest ``2^a 3^b 5^c >= n``."""
    best = 1 << max(0, (n - 1).bit_length())
    for f3 in (1, 3, 9, 27, 81):
        for f5 in (1, 5, 25, 125):
            base = f3 * f5
            if base > best:
                continue
            size = base << max(0, math.ceil(math.log2(n / base)))
            while size < n:
                size *= 2
            best = min(best, size)
    return best


@functools.lru_cache(maxsize=64)
def _translation_spectrum(h: float, order: int, taps: int, nfft: int,
                          device: torch.device) -> Tensor:
    """Real FFT of the causal translation filter ``c[s] = M_{s - R}``.

    Shape:
        - output: ``(p + 1, p + 1, nfft // 2 + 1)`` complex128
    """
    weight = _translation_weight(h, order, taps)  # W[..., t] = M_{R - t}
    causal = weight.flip(-1).to(device)  # c[..., s] = M_{s - R}
    return torch.fft.rfft(causal, n=nfft, dim=-1)


def _translation_cost(h: float, order: int, reach: int,
                      num_bins: int) -> Tuple[str, float]:
    """Cheaper way to translate (``'direct'`` or ``'fft'``) and its cost per
    position, in units of one sparse multiply-add."""
    taps = min(reach, num_bins - 1)
    direct = _CONV_COST * num_bins * (2 * taps + 1) * (order + 1)**2
    fft = _FFT_COST * (order + 1) * _fft_size(num_bins + 2 * taps)
    return ('direct', direct) if direct <= fft else ('fft', fft)


def _translate(moments: Tensor,
               h: float,
               order: int,
               reach: int,
               batch: int,
               num_bins: int,
               method: Optional[str] = None) -> Tensor:
    """``L_T,m = sum_{|o| <= R} sum_k M_o[m, k] A_{T-o},k`` along the bins.

    Offsets beyond ``G - 1`` cannot occur, so the filter is cropped to
    ``R' = min(R, G - 1)``. The translation is a direct convolution in the
    compute dtype or, when cheaper (``method=None`` picks by
    :func:`_translation_cost`), a product of FFTs in float64 (an FFT spreads
    rounding over all bins; float64 keeps a crowded bin's rounding out of a
    sparse neighbour's expansion).

    Shape:
        - moments: ``(p + 1, B * G, Q)`` (``G`` bins per group, ``Q``
          positions incl. the denominator column)
        - output: same, contiguous
    """
    order1, _, q = moments.shape
    taps = min(reach, num_bins - 1)
    # (p+1, B*G, Q) -> (p+1, B, G, Q) -> (B, Q, p+1, G)
    x = moments.view(order1, batch, num_bins, q).permute(1, 3, 0, 2)
    if method is None:
        method = _translation_cost(h, order, reach, num_bins)[0]
    if method == 'direct':
        weight = _translation_weight(h, order, taps).to(
            device=moments.device, dtype=moments.dtype)
        # (B, Q, p+1, G) -> (B*Q, p+1, G)
        x = x.reshape(batch * q, order1, num_bins)
        y = F.conv1d(x, weight, padding=taps)
        y = y.view(batch, q, order1, num_bins)
    else:
        nfft = _fft_size(num_bins + 2 * taps)
        spec = _translation_spectrum(h, order, taps, nfft, moments.device)
        xf = torch.fft.rfft(x.to(torch.float64), n=nfft, dim=-1)
        # (B, Q, k, F) x (m, k, F) -> (B, Q, m, F)
        yf = torch.einsum('bqkf,mkf->bqmf', xf, spec)
        del xf
        y = torch.fft.irfft(yf, n=nfft, dim=-1)[..., taps:taps + num_bins]
        y = y.to(moments.dtype)
    # (B, Q, p+1, G) -> (p+1, B, G, Q) -> (p+1, B*G, Q)
    y = y.permute(2, 0, 3, 1).contiguous()
    return y.view(order1, batch * num_bins, q)


def _sparse_maps(offsets: Tensor, rows: Tensor, num_rows: int, order: int,
                 slope: bool = False) -> Tuple[Optional[Tensor], Tensor]:
    """Sparse (CSR) matrices of the moment and evaluation passes.

    ``moment[(k, row), i] = offsets_i^k`` if ``rows_i = row``, so that
    ``moment @ values`` gives every moment ``A_row,k`` in one sparse product;
    ``evaluate[i, (m, row)] = offsets_i^m`` if ``rows_i = row`` (the
    transpose), so that ``evaluate @ local`` evaluates every target's local
    expansion. With ``slope`` the evaluation values are the derivatives
    ``m offsets_i^(m-1)`` (for the backward) and no moment matrix is built.

    Shape:
        - offsets, rows: ``(R,)``
        - moment: ``((p + 1) * num_rows, R)``
        - evaluate: ``(R, (p + 1) * num_rows)``
    """
    count = rows.numel()
    dev = rows.device
    big = (order + 1) * max(count, num_rows) >= 2**31 - 1
    itype = torch.int64 if big else torch.int32
    ks = torch.arange(order + 1, device=dev)
    if slope:
        powers = ks * offsets[:, None]**(ks - 1).clamp(min=0)  # (R, p+1)
    else:
        powers = offsets[:, None]**ks  # (R, p+1)
    with warnings.catch_warnings():
        # torch flags its sparse CSR support as beta
        warnings.simplefilter('ignore', UserWarning)
        ev_crow = torch.arange(0, (order + 1) * count + 1, order + 1,
                               device=dev, dtype=itype)
        ev_col = (rows[:, None] + ks * num_rows).to(itype)  # (R, p+1)
        evaluate = torch.sparse_csr_tensor(
            ev_crow, ev_col.reshape(-1), powers.reshape(-1),
            size=(count, (order + 1) * num_rows))
        if slope:
            return None, evaluate
        perm = torch.sort(rows, stable=True)[1]
        powers = offsets[perm][None, :]**ks[:, None]  # (p+1, R), bin order
        crow = torch.zeros(num_rows + 1, dtype=itype, device=dev)
        crow[1:] = torch.cumsum(torch.bincount(rows, minlength=num_rows), 0)
        mom_crow = torch.cat([
            (crow[:-1][None, :] + ks[:, None].to(itype) * count).reshape(-1),
            crow.new_full((1, ), (order + 1) * count)
        ])
        moment = torch.sparse_csr_tensor(
            mom_crow, perm.to(itype).repeat(order + 1), powers.reshape(-1),
            size=((order + 1) * num_rows, count))
    return moment, evaluate


class _GaussTransform(torch.autograd.Function):
    """``S_i = sum_j K~(v_i - v_j) w_j`` by moments, translation, evaluation.

    ``K~`` is the truncated two-sided Taylor expansion of ``exp(-u^2)`` on the
    bins described in the module docstring. Inputs are flattened over
    ``(group, channel)`` rows; ``offsets`` are the channels' offsets from
    their bin centres scaled to ``[-1, 1]``, ``rows`` their bin rows.
    """

    @staticmethod
    def forward(ctx, values: Tensor, offsets: Tensor, rows: Tensor,
                expansion: Tuple[float, int, int], batch: int,
                num_bins: int) -> Tensor:
        order = expansion[1]
        num_rows = batch * num_bins
        moment, evaluate = _sparse_maps(offsets, rows, num_rows, order)
        # ((p+1) * B*G, R) @ (R, Q) -> (p+1, B*G, Q)
        moments = (moment @ values).view(order + 1, num_rows, -1)
        local = _translate(moments, *expansion, batch, num_bins)
        del moments
        # (R, (p+1) * B*G) @ ((p+1) * B*G, Q) -> (R, Q)
        out = evaluate @ local.view((order + 1) * num_rows, -1)
        ctx.save_for_backward(values, offsets, rows, local)
        ctx.maps = (moment, evaluate)
        ctx.expansion, ctx.batch, ctx.num_bins = expansion, batch, num_bins
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        values, offsets, rows, local = ctx.saved_tensors
        moment, evaluate = ctx.maps
        order = ctx.expansion[1]
        num_rows = ctx.batch * ctx.num_bins
        grad_out = grad_out.contiguous()
        need_values, need_offsets = ctx.needs_input_grad[:2]
        grad_values = grad_offsets = None
        # The adjoint of the evaluation is the moment pass, and the
        # translation is its own adjoint (K is even).
        grad_moments = (moment @ grad_out).view(order + 1, num_rows, -1)
        grad_local = _translate(grad_moments, *ctx.expansion, ctx.batch,
                                ctx.num_bins).view((order + 1) * num_rows,
                                                   -1)
        del grad_moments
        if need_values:
            grad_values = evaluate @ grad_local
        if need_offsets:
            _, slope = _sparse_maps(offsets, rows, num_rows, order,
                                    slope=True)
            # target side: d S_i / d sigma_i; source side: d A / d delta_j
            flat_local = local.view((order + 1) * num_rows, -1)
            grad_offsets = ((slope @ flat_local) * grad_out).sum(dim=1)
            grad_offsets += ((slope @ grad_local) * values).sum(dim=1)
        return grad_values, grad_offsets, None, None, None, None


def _check_args(caller: str, z: Tensor, exclude_self: bool,
                group_size: Optional[int], tol: float) -> int:
    """Validate the arguments shared by the public functions."""
    if not isinstance(z, Tensor) or z.dim() != 3:
        shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
        raise ValueError(f'{caller}: z must be a (N, C, P) tensor, got {shape}')
    if not isinstance(exclude_self, bool):
        raise TypeError(f'{caller}: exclude_self must be a bool, got '
                        f'{type(exclude_self).__name__} {exclude_self!r}')
    if isinstance(tol, bool) or not isinstance(tol, (int, float)):
        raise TypeError(f'{caller}: tol must be a float in (0, 1), got '
                        f'{type(tol).__name__} {tol!r}')
    if not 0 < tol < 1:
        raise ValueError(f'{caller}: tol must be a float in (0, 1), got {tol}')
    channels = z.shape[1]
    if group_size is None:
        return channels
    if isinstance(group_size, bool) or not isinstance(group_size, int):
        raise TypeError(f'{caller}: group_size must be None or a positive '
                        f'int, got {type(group_size).__name__} '
                        f'{group_size!r}')
    if group_size < 1 or channels % group_size != 0:
        raise ValueError(f'{caller}: group_size must be a positive divisor '
                         f'of the channel count {channels}, got {group_size}')
    return group_size


def _choose_expansion(v_sorted: Tensor, tol: float, channels: int,
                      exclude_self: bool) -> Optional[Tuple[float, int, int]]:
    """Pick ``(h, p, reach)`` with the smallest estimated cost.

    The moment and evaluation passes cost ``~ (p + 1) C`` per position, the
    translation :func:`_translation_cost` (``G`` bins after shortening empty
    runs). Returns None when no candidate meets ``tol``
    (the caller then falls back to the exact path).
    """
    best = None
    for h, order, reach in _expansion_candidates(tol, channels, exclude_self):
        num_bins = _num_bins(v_sorted, h, reach)
        cost = (order + 1) * channels + _translation_cost(
            h, order, reach, num_bins)[1]
        if best is None or cost < best[0]:
            best = (cost, h, order, reach)
    return None if best is None else best[1:]


def _exact_rows(zc: Tensor, v: Tensor, idx: Tensor) -> Tensor:
    """Exact self-excluded messages of the channels ``idx`` of each group.

    Shape:
        - zc: ``(B, C, P)``; v: ``(B, C)``; idx: ``(B, M)``
        - output: ``(B, M, P)``
    """
    vi = torch.gather(v, 1, idx)  # (B, M)
    # (B, M, 1) - (B, 1, C) -> (B, M, C)
    sq_dist = (vi.unsqueeze(2) - v.unsqueeze(1)).pow(2)
    scores = -sq_dist.clamp(max=torch.finfo(v.dtype).max)
    ar = torch.arange(v.shape[1], device=v.device)
    scores = scores.masked_fill(idx.unsqueeze(2) == ar, float('-inf'))
    attn = torch.softmax(scores, dim=2)
    return torch.bmm(attn, zc)  # (B, M, C) @ (B, C, P) -> (B, M, P)


def fast_message(z: Tensor,
                 exclude_self: bool = True,
                 group_size: Optional[int] = None,
                 tol: float = 1e-5) -> Tensor:
    """C3 message by a fast Gauss transform, without the ``C x C`` matrix.

    Computes the same ``zbar_i = sum_j softmax_j(-(v_i - v_j)^2) z_j`` as
    :func:`dense_message` (``v_i`` the mean of ``z_i`` over positions, ``j``
    over ``i``'s group, ``j != i`` with ``exclude_self``) to within ``tol``
    times ``max |z|`` of each group, in ``O(C P p)`` time and ``O(C P)``
    memory. See the module docstring for the method and its error control.

    Shape:
        - z: ``(N, C, P)``
        - output: ``(N, C, P)``, same dtype as ``z``

    Args:
        z (Tensor): Encoded channel maps, flattened over positions.
        exclude_self (bool): Mask ``j = i`` out of the softmax (paper) or
            keep it (released code). Defaults to True.
        group_size (int, optional): Number of consecutive channels that
            communicate; must divide ``C``. None means one group. Defaults
            to None.
        tol (float): Largest error of the message relative to ``max |z|``
            of its group, in ``(0, 1)``. Float32 rounding limits what can be
            reached to about ``1e-6``. Defaults to 1e-5.

    Returns:
        Tensor: The message ``zbar``.

    Note:
        - Computed in at least float32 with autocast disabled (float64 stays
          float64) and returned in ``z``'s dtype, like the dense path.
        - Groups of one channel with ``exclude_self`` give a zero message
          (``z * 0``, never NaN), as in the dense path.
        - Gradients are those of the approximation (written backward); they
          match the exact gradients to about the same relative accuracy.
        - Non-finite ``v`` or a spread of ``v`` beyond ``2^40`` bins falls
          back to :func:`dense_message`, whose result it then is.
    """
    cg = _check_args('fast_message', z, exclude_self, group_size, tol)
    n, c, p = z.shape
    if exclude_self and cg == 1:
        return z * 0
    if z.numel() == 0:
        return dense_message(z, exclude_self, group_size)
    groups = c // cg
    batch = n * groups
    compute_dtype = torch.promote_types(z.dtype, torch.float32)
    with torch.autocast(device_type=z.device.type, enabled=False):
        # (N, C, P) -> (N * G, C / G, P): consecutive channels share a group
        zc = z.reshape(batch, cg, p).to(compute_dtype)
        v = zc.mean(dim=2)  # (B, C/G)
        vd = v.detach()
        v_sorted, perm = _sorted_summaries(vd)
        span = (v_sorted[:, -1] - v_sorted[:, 0]).max()
        if not bool(torch.isfinite(span)) or float(span) > 2.0**40 * min(
                BIN_WIDTHS):
            return dense_message(z, exclude_self, group_size)
        expansion = _choose_expansion(v_sorted, tol, cg, exclude_self)
        if expansion is None:
            return dense_message(z, exclude_self, group_size)
        h, order, reach = expansion
        b, g, num_bins = _bins(v_sorted, perm, h, reach)
        # offset from the bin centre, scaled to [-1, 1]; the gradient flows
        # through v, the bin choice is piecewise constant
        offsets = ((v - v_sorted[:, :1]) -
                   (b.to(compute_dtype) + 0.5) * h) / (h / 2)
        rows = g + torch.arange(
            batch, device=z.device).unsqueeze(1) * num_bins  # (B, C/G)
        ones = zc.new_ones(batch, cg, 1)
        # (B, C/G, P) + (B, C/G, 1) -> (B * C/G, P + 1): last column = 1
        values = torch.cat([zc, ones], dim=2).reshape(batch * cg, p + 1)
        sums = _GaussTransform.apply(values, offsets.reshape(-1),
                                     rows.reshape(-1), expansion, batch,
                                     num_bins)
        sums = sums.view(batch, cg, p + 1)
        num, den = sums[..., :p], sums[..., p:]
        if exclude_self:
            # the expansion is exact at t = 0: the self pair adds z_i and 1
            num = num - zc
            den = den - 1
            # isolated rows are replaced below; a safe denominator keeps
            # their (discarded) expansion out of the gradient (no 0 / 0)
            isolated = _isolated(v_sorted, perm)
            den = den.masked_fill(isolated.unsqueeze(2), 1.0)
        message = num / den
        if exclude_self:
            message = _patch_isolated(message, zc, v, isolated)
    return message.to(z.dtype).reshape(n, c, p)


def _isolated(v_sorted: Tensor, perm: Tensor) -> Tensor:
    """Channels whose nearest other channel is farther than
    :data:`ISOLATION_RADIUS`, found from the sorted ``v``.

    Shape:
        - v_sorted, perm: ``(B, C)``
        - output: ``(B, C)`` bool, in the channels' original order
    """
    gaps = v_sorted[:, 1:] - v_sorted[:, :-1]  # (B, C-1)
    inf = gaps.new_full((gaps.shape[0], 1), float('inf'))
    nearest_sorted = torch.minimum(torch.cat([inf, gaps], dim=1),
                                   torch.cat([gaps, inf], dim=1))
    nearest = torch.empty_like(nearest_sorted).scatter_(1, perm,
                                                        nearest_sorted)
    return nearest > ISOLATION_RADIUS


def _patch_isolated(message: Tensor, zc: Tensor, v: Tensor,
                    isolated: Tensor) -> Tensor:
    """Replace the rows of isolated channels by their exact messages.

    Shape:
        - message, zc: ``(B, C, P)``; v, isolated: ``(B, C)``
        - output: ``(B, C, P)``
    """
    p = message.shape[2]
    count = int(isolated.sum(dim=1).max())
    if count == 0:
        return message
    # isolated channels first in each group; padded with non-isolated ones,
    # whose exact rows are just as correct
    idx = torch.argsort((~isolated).to(torch.uint8), dim=1,
                        stable=True)[:, :count]  # (B, M)
    exact = _exact_rows(zc, v, idx)  # (B, M, P)
    return message.scatter(1, idx.unsqueeze(2).expand(-1, -1, p), exact)


def choose_message_impl(num_channels: int, num_positions: int,
                        device: torch.device) -> str:
    """Return ``'fast'`` or ``'dense'`` for a group of ``num_channels``.

    Dense costs ``~ C^2 (P + c_exp)`` per group, fast ``~ C P p`` plus the
    sort; the crossover in ``C`` hardly depends on ``P``, so the rule is a
    channel threshold per device type (:data:`FAST_MIN_CHANNELS`), measured
    on the CPU with ``tools/analysis_tools/benchmark_message_passing.py``.
    Devices without an entry use the CUDA threshold.

    Args:
        num_channels (int): Channels per group ``C``.
        num_positions (int): Positions per channel ``P`` (kept for a
            position-dependent rule; the current thresholds do not use it).
        device (torch.device): Where the message is computed.

    Returns:
        str: ``'fast'`` or ``'dense'``.
    """
    dev_type = torch.device(device).type
    threshold = FAST_MIN_CHANNELS.get(dev_type, FAST_MIN_CHANNELS['cuda'])
    return 'fast' if num_channels >= threshold else 'dense'


def message_passing(z: Tensor,
                    exclude_self: bool = True,
                    group_size: Optional[int] = None,
                    impl: str = 'auto',
                    tol: float = 1e-5) -> Tensor:
    """C3 message with a choice of implementation.

    Shape:
        - z: ``(N, C, P)``
        - output: ``(N, C, P)``

    Args:
        z (Tensor): Encoded channel maps, flattened over positions.
        exclude_self (bool): Sum over ``j != i``. Defaults to True.
        group_size (int, optional): Channels per communicating group.
            Defaults to None (all channels).
        impl (str): ``'dense'`` (:func:`dense_message`, exact), ``'fast'``
            (:func:`fast_message`) or ``'auto'`` (:func:`choose_message_impl`
            on the group size, the positions and ``z``'s device). Defaults to
            ``'auto'``.
        tol (float): Error target of the fast path (see
            :func:`fast_message`). Defaults to 1e-5.

    Returns:
        Tensor: The message ``zbar``.
    """
    if impl not in MESSAGE_IMPLS:
        raise ValueError('message_passing: impl must be one of '
                         f'{MESSAGE_IMPLS}, got {impl!r}')
    cg = _check_args('message_passing', z, exclude_self, group_size, tol)
    if impl == 'auto':
        impl = choose_message_impl(cg, z.shape[2], z.device)
    if impl == 'dense':
        return dense_message(z, exclude_self, group_size)
    return fast_message(z, exclude_self, group_size, tol)
