"""The expansion of the fast message: derivatives of the kernel
``K(u) = exp(-u^2)`` and the tabulated truncation errors of its Taylor
polynomials (see :mod:`.function` for the method)."""
import functools
import math

import torch
from torch import Tensor

#: Largest expansion order considered.
MAX_ORDER = 40


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
