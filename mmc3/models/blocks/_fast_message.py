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
   ``k = 0..p`` (``r = h / 2``): channels are sorted by bin, each bin is
   padded to a multiple of 16 rows and bins of equal padded size are stored
   next to each other, so this is one batched matrix product per distinct
   size (:class:`_Layout`). The denominator's moments (``z_j = 1``) are the
   column sums of the powers.
3. Translation. For a target bin ``T`` and a source bin ``B = T - o``
   (``Delta = o h``), Taylor's theorem on ``K(Delta + sigma - delta)`` in
   ``t = sigma - delta`` truncated at order ``p`` gives
   ``K ~ sum_{m+k<=p} K^(m+k)(Delta) (-1)^k sigma^m delta^k / (m! k!)`` with
   ``K^(n)(x) = (-1)^n H_n(x) exp(-x^2)`` (physicists' Hermite). The local
   coefficients ``L_T,m = sum_{|o|<=R} sum_k M_o[m, k] A_{T-o},k`` are
   computed by the cheapest of (:class:`_Translation`): one matrix product
   per offset ``o`` on bin-major slabs; one product with the banded
   block-Toeplitz matrix of all offsets (more multiply-adds, but one large
   product; used while ``G (p + 1) <= 1024``); a product of FFTs along the
   bins in float64. Source bins more than ``R`` bins away are skipped.
4. Evaluation. ``S_i = sum_m (sigma_i / r)^m L_{T(i),m}``: one batched
   matrix product per padded bin size, for the numerator and the
   denominator together.
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
without). Numerator and denominator errors ``e_N`` (in units of ``max |z|``)
and ``e_D`` move the message by at most ``(e_N + e_D) / den``. Two sources:

- Skipped bins: a source more than ``R`` bins away is at least ``R h`` away,
  so ``R`` is the smallest with ``2 C exp(-(R h)^2) / d_min <= 0.1 tol``.
- Truncation: ``E[o, p]``, the largest remainder of the order-``p`` Taylor
  polynomial of ``K`` about the offset ``o h`` over ``|t| <= h``, is
  tabulated once per ``h`` in float64 (with a safety factor of 2). For a
  target in bin ``T`` both errors are at most
  ``S_T = sum_{|o|<=R} E[|o|, p] n_{T-o}`` (``n`` = channels per bin), and
  its denominator is at least ``sum_o n_{T-o} exp(-((|o|+1) h)^2)`` minus
  the target itself, and at least ``d_min``. The order ``p`` is the smallest
  with ``2 S_T / den_T <= 0.4 tol`` in every occupied bin of the batch
  (bisection over ``p``; the sums are products of the bin counts with banded
  Toeplitz matrices). Crowded bins bring their own large denominators, so
  the order follows the data: at ``tol = 1e-5``, ``C = 2048`` and
  ``v ~ N(0, 2^2)`` it is 12 at ``h = 0.5`` where the data-blind bound
  (``C`` channels beside a denominator of ``d_min``) needs 16.

The remaining ``0.5 tol`` is left to floating-point rounding, whose floor is
near ``1e-6`` in float32 (float64 inputs are computed in float64). Among bin
widths ``h`` in ``(0.125, 0.25, 0.5, 1)`` the one with the smallest
estimated cost (moment and evaluation products ``~ (p+1) C P`` against the
translation ``~ G (2R+1) (p+1)^2 P`` directly or ``~ (p+1) G P`` times an
FFT constant, ``G`` = bins after shortening empty runs; constants measured)
is used, so concentrated ``v`` (one or two bins) and spread ``v`` (tens of
bins) are both cheap. The bound is conservative: measured errors are 1e-6
to 1e-8.

Memory and speed. Groups are processed in chunks of about
``CHUNK_ELEMENTS`` (4 MB) so that the padded copies and products stay in
cache and their memory is reused; nothing of size ``C x C`` is formed.

When it pays (:func:`choose_message_impl`). The fast path costs ``O(C P p)``
plus a sort and a fixed overhead per call, the dense path ``O(C^2 (P + k))``
time (``k``: the softmax) and ``O(C^2)`` memory, so the break-even ``C``
grows with ``P`` and levels off. On the CPU (one thread, torch 2.9.1,
forward+backward, ``N * C * P`` fixed) the fast path wins from ``C = 128``
at ``P = 4``, from 192 at ``P = 49`` (dense still ahead at 128) and from
384 at ``P = 196`` (dense ahead at 256); 'auto' uses the fast path from
:func:`fast_min_channels` channels per group, a fit to these (175 at
``P = 49``, 350 at ``P = 196``, 497 at ``P = 1681``, at least 128), and
the dense one below (``group_size=64`` stays dense even with 2048 channels).
Costs that the fast path cannot avoid: a group with many isolated channels
(e.g. ``v`` spread over hundreds of units) gets their rows exactly, i.e.
densely.

