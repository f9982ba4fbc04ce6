"""The translation step of the fast message: local coefficients of every
target bin from the moments of the bins within reach, by one matrix product
per offset, one banded block-Toeplitz product, or FFTs along the bins,
whichever the measured cost model says is cheapest (see :mod:`.function`)."""
import functools
import math
from typing import Optional, Tuple

import torch
from torch import Tensor

from .expansion import _kernel_derivatives

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
