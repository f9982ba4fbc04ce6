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
   ``k = 0..p`` (``r = h / 2``): channels are sorted by bin and padded to
   tiles of 16 rows within one bin, so this is one batched matrix product
   over the tiles plus a sum of tiles per bin.
3. Translation. For a target bin ``T`` and a source bin ``B = T - o``
   (``Delta = o h``), Taylor's theorem on ``K(Delta + sigma - delta)`` in
   ``t = sigma - delta`` truncated at order ``p`` gives
   ``K ~ sum_{m+k<=p} K^(m+k)(Delta) (-1)^k sigma^m delta^k / (m! k!)`` with
   ``K^(n)(x) = (-1)^n H_n(x) exp(-x^2)`` (physicists' Hermite). The local
   coefficients ``L_T,m = sum_{|o|<=R} sum_k M_o[m, k] A_{T-o},k`` are one
   1-D convolution over the bin axis with a ``(p+1) x (p+1) x (2R+1)`` kernel
   (direct, or by FFT in float64 when that is cheaper). Source bins more than
   ``R`` bins away are skipped.
4. Evaluation. ``S_i = sum_m (sigma_i / r)^m L_{T(i),m}``: one batched
   matrix product over the same tiles. Numerator and denominator are carried
   together by appending a constant position of ones to ``z``.
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
smallest estimated cost (moment and evaluation products ``~ (p+1) C P``
against the translation ``~ G (2R+1) (p+1)^2 P`` directly or
``~ (p+1) G log G P`` by FFT, ``G`` = bins after shortening empty runs) is
used, so concentrated ``v`` (one or two bins) and spread ``v`` (tens of
bins) are both cheap; e.g. ``tol = 1e-5``, ``C = 2048``, ``exclude_self``
gives ``(h, p) = (0.125, 8), (0.25, 11), (0.5, 16)`` or ``(1, 25)``. The
bound is conservative: measured errors are 1e-6 to 1e-8. Float32 rounding
sets a floor near ``1e-6``; float64 inputs are computed in float64.

When it pays (:func:`choose_message_impl`). The fast path costs ``O(C P p)``
plus a sort, the dense path ``O(C^2 P)`` time and ``O(C^2)`` memory. On the
CPU (2 cores, torch 2.9.1, forward+backward, ``P = 49``) the two break even
near ``C = 256`` and the fast path is ahead from ``C = 384``
(``FAST_MIN_CHANNELS['cpu']``); 'auto' keeps the dense path for smaller
groups (``group_size=64`` stays dense even with 2048 channels). Costs that
the fast path cannot avoid: a group with many isolated channels (e.g. ``v``
spread over hundreds of units) gets their rows exactly, i.e. densely.

Gradients. :class:`_GaussTransform` has a written backward (the gradient of
the approximation itself, not of the exact softmax): the translation is its
own adjoint because ``K`` is even, so the backward is another moment pass, one
convolution and two evaluation passes, and needs none of the forward's
intermediate ``(C, P)`` tensors.
"""
import functools
import math
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
#: per device type. CPU: measured crossover (2 cores, torch 2.9.1, P = 49,
#: forward+backward, ``benchmark_message_passing.py --crossover``). CUDA: not
#: measured; chosen where the dense ``C x C`` intermediates of a batch of
#: RoIs start to cost gigabytes.
FAST_MIN_CHANNELS = {'cpu': 384, 'cuda': 1024}

#: Accepted values of ``impl`` (and of ``C3Block``'s ``message_impl``).
MESSAGE_IMPLS = ('auto', 'dense', 'fast')

# Relative costs (measured on the CPU, single thread, 128 x 2048 x 49): the
# tiled moment and evaluation products per channel, order and position = 1;
# one multiply-add of the direct translation = 0.25; one bin of the float64
# FFT translation per order (transforms, products, copies) = 80.
_CONV_COST = 0.25
_FFT_COST = 80.0


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
    position, in units of one multiply-add of the moment products."""
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
        - moments: ``(B * G, p + 1, Q)`` (``G`` bins per group, ``Q``
          positions incl. the denominator column)
        - output: same, contiguous
    """
    _, order1, q = moments.shape
    taps = min(reach, num_bins - 1)
    # (B*G, p+1, Q) -> (B, G, p+1, Q) -> (B, Q, p+1, G)
    x = moments.view(batch, num_bins, order1, q).permute(0, 3, 2, 1)
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
    # (B, Q, p+1, G) -> (B, G, p+1, Q) -> (B*G, p+1, Q)
    y = y.permute(0, 3, 2, 1).contiguous()
    return y.view(batch * num_bins, order1, q)


#: Rows per tile of the moment and evaluation products (see :class:`_Tiles`).
TILE = 16


class _Tiles:
    """Channels sorted by bin and padded so that each tile of :data:`TILE`
    rows holds channels of one bin only.

    Then the moments of a bin are a sum over its tiles of small dense
    products ``powers_tile^T @ values_tile`` and the evaluation of a tile is
    ``powers_tile @ local_bin``: batched matrix products (``bmm``) instead of
    scatters or sparse products. Padding rows are zero and dropped.

    Shape:
        - rows: ``(R,)`` bin row of every channel (``< num_rows``)
        - pos: ``(R,)`` padded position of every channel
        - tile_bin: ``(num_tiles,)`` bin row of every tile
    """

    def __init__(self, rows: Tensor, num_rows: int) -> None:
        count = rows.numel()
        perm = torch.sort(rows, stable=True)[1]
        per_bin = torch.bincount(rows, minlength=num_rows)  # (num_rows,)
        tiles_per_bin = (per_bin + TILE - 1) // TILE
        first_tile = torch.cumsum(tiles_per_bin, 0) - tiles_per_bin
        first_row = torch.cumsum(per_bin, 0) - per_bin
        sorted_rows = rows[perm]
        rank = torch.arange(count, device=rows.device) - first_row[sorted_rows]
        pos_sorted = first_tile[sorted_rows] * TILE + rank
        self.pos = torch.empty_like(pos_sorted).scatter_(0, perm, pos_sorted)
        self.num_tiles = int(tiles_per_bin.sum())
        self.tile_bin = torch.repeat_interleave(
            torch.arange(num_rows, device=rows.device), tiles_per_bin)
        self.num_rows = num_rows

    def pad(self, x: Tensor) -> Tensor:
        """``(R, Q) -> (num_tiles, TILE, Q)``, zeros in the padding."""
        out = x.new_zeros(self.num_tiles * TILE, x.shape[1])
        out.index_copy_(0, self.pos, x)
        return out.view(self.num_tiles, TILE, x.shape[1])

    def unpad(self, y: Tensor) -> Tensor:
        """``(num_tiles, TILE, Q) -> (R, Q)``."""
        return y.reshape(-1, y.shape[-1]).index_select(0, self.pos)

    def moments(self, powers: Tensor, values: Tensor) -> Tensor:
        """``A[row, k] = sum_{i in row} powers[i, k] values[i]``.

        Shape:
            - powers: ``(num_tiles, TILE, p + 1)`` (padded); values: ``(R, Q)``
            - output: ``(num_rows, p + 1, Q)``
        """
        # (T, p+1, TILE) @ (T, TILE, Q) -> (T, p+1, Q)
        per_tile = torch.bmm(powers.transpose(1, 2), self.pad(values))
        out = values.new_zeros(self.num_rows, *per_tile.shape[1:])
        return out.index_add_(0, self.tile_bin, per_tile)

    def evaluate(self, powers: Tensor, local: Tensor) -> Tensor:
        """``S[i] = sum_m powers[i, m] local[row_i, m]``.

        Shape:
            - powers: ``(num_tiles, TILE, p + 1)``; local:
              ``(num_rows, p + 1, Q)``
            - output: ``(R, Q)``
        """
        # (T, TILE, p+1) @ (T, p+1, Q) -> (T, TILE, Q)
        return self.unpad(
            torch.bmm(powers, local.index_select(0, self.tile_bin)))


def _powers(offsets: Tensor, order: int, slope: bool = False) -> Tensor:
    """``offsets^m`` (or ``m offsets^(m-1)`` with ``slope``), ``m = 0..p``.

    Shape:
        - offsets: ``(R,)``
        - output: ``(R, p + 1)``
    """
    count = offsets.numel()
    # 1, x, x^2, ... by a running product
    powers = torch.cumprod(
        torch.cat([offsets.new_ones(count, 1),
                   offsets[:, None].expand(count, order)], dim=1), dim=1)
    if slope:
        ks = torch.arange(1, order + 1, device=offsets.device)
        powers = torch.cat([offsets.new_zeros(count, 1),
                            powers[:, :order] * ks], dim=1)
    return powers


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
        tiles = _Tiles(rows, batch * num_bins)
        powers = tiles.pad(_powers(offsets, order))  # (T, TILE, p+1)
        moments = tiles.moments(powers, values)  # (B*G, p+1, Q)
        local = _translate(moments, *expansion, batch, num_bins)
        del moments
        out = tiles.evaluate(powers, local)  # (R, Q)
        ctx.save_for_backward(values, offsets, powers, local)
        ctx.tiles = tiles
        ctx.expansion, ctx.batch, ctx.num_bins = expansion, batch, num_bins
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        values, offsets, powers, local = ctx.saved_tensors
        tiles = ctx.tiles
        order = ctx.expansion[1]
        grad_out = grad_out.contiguous()
        need_values, need_offsets = ctx.needs_input_grad[:2]
        grad_values = grad_offsets = None
        # The adjoint of the evaluation is the moment pass, and the
        # translation is its own adjoint (K is even).
        grad_moments = tiles.moments(powers, grad_out)
        grad_local = _translate(grad_moments, *ctx.expansion, ctx.batch,
                                ctx.num_bins)
        del grad_moments
        if need_values:
            grad_values = tiles.evaluate(powers, grad_local)
        if need_offsets:
            slope = tiles.pad(_powers(offsets, order, slope=True))
            # target side: d S_i / d sigma_i; source side: d A / d delta_j
            grad_offsets = (tiles.evaluate(slope, local) * grad_out).sum(1)
            grad_offsets += (tiles.evaluate(slope, grad_local) *
                             values).sum(1)
        return grad_values, grad_offsets, None, None, None, None


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
            # the expansion is exact at t = 0: the self pair adds z_i and 1;
            # isolated rows are replaced below, and a safe denominator keeps
            # their (discarded) expansion out of the gradient (no 0 / 0)
            isolated = _isolated(v_sorted, perm)
            den = (den - 1).masked_fill(isolated.unsqueeze(2), 1.0)
            message = _patch_isolated((num - zc) / den, zc, v, isolated)
        else:
            message = num / den
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

    Dense costs ``~ C^2 (P + c_exp)`` per group, fast ``~ C P p`` plus a
    sort: both are linear in ``P`` (the dense softmax adds a ``C^2`` term
    that only favours the fast path at small ``P``), so the rule is a channel
    threshold per device type (:data:`FAST_MIN_CHANNELS`), measured on the
    CPU with ``tools/analysis_tools/benchmark_message_passing.py
    --crossover``. Devices without an entry use the CUDA threshold.

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