Gradients. :class:`_FastMessage` has a written backward (the gradient of
the approximation itself, not of the exact softmax): the translation is its
own adjoint because ``K`` is even, so the backward is per chunk a moment
pass, one translation, one evaluation and two contractions over positions
(for the offsets, whose gradient reaches ``z`` through the means as
``1 / (r P)``); the exact rows' gradient (softmax rows) is written into the
same buffer. It keeps the padded ``z``, the powers, the local coefficients
and the padded result of the forward, and no autograd graph of full-size
temporaries.
"""
import functools
import math
from typing import List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ._message_passing import dense_message

#: Nearest-neighbour distance in ``v`` beyond which a target is evaluated
#: exactly when the self pair is excluded (see the module docstring).
ISOLATION_RADIUS = 1.0

#: Candidate bin widths ``h`` (in units of ``v``).
BIN_WIDTHS = (0.125, 0.25, 0.5, 1.0)

#: Largest expansion order considered.
MAX_ORDER = 40

#: Break-even channel count of the CPU as a function of the positions,
#: ``C*(P) = a P / (P + b)`` with ``(a, b)`` below: fitted to the crossovers
#: measured by ``benchmark_message_passing.py --crossover --positions 4 49
#: 196`` (one thread, torch 2.9.1, forward+backward: the fast path wins
#: from 128, 192 and 384 channels and loses at 64, 128 and 256).
CPU_CROSSOVER = (525.0, 98.0)

#: Smallest channel count per group from which 'auto' picks the fast path:
#: ``'cpu'`` is the floor under :data:`CPU_CROSSOVER`; other device types
#: are not measured, and use a constant chosen where the dense ``C x C``
#: intermediates of a batch of RoIs start to cost gigabytes.
FAST_MIN_CHANNELS = {'cpu': 128, 'cuda': 1024}

#: Accepted values of ``impl`` (and of ``C3Block``'s ``message_impl``).
MESSAGE_IMPLS = ('auto', 'dense', 'fast')

# Relative costs (measured on the CPU, single thread, 128 x 2048 x 49 with
# every bin width and each translation forced, and per translation on
# 500-row slabs): the moment and evaluation products per channel, order and
# position = 1; one multiply-add of the direct translation (small products
# per offset) = 0.25; one bin of the float64 FFT translation per order
# (transforms, products, copies) = 45; one multiply-add of the Toeplitz
# translation (one large product) = 0.05.
_CONV_COST = 0.25
_FFT_COST = 45.0
_TOEPLITZ_COST = 0.05

#: Largest side ``G (p + 1)`` of the Toeplitz translation matrix (4 MB in
#: float32); beyond it the direct or FFT translation is used.
TOEPLITZ_MAX_SIZE = 1024


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
def _offset_errors(h: float, num_offsets: int) -> Tensor:
    """Per-offset truncation errors ``E[o, p]``, float64.

    ``E[o, p]`` is twice the largest error of the order-``p`` Taylor
    polynomial of ``K`` about the grid offset ``Delta = o h`` over steps
    ``|t| <= h``, for ``o = 0..num_offsets - 1`` and ``p = 0..MAX_ORDER``
    (``K`` is even, so ``-o`` has the same errors). The two-sided expansion
    in ``(sigma, delta)`` truncated at total degree ``p`` equals this
    one-sided polynomial in ``t = sigma - delta``, and ``|t| <= h`` because
    both offsets lie within half a bin of their centre. The maximum is taken
    on 401 points of ``[-h, h]``; the factor 2 covers the gaps between them.

    Shape:
        - output: ``(num_offsets, MAX_ORDER + 1)``
    """
    t = torch.linspace(-h, h, 401, dtype=torch.float64)
    offsets = torch.arange(num_offsets, dtype=torch.float64) * h
    deriv = _kernel_derivatives(offsets, MAX_ORDER)  # (p + 1, O)
    powers = torch.stack([t**n / float(math.factorial(n))
                          for n in range(MAX_ORDER + 1)])  # (p + 1, T)
    # (p+1, O, 1) * (p+1, 1, T) -> (p+1, O, T), partial sums over the order
    approx = torch.cumsum(deriv[:, :, None] * powers[:, None, :], dim=0)
    exact = torch.exp(-(offsets[:, None] + t[None, :])**2)  # (O, T)
    errors = (approx - exact).abs().amax(dim=2)  # (p + 1, O)
    return (2.0 * errors).t().contiguous()


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


def _sorted_summaries(v: Tensor) -> Tuple[Tensor, Tensor]:
    """``v`` sorted per group and the sorting permutation (the order of
    ties is arbitrary).

    On the CPU NumPy's vectorised ``argsort`` is used: it is several times
    faster than ``torch.sort`` there (5 vs 24 ms at ``128 x 2048``).

    Shape:
        - v: ``(B, C)``, detached
        - outputs: ``(B, C)``
    """
    if v.device.type == 'cpu':
        perm = torch.from_numpy(np.argsort(v.numpy(), axis=1))
        return torch.gather(v, 1, perm), perm
    return torch.sort(v, dim=1)


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
def _translation_spectrum(h: float, order: int, taps: int,
                          nfft: int) -> Tensor:
    """Real FFT of the causal translation filter ``c[s] = M_{s - R}``, on
    the CPU (the cache holds host memory only; callers move it).

    Shape:
        - output: ``(p + 1, p + 1, nfft // 2 + 1)`` complex128
    """
    weight = _translation_weight(h, order, taps)  # W[..., t] = M_{R - t}
    causal = weight.flip(-1)  # c[..., s] = M_{s - R}
    return torch.fft.rfft(causal, n=nfft, dim=-1)


def _translation_cost(h: float, order: int, reach: int,
                      num_bins: int) -> Tuple[str, float]:
    """Cheapest way to translate (``'direct'``, ``'fft'`` or
    ``'toeplitz'``) and its cost per position, in units of one multiply-add
    of the moment products."""
    taps = min(reach, num_bins - 1)
    size = num_bins * (order + 1)
    costs = [
        ('direct', _CONV_COST * num_bins * (2 * taps + 1) * (order + 1)**2),
        ('fft', _FFT_COST * (order + 1) * _fft_size(num_bins + 2 * taps)),
    ]
    if size <= TOEPLITZ_MAX_SIZE:
        costs.append(('toeplitz', _TOEPLITZ_COST * size**2))
    return min(costs, key=lambda c: c[1])


@functools.lru_cache(maxsize=16)
def _toeplitz_matrix(h: float, order: int, taps: int,
                     num_bins: int) -> Tensor:
    """The whole translation over ``G`` bins as one matrix acting on rows
    of moments: ``X[(S, k), (T, m)] = M_{T-S}[m, k]`` for ``|T - S| <=
    taps``, 0 otherwise. Float64 on the CPU (the cache holds host memory
    only; :class:`_Translation` keeps its own copy on the device).

    Shape:
        - output: ``(G (p + 1), G (p + 1))``
    """
    weight = _translation_weight(h, order, taps)  # W[m, k, taps - o]
    bins = torch.arange(num_bins)
    offset = bins[None, :] - bins[:, None]  # (S, T) -> T - S
    inside = offset.abs() <= taps
    # (S, T, m, k) -> (S, k, T, m)
    blocks = weight.permute(2, 0, 1)[(taps - offset).clamp(0, 2 * taps)]
    blocks = blocks * inside[:, :, None, None]
    size = num_bins * (order + 1)
    return blocks.permute(0, 3, 1, 2).reshape(size, size).contiguous()


class _Translation:
    """``L_T,m = sum_{|o| <= R} sum_k M_o[m, k] A_{T-o},k`` for moments of
    up to ``num_bins`` bins by the cheapest method
    (:func:`_translation_cost`): ``'direct'`` and ``'fft'`` as in
    :func:`_translate`, or ``'toeplitz'``: every target's coefficients from
    all bins' moments in one matrix product with the banded block-Toeplitz
    matrix of :func:`_toeplitz_matrix` (more multiply-adds than the direct
    sum over offsets, but one large product instead of ``2 R + 1`` thin
    ones). Chunks with fewer bins use the leading block of the matrix.

    Attributes:
        h (float): Bin width. order (int): Expansion order ``p``.
        reach (int): Bins within reach ``R``. method (str): As chosen.
    """

    def __init__(self, h: float, order: int, reach: int, num_bins: int,
                 dtype: torch.dtype, device: torch.device,
                 method: Optional[str] = None) -> None:
        self.h, self.order, self.reach = h, order, reach
        self.method = method or _translation_cost(h, order, reach,
                                                  num_bins)[0]
        self.matrix = None
        if self.method == 'toeplitz':
            # a per-call copy on the device, released with this object
            # (after the backward pass: the autograd context holds it)
            self.matrix = _toeplitz_matrix(
                h, order, min(reach, num_bins - 1), num_bins).to(
                    device=device, dtype=dtype)

    def __call__(self, moments: Tensor) -> Tensor:
        """Shape: ``(G, M, p + 1) -> (G, M, p + 1)``, as :func:`_translate`.
        """
        if self.matrix is None:
            return _translate(moments, self.h, self.order, self.reach,
                              self.method)
        num_bins, rows, order1 = moments.shape
        size = num_bins * order1
        # (G, M, p+1) -> (M, G * (p+1)) @ (G (p+1), G (p+1))
        flat = moments.permute(1, 0, 2).reshape(rows, size)
        out = flat @ self.matrix[:size, :size]
        return out.view(rows, num_bins, order1).permute(1, 0, 2).contiguous()


def _translate(moments: Tensor,
               h: float,
               order: int,
               reach: int,
               method: Optional[str] = None) -> Tensor:
    """``L_T,m = sum_{|o| <= R} sum_k M_o[m, k] A_{T-o},k`` along the bins.

    The bins are the outermost axis, so every offset ``o`` is one matrix
    product of a contiguous slab of source bins with ``M_o^T`` added to the
    matching slab of targets (``'direct'``). Offsets beyond ``G - 1`` cannot
    occur, so the filter is cropped to ``R' = min(R, G - 1)``. When cheaper
    (``method=None`` picks by :func:`_translation_cost`) the sum over offsets
    is a product of FFTs along the bins instead, in float64 (an FFT spreads
    rounding over all bins; float64 keeps a crowded bin's rounding out of a
    sparse neighbour's expansion).

    Shape:
        - moments: ``(G, M, p + 1)`` (``M`` = groups x positions, incl. the
          denominator column), contiguous
        - output: same
    """
    num_bins, _, order1 = moments.shape
    taps = min(reach, num_bins - 1)
    if method is None:
        method = _translation_cost(h, order, reach, num_bins)[0]
    if method == 'direct':
        # W[m, k, s] = M_{taps - s}[m, k] -> (2 taps + 1, k, m) = M_o^T
        weight = _translation_weight(h, order, taps).permute(2, 1, 0).to(
            device=moments.device, dtype=moments.dtype)
        out = torch.empty_like(moments)
        # o = 0 covers every target bin
        torch.mm(moments.view(-1, order1), weight[taps],
                 out=out.view(-1, order1))
        for o in range(1, taps + 1):
            # sources T - o for targets o.., and T + o for targets ..G-o
            out[o:].view(-1, order1).addmm_(
                moments[:num_bins - o].view(-1, order1), weight[taps - o])
            out[:num_bins - o].view(-1, order1).addmm_(
                moments[o:].view(-1, order1), weight[taps + o])
        return out
    nfft = _fft_size(num_bins + 2 * taps)
    # (m, k, F) -> (F, k, m): Y_f = X_f @ spec_f^T
    spec = _translation_spectrum(h, order, taps, nfft).to(
        moments.device).permute(2, 1, 0)
    xf = torch.fft.rfft(moments.to(torch.float64), n=nfft, dim=0)
    yf = torch.bmm(xf, spec)  # (F, M, k) @ (F, k, m) -> (F, M, m)
    del xf
    y = torch.fft.irfft(yf, n=nfft, dim=0)[taps:taps + num_bins]
    return y.to(moments.dtype).contiguous()


#: Shares of the tolerance: the Taylor truncation and the skipped far bins
#: (the rest is left to floating-point rounding).
_TRUNCATION_SHARE = 0.4
_SKIP_SHARE = 0.1


def _reach(h: float, tol: float, channels: int, d_min: float) -> int:
    """Bins ``R`` within the kernel's reach: every source bin more than ``R``
    bins away is at least ``R h`` away, so skipping all of them changes the
    message by at most ``2 C exp(-(R h)^2) / d_min <= _SKIP_SHARE * tol``
    (relative to ``max |z|``)."""
    budget = _SKIP_SHARE * tol * d_min / (2.0 * channels)
    return max(1, math.ceil(math.sqrt(max(-math.log(budget), 0.0)) / h))


class _Binning:
    """Grid bins of width ``h`` anchored at each group's minimum, with long
    empty runs shortened, in the sorted order of ``v``.

    ``b`` is the (uncompressed) bin of every sorted channel, ``g`` its
    compressed bin: bin offsets up to ``reach`` are kept exactly; a run of
    more than ``reach`` empty bins becomes ``reach`` empty bins, so nothing
    across it interacts, as before. ``num_bins`` (``G``) is the number of
    compressed bins of the longest group and ``counts`` the channels per
    compressed bin.

    Shape:
        - v_sorted: ``(B, C)`` sorted along dim 1
        - b, g: ``(B, C)`` int64; counts: ``(B, G)`` int64
    """

    def __init__(self, v_sorted: Tensor, h: float, reach: int) -> None:
        self.h, self.reach = h, reach
        self.b = torch.floor((v_sorted - v_sorted[:, :1]) / h).long()
        steps = (self.b[:, 1:] - self.b[:, :-1]).clamp_(max=reach + 1)
        self.g = torch.cat([torch.zeros_like(self.b[:, :1]),
                            torch.cumsum(steps, dim=1)], dim=1)
        self._count()

    def _count(self) -> None:
        """``num_bins``, ``counts`` and the flat bin ``rows = b G + g``."""
        batch = self.g.shape[0]
        self.num_bins = int(self.g[:, -1].max()) + 1
        self.rows = self.g + torch.arange(
            batch, device=self.g.device).unsqueeze(1) * self.num_bins
        self.counts = torch.bincount(
            self.rows.reshape(-1),
            minlength=batch * self.num_bins).view(batch, self.num_bins)

    def select(self, start: int, end: int) -> '_Binning':
        """The binning of groups ``start:end`` alone."""
        part = object.__new__(_Binning)
        part.h, part.reach = self.h, self.reach
        part.b, part.g = self.b[start:end], self.g[start:end]
        part._count()
        return part


def _required_order(binning: _Binning, tol: float,
                    exclude_self: bool) -> int:
    """Smallest order ``p`` whose truncation error provably meets the
    tolerance for these bins, or ``MAX_ORDER + 1`` when none does.

    For a target in compressed bin ``T`` the numerator and denominator are
    off by at most ``S_T = sum_{|o| <= R} E[|o|, p] n_{T-o}`` (times
    ``max |z|`` for the numerator), with ``n`` the bin counts and ``E`` from
    :func:`_offset_errors`, so the message is off by at most
    ``2 S_T / den_T``. The denominator is bounded below from the counts
    alone, ``den_T >= sum_o n_{T-o} exp(-((|o| + 1) h)^2) - exp(-h^2)``
    (every pair ``o`` bins apart is closer than ``(|o| + 1) h``; the second
    term removes the target itself, ``+1`` when it is kept), and by
    ``d_min``. Crowded bins have large denominators, so the order follows
    the data instead of the worst case of ``C`` channels next to an empty
    neighbourhood. The order is found by bisection (``S_T`` is decreasing
    in ``p``).
    """
    h, reach = binning.h, binning.reach
    d_min = math.exp(-ISOLATION_RADIUS**2) if exclude_self else 1.0
    num_bins = binning.num_bins
    taps = min(reach, num_bins - 1)
    table = _offset_errors(h, taps + 1)  # (taps + 1, MAX_ORDER + 1)
    # banded Toeplitz matrices over the bins: sums over |o| <= R are then
    # one (B, G) @ (G, G) product
    dist = torch.arange(num_bins)
    dist = (dist[:, None] - dist[None, :]).abs()
    band = dist <= taps
    dist = dist.clamp(max=taps)
    counts = binning.counts.to('cpu', torch.float64)  # (B, G)
    near = torch.exp(-((dist + 1) * h).to(torch.float64)**2) * band
    den = counts @ near - math.exp(-h * h) + (0.0 if exclude_self else 1.0)
    den = den.clamp(min=d_min)
    vacant = counts == 0
    budget = _TRUNCATION_SHARE * tol / 2.0

    def meets(order: int) -> bool:
        bound = counts @ (table[dist, order] * band) / den
        return bool(bound.masked_fill(vacant, 0.0).max() <= budget)

    low, high = 1, MAX_ORDER + 1
    while low < high:
        mid = (low + high) // 2
        if meets(mid):
            high = mid
        else:
            low = mid + 1
    return low


def _choose_expansion(
        v_sorted: Tensor, tol: float, channels: int,
        exclude_self: bool) -> Optional[Tuple[Tuple[float, int, int],
                                              _Binning]]:
    """Pick the bin width ``h``, order ``p`` and reach ``R`` with the
    smallest estimated cost that meet ``tol`` on these summaries.

    The moment and evaluation passes cost ``~ (p + 1) C`` per position, the
    translation :func:`_translation_cost` (``G`` bins after shortening empty
    runs). Returns ``((h, p, R), binning)``, or None when no bin width meets
    ``tol`` (the caller then falls back to the exact path).
    """
    d_min = math.exp(-ISOLATION_RADIUS**2) if exclude_self else 1.0
    best = None
    for h in BIN_WIDTHS:
        binning = _Binning(v_sorted, h, _reach(h, tol, channels, d_min))
        order = _required_order(binning, tol, exclude_self)
        if order > MAX_ORDER:
            continue
        cost = (order + 1) * channels + _translation_cost(
            h, order, binning.reach, binning.num_bins)[1]
        if best is None or cost < best[0]:
            best = (cost, (h, order, binning.reach), binning)
    return None if best is None else best[1:]


#: Rows of a bin are padded to a multiple of this (see :class:`_Layout`).
TILE = 16


class _Layout:
    """Channels sorted by bin, each bin padded to a multiple of :data:`TILE`
    rows, and bins of equal padded size stored next to each other.

    Then the source moments of all bins of one size ``s`` are one batched
    matrix product ``powers_bin^T @ values_bin`` over ``(s, p + 1)`` and
    ``(s, Q)`` blocks, and their evaluation is ``powers_bin @ local_bin``:
    a handful of large ``bmm`` calls (one per distinct size), no scatter,
    no per-channel gather of expansion coefficients. Padding rows have zero
    powers, so they add nothing and their outputs are dropped.

    Attributes:
        pos_of_src (Tensor): ``(R,)`` padded row of every channel (flat over
            groups, in the channels' original order).
        src_of_pos (Tensor): ``(R_pad,)`` channel of every padded row
            (padding rows point at channel 0).
        valid (Tensor): ``(R_pad,)`` 1 for channels, 0 for padding.
        bin_order (Tensor): ``(K,)`` the occupied bins (flat over groups,
            ``b G + g``) in the order of the padded rows.
        store_ids (Tensor): ``(K,)`` the same bins as rows ``g B + b`` of the
            bin-major moments.
        classes (list[tuple[int, int, int, int]]): ``(size, first_bin,
            num_bins, first_row)``: bins ``bin_order[first_bin:first_bin +
            num_bins]`` all have ``size`` padded rows, stored from
            ``first_row`` on.
    """

    def __init__(self, binning: _Binning, perm: Tensor,
                 dtype: torch.dtype) -> None:
        batch, channels = perm.shape
        device = perm.device
        rows = binning.rows.reshape(-1)  # sorted order, non-decreasing
        counts = binning.counts.reshape(-1)
        padded = (counts + TILE - 1) // TILE * TILE
        occupied = torch.nonzero(counts).squeeze(1)
        order = torch.argsort(padded[occupied], stable=True)
        self.bin_order = occupied[order]  # (K,)
        sizes = padded[self.bin_order]
        starts = torch.cumsum(sizes, 0) - sizes
        first_row = torch.zeros_like(padded)
        first_row[self.bin_order] = starts
        # rank of every sorted channel within its bin
        bin_start = torch.cumsum(counts, 0) - counts
        rank = torch.arange(rows.numel(), device=device) - bin_start[rows]
        pos_sorted = first_row[rows] + rank
        src_sorted = (perm + torch.arange(batch, device=device).unsqueeze(1)
                      * channels).reshape(-1)
        self.pos_of_src = torch.empty_like(pos_sorted).scatter_(
            0, src_sorted, pos_sorted)
        self.num_rows = int(sizes.sum())
        self.src_of_pos = torch.zeros(self.num_rows, dtype=torch.long,
                                      device=device).scatter_(
                                          0, pos_sorted, src_sorted)
        self.valid = torch.zeros(self.num_rows, dtype=dtype,
                                 device=device).index_fill_(0, pos_sorted, 1)
        # storage order of the moments: bin-major, (G, B) -> (G * B), so
        # that a bin's moments for all groups form one contiguous slab
        num_bins = binning.num_bins
        self.shape = (num_bins, batch)
        self.store_ids = (self.bin_order % num_bins) * batch + (
            self.bin_order // num_bins)
        uniq, num = torch.unique_consecutive(sizes, return_counts=True)
        self.classes = []
        first_bin = row = 0
        for size, n in zip(uniq.tolist(), num.tolist()):
            self.classes.append((size, first_bin, n, row))
            first_bin += n
            row += n * size

    def pad(self, x: Tensor) -> Tensor:
        """``(R, ...) -> (R_pad, ...)`` (padding rows hold channel 0)."""
        return x.index_select(0, self.src_of_pos)

    def unpad(self, y: Tensor) -> Tensor:
        """``(R_pad, ...) -> (R, ...)``."""
        return y.index_select(0, self.pos_of_src)

    def powers(self, offsets: Tensor, order: int) -> Tensor:
        """``valid * offsets^m`` for ``m = 0..p``.

        Shape:
            - offsets: ``(R_pad,)``
            - output: ``(R_pad, p + 1)``
        """
        cols = [self.valid]
        for _ in range(order):
            cols.append(cols[-1] * offsets)
        return torch.stack(cols, dim=1)

    def moments(self, powers: Tensor, values: Tensor,
                weights: Optional[Tensor]) -> Tensor:
        """``A[bin, k] = sum_{i in bin} powers[i, k] [values_i, w_i]``.

        ``weights`` (the last column) default to 1.

        Shape:
            - powers: ``(R_pad, p + 1)``; values: ``(R_pad, P)``;
              weights: ``(R_pad,)`` or None
            - output: ``(G, B * (P + 1), p + 1)`` (bin-major, then group,
              position, order), zero for empty bins
        """
        order1, p = powers.shape[1], values.shape[1]
        count = self.bin_order.numel()
        num = values.new_empty(count, p, order1)
        den = values.new_empty(count, 1, order1)
        for size, first_bin, n, row in self.classes:
            rows = slice(row, row + n * size)
            bins = slice(first_bin, first_bin + n)
            pw = powers[rows].view(n, size, order1)
            # (n, P, s) @ (n, s, p+1) -> (n, P, p+1)
            torch.bmm(values[rows].view(n, size, p).transpose(1, 2), pw,
                      out=num[bins])
            if weights is None:
                den[bins] = pw.sum(dim=1, keepdim=True)
            else:
                torch.bmm(weights[rows].view(n, 1, size), pw, out=den[bins])
        num_bins, batch = self.shape
        out = values.new_zeros(num_bins * batch, p + 1, order1)
        out.index_copy_(0, self.store_ids, torch.cat([num, den], 1))
        return out.view(num_bins, batch * (p + 1), order1)

    def evaluate(self, powers: Tensor, local: Tensor) -> Tensor:
        """``S[i] = sum_m powers[i, m] local[bin(i), m]``.

        Shape:
            - powers: ``(R_pad, p + 1)``; local: ``(G, B * Q, p + 1)`` as
              returned by :meth:`moments`
            - output: ``(R_pad, Q)``
        """
        num_bins, batch = self.shape
        order1 = local.shape[2]
        q = local.shape[1] // batch
        # (G * B, Q, p+1) -> (K, Q, p+1)
        local = local.view(num_bins * batch, q, order1).index_select(
            0, self.store_ids)
        out = local.new_empty(self.num_rows, q)
        for size, first_bin, n, row in self.classes:
            rows = slice(row, row + n * size)
            # (n, s, p+1) @ (n, p+1, Q) -> (n, s, Q)
            torch.bmm(powers[rows].view(n, size, order1),
                      local[first_bin:first_bin + n].transpose(1, 2),
                      out=out[rows].view(n, size, q))
        return out

    def contract(self, values: Tensor, weights: Tensor,
                 local: Tensor) -> Tensor:
        """``U[i, m] = sum_q [values_i, w_i]_q local[bin(i), q, m]``.

        The per-row contraction over positions that the offsets' gradient
        needs: ``(p + 1)`` numbers per row instead of the ``Q`` of
        :meth:`evaluate` followed by a product with ``values``.

        Shape:
            - values: ``(R_pad, P)``; weights: ``(R_pad,)``; local:
              ``(G, B * (P + 1), p + 1)`` as returned by :meth:`moments`
            - output: ``(R_pad, p + 1)``
        """
        num_bins, batch = self.shape
        order1, p = local.shape[2], values.shape[1]
        # (G * B, Q, p+1) -> (K, Q, p+1)
        local = local.view(num_bins * batch, p + 1, order1).index_select(
            0, self.store_ids)
        out = local.new_empty(self.num_rows, order1)
        for size, first_bin, n, row in self.classes:
            rows = slice(row, row + n * size)
            loc = local[first_bin:first_bin + n]
            # (n, s, P) @ (n, P, p+1) + w (n, s, 1) * (n, 1, p+1)
            torch.baddbmm(weights[rows].view(n, size, 1) * loc[:, p:],
                          values[rows].view(n, size, p), loc[:, :p],
                          out=out[rows].view(n, size, order1))
        return out


def _slopes(powers: Tensor) -> Tensor:
    """``m offsets^(m-1)`` from the powers of :meth:`_Layout.powers`.

    Shape:
        - powers: ``(R_pad, p + 1)``
        - output: same
    """
    ks = torch.arange(1, powers.shape[1], device=powers.device,
                      dtype=powers.dtype)
    return torch.cat([torch.zeros_like(powers[:, :1]), powers[:, :-1] * ks],
                     dim=1)


#: Elements of one chunk of groups (rows x (positions + 1)) processed at a
#: time: about 4 MB in float32, so that the padded copies and products of a
#: chunk stay in cache and the allocator reuses their memory instead of
#: faulting in fresh pages for every full-size temporary.
CHUNK_ELEMENTS = 1 << 20


def _chunks(batch: int, channels: int, positions: int) -> List[Tuple[int,
                                                                     int]]:
    """Ranges of groups ``[start, end)`` of about :data:`CHUNK_ELEMENTS`."""
    per_chunk = max(1, CHUNK_ELEMENTS // (channels * (positions + 1)))
    return [(start, min(start + per_chunk, batch))
            for start in range(0, batch, per_chunk)]


class _FastMessage(torch.autograd.Function):
    """The message ``(N_i - e z_i) / (D_i - e)`` (``e = 1`` with
    ``exclude_self``) from the Gauss transforms ``N_i = sum_j K~_ij z_j`` and
    ``D_i = sum_j K~_ij``, computed chunk by chunk of groups on the padded
    layout of :class:`_Layout`, with the rows in ``exact`` replaced by their
    exact messages.

    ``K~`` is the truncated two-sided Taylor expansion of ``exp(-u^2)`` on
    the bins described in the module docstring. Inputs and output are flat
    over ``(group, channel)`` rows in the channels' original order. ``v``
    must be ``z.mean(1)`` (passed detached; its gradient is folded into
    ``z``'s), ``shift`` the centre of every channel's bin, so that the
    offsets are ``(v - shift) / (h / 2)``. ``exact`` is None or ``(groups,
    idx, C)``: channels ``idx[k]`` of group ``groups[k]`` (``C`` channels per
    group) are computed exactly (:func:`_exact_weights`); their expansion
    gets a denominator of 1 and no gradient. ``chunks`` holds ``(first_row,
    last_row, layout)`` per chunk.
    """

    @staticmethod
    def forward(ctx, z: Tensor, v: Tensor, shift: Tensor, exact: Optional[
            Tuple[Tensor, Tensor, int]], chunks: list,
                translation: _Translation,
                exclude_self: bool) -> Tensor:
        p = z.shape[1]
        offsets = (v - shift) / (translation.h / 2)
        replaced = torch.zeros_like(v, dtype=torch.bool)
        if exact is not None:
            groups, idx, channels = exact
            replaced.view(-1, channels)[groups.unsqueeze(1), idx] = True
        out = z.new_empty(z.shape)
        saved = []
        for start, end, layout in chunks:
            zp = layout.pad(z[start:end])  # (R_pad, P)
            powers = layout.powers(layout.pad(offsets[start:end]),
                                   translation.order)
            moments = layout.moments(powers, zp, None)  # (G, B*(P+1), p+1)
            local = translation(moments)
            del moments
            sums = layout.evaluate(powers, local)  # (R_pad, P+1)
            message, den = sums[:, :p], sums[:, p:]
            if exclude_self:
                # the expansion is exact at t = 0: the self pair adds z_i
                # and 1
                message.sub_(zp)
                den.sub_(1.0)
            # padding and replaced rows: a constant denominator of 1
            fixed = layout.pad(replaced[start:end]) | ~layout.valid.bool()
            den.masked_fill_(fixed.unsqueeze(1), 1.0)
            message.div_(den)
            torch.index_select(message, 0, layout.pos_of_src,
                               out=out[start:end])
            saved.append((zp, powers, local, sums, fixed))
        exact_saved = ()
        ctx.exact_channels = None
        if exact is not None:
            zg = z.view(-1, channels, p).index_select(0, groups)
            weights = _exact_weights(v.view(-1, channels).index_select(
                0, groups), idx)  # (B', M, C)
            rows = torch.bmm(weights, zg)  # (B', M, P)
            out.view(-1, channels, p)[groups.unsqueeze(1), idx] = rows
            exact_saved = (groups, idx, weights, rows)
            ctx.exact_channels = channels
        # everything (intermediates and exact rows included) is saved
        # through autograd, so that it is released after the backward pass
        # unless the graph is retained
        ctx.save_for_backward(z, v, *exact_saved,
                              *(t for chunk in saved for t in chunk))
        ctx.chunks = chunks
        ctx.translation, ctx.exclude_self = translation, exclude_self
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        """The hand-written gradient (not differentiable again: a double
        backward raises instead of being silently wrong)."""
        z, v, *flat = ctx.saved_tensors
        exact = None
        if ctx.exact_channels is not None:
            exact = (*flat[:4], ctx.exact_channels)
            flat = flat[4:]
        per_chunk = len(flat) // len(ctx.chunks)
        saved = [flat[i:i + per_chunk] for i in range(0, len(flat), per_chunk)]
        grad_out = grad_out.contiguous()
        grad_z = torch.empty_like(grad_out)
        grad_x = grad_out.new_empty(grad_out.shape[0])
        p = grad_out.shape[1]
        for (start, end, layout), (zp, powers, local, sums, fixed) in zip(
                ctx.chunks, saved):
            message, den = sums[:, :p], sums[:, p:]
            # d/dN = g / den, d/dD = -sum_p g m / den; none for replaced
            # rows (and padding rows, whose powers are zero anyway)
            grad_num = layout.pad(grad_out[start:end]).masked_fill_(
                fixed.unsqueeze(1), 0.0).div_(den)
            grad_den = -torch.linalg.vecdot(grad_num, message)  # (R_pad,)
            # the adjoint of the evaluation is the moment pass, and the
            # translation is its own adjoint (K is even)
            grad_moments = layout.moments(powers, grad_num, grad_den)
            grad_local = ctx.translation(grad_moments)
            del grad_moments
            grad_zp = layout.evaluate(powers, grad_local)[:, :p]
            if ctx.exclude_self:
                grad_zp.sub_(grad_num)
            torch.index_select(grad_zp, 0, layout.pos_of_src,
                               out=grad_z[start:end])
            # offsets: target side d S_i / d sigma_i = sum_m m sigma^(m-1)
            # (L g); source side d A / d delta_j against grad_local
            both = layout.contract(grad_num, grad_den, local)
            both += layout.contract(zp, layout.valid, grad_local)
            grad_xp = torch.linalg.vecdot(_slopes(powers), both)
            torch.index_select(grad_xp, 0, layout.pos_of_src,
                               out=grad_x[start:end])
        # offsets = (mean_p z - shift) / r
        grad_z.add_((grad_x / (ctx.translation.h / 2 * p)).unsqueeze(1))
        if exact is not None:
            groups, idx, weights, rows, channels = exact
            grad_rows = grad_out.view(-1, channels, p)[groups.unsqueeze(1),
                                                       idx]  # (B', M, P)
            zg = z.view(-1, channels, p).index_select(0, groups)
            vg = v.view(-1, channels).index_select(0, groups)
            # rows = weights @ zg: (B', C, M) @ (B', M, P) -> (B', C, P)
            grad_zg = torch.bmm(weights.transpose(1, 2), grad_rows)
            # softmax of s_ij = -(v_i - v_j)^2: ds = w (g_i.z_j - g_i.m_i)
            dots = torch.bmm(grad_rows, zg.transpose(1, 2))  # (B', M, C)
            dots -= torch.linalg.vecdot(grad_rows, rows).unsqueeze(2)
            diff = torch.gather(vg, 1, idx).unsqueeze(2) - vg.unsqueeze(1)
            pull = 2 * weights * dots * diff  # ds * ds/dv_j, (B', M, C)
            grad_vg = pull.sum(dim=1).scatter_add_(1, idx, -pull.sum(dim=2))
            grad_zg += (grad_vg / p).unsqueeze(2)
            grad_z.view(-1, channels, p).index_add_(0, groups, grad_zg)
        return grad_z, None, None, None, None, None, None


def _check_args(caller: str, z: Tensor, exclude_self: bool,
                group_size: Optional[int], tol: float) -> int:
    """Validate the arguments shared by the public functions."""
    if not isinstance(z, Tensor) or z.dim() != 3:
        shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
        raise ValueError(
            f'{caller}: z must be a (N, C, P) tensor, got {shape}')
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


def _exact_weights(v: Tensor, idx: Tensor) -> Tensor:
    """Exact self-excluded softmax weights of the channels ``idx`` of each
    group over all channels of that group (the dense path's rows).

    Shape:
        - v: ``(B, C)``; idx: ``(B, M)``
        - output: ``(B, M, C)``
    """
    vi = torch.gather(v, 1, idx)  # (B, M)
    # (B, M, 1) - (B, 1, C) -> (B, M, C)
    sq_dist = (vi.unsqueeze(2) - v.unsqueeze(1)).pow(2)
    scores = -sq_dist.clamp(max=torch.finfo(v.dtype).max)
    ar = torch.arange(v.shape[1], device=v.device)
    scores = scores.masked_fill(idx.unsqueeze(2) == ar, float('-inf'))
    return torch.softmax(scores, dim=2)


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
        # detached: _FastMessage folds the gradient of the mean into z
        vd = zc.detach().mean(dim=2)  # (B, C/G)
        v_sorted, perm = _sorted_summaries(vd)
        span = (v_sorted[:, -1] - v_sorted[:, 0]).max()
        if not bool(torch.isfinite(span)) or float(span) > 2.0**40 * min(
                BIN_WIDTHS):
            return dense_message(z, exclude_self, group_size)
        chosen = _choose_expansion(v_sorted, tol, cg, exclude_self)
        if chosen is None:
            return dense_message(z, exclude_self, group_size)
        expansion, binning = chosen
        h = expansion[0]
        # centre of every channel's bin, in the channels' original order
        # (the bin choice is piecewise constant; the offsets from it carry
        # the gradient)
        b = torch.empty_like(binning.b).scatter_(1, perm, binning.b)
        shift = v_sorted[:, :1] + (b.to(compute_dtype) + 0.5) * h
        exact = _exact_channels(v_sorted, perm) if exclude_self else None
        if exact is not None:
            exact += (cg, )
        chunks = [(start * cg, end * cg,
                   _Layout(binning.select(start, end), perm[start:end],
                           compute_dtype))
                  for start, end in _chunks(batch, cg, p)]
        translation = _Translation(*expansion, binning.num_bins,
                                   compute_dtype, z.device)
        message = _FastMessage.apply(zc.reshape(batch * cg, p),
                                     vd.reshape(-1), shift.reshape(-1),
                                     exact, chunks, translation,
                                     exclude_self)
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


def _exact_channels(v_sorted: Tensor,
                    perm: Tensor) -> Optional[Tuple[Tensor, Tensor]]:
    """The channels to compute exactly with ``exclude_self``: every
    isolated channel (:func:`_isolated`) of every group that has one.

    Returns None when there are none, else ``(groups, idx)``: the groups
    ``(B',)`` and ``M`` channels of each ``(B', M)``, ``M`` the largest
    count, padded with non-isolated channels (whose exact rows are just as
    correct; ``topk`` returns distinct indices).
    """
    isolated = _isolated(v_sorted, perm)
    per_group = isolated.sum(dim=1)
    groups = torch.nonzero(per_group).squeeze(1)
    if groups.numel() == 0:
        return None
    count = int(per_group.max())
    idx = torch.topk(isolated[groups].to(v_sorted.dtype), count,
                     dim=1).indices
    return groups, idx


def choose_message_impl(num_channels: int, num_positions: int,
                        device: torch.device) -> str:
    """Return ``'fast'`` or ``'dense'`` for a group of ``num_channels``:
    ``'fast'`` from :func:`fast_min_channels` channels on.

    Args:
        num_channels (int): Channels per group ``C``.
        num_positions (int): Positions per channel ``P``.
        device (torch.device): Where the message is computed.

    Returns:
        str: ``'fast'`` or ``'dense'``.
    """
    threshold = fast_min_channels(num_positions, device)
    return 'fast' if num_channels >= threshold else 'dense'


def fast_min_channels(num_positions: int, device: torch.device) -> int:
    """Smallest group size for which 'auto' picks the fast path.

    Dense costs ``~ C^2 (P + k)`` per group, fast ``~ C P p`` plus a fixed
    overhead per call, so the break-even ``C`` grows with ``P`` and levels
    off. On the CPU it is ``a P / (P + b)`` (:data:`CPU_CROSSOVER`, measured
    with ``tools/analysis_tools/benchmark_message_passing.py --crossover``),
    and at least ``FAST_MIN_CHANNELS['cpu']``. Other devices use their
    constant in :data:`FAST_MIN_CHANNELS` (CUDA's for unknown types).

    Args:
        num_positions (int): Positions per channel ``P``.
        device (torch.device): Where the message is computed.

    Returns:
        int: The threshold ``C``.
    """
    dev_type = torch.device(device).type
    floor = FAST_MIN_CHANNELS.get(dev_type, FAST_MIN_CHANNELS['cuda'])
    if dev_type != 'cpu':
        return floor
    a, b = CPU_CROSSOVER
    return max(floor, math.ceil(a * num_positions / (num_positions + b)))


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
