"""The fast message of groups whose summaries lie close together: one
Taylor expansion about each group's centre, as two small matrix products.

With ``c`` the centre of a group's summaries and ``r`` half their span,
write ``a_i = v_i - c`` and ``b_j = v_j - c`` (``|a|, |b| <= r``). Then

    K(v_i - v_j) = exp(-a_i^2) exp(-b_j^2) exp(2 a_i b_j)
                 ~ sum_{k<=p} [exp(-a_i^2) (a_i/r)^k] [exp(-b_j^2) (b_j/r)^k
                   (2 r^2)^k / k!]  =  sum_k A_ik B_jk,

so the Gauss transforms are ``N = A (B^T z)`` and ``D = A (B^T 1)``: two
batched products with ``p + 1`` inner rows, ``O(C P p)`` time, no sort, no
bins and no ``C x C`` matrix. The self pair is removed with its own
expanded weight ``K~_ii = A_i . B_i``, so that the message ``(N_i - K~_ii
z_i) / (D_i - K~_ii)`` is a convex combination of the other channels under
the expanded kernel, exactly as the dense message is under the exact one.

Error control (``tol`` relative to ``max |z|`` of a group, as in
:func:`mmc3.models.blocks.message.fast_message`). The remainder of the
exponential series gives ``|K~_ij - K_ij| <= eps_K = (2 r^2)^(p+1) /
(p+1)! exp(2 r^2)``. Every other channel is within ``2 r``, so the
self-excluded denominator is at least ``(C - 1) exp(-4 r^2)``; numerator and
denominator errors of at most ``(C - 1) eps_K`` (times ``max |z|``) move
the message by at most ``2 eps_K / (exp(-4 r^2) - eps_K)``. The order is the
smallest that keeps this below ``0.4 tol``; the rest of ``tol`` is left to
rounding. Every ``|A_ik B_jk|`` summed over ``k`` is at most
``exp(-(|a| - |b|)^2) <= 1``, so rounding is that of the products' sums
against a denominator of at least ``(C - 1) exp(-4 r^2)``: the path is
taken only while the span ``2 r`` is at most :data:`MAX_SPAN` (where that
factor is at most ``e``) and the order at most :data:`MAX_ORDER`; wider
spreads go to the binned expansion.
"""
import math
from typing import Optional

import torch
from torch import Tensor

#: Widest span of a group's summaries (``max v - min v``) for which the
#: centred expansion is used.
MAX_SPAN = 1.5

#: Highest expansion order the centred path uses (``MAX_SPAN`` at
#: ``tol = 1e-7`` needs 11).
MAX_ORDER = 16


def centred_order(span: float, tol: float) -> Optional[int]:
    """Smallest order that meets ``tol`` for groups of summaries spread over
    at most ``span``, or None when the centred path does not apply (``span``
    beyond :data:`MAX_SPAN` or an order beyond :data:`MAX_ORDER`)."""
    if not span <= MAX_SPAN:
        return None
    r2 = (span / 2)**2
    floor = math.exp(-4 * r2)
    for order in range(MAX_ORDER + 1):
        eps = (2 * r2)**(order + 1) / math.factorial(order + 1) * math.exp(
            2 * r2)
        if eps < floor and 2 * eps / (floor - eps) <= 0.4 * tol:
            return order
    return None


def centred_message(z: Tensor, v: Tensor, exclude_self: bool,
                    order: int) -> Tensor:
    """The message of every group by the centred expansion of ``order``.

    Differentiable by autograd in ``z`` and ``v`` (the centres and spans
    are constants of the approximation).

    Shape:
        - z: ``(B, C, P)`` groups of channels; v: ``(B, C)`` their
          summaries
        - output: ``(B, C, P)``
    """
    vd = v.detach()
    hi, lo = vd.amax(dim=1, keepdim=True), vd.amin(dim=1, keepdim=True)
    centre = (hi + lo) / 2  # (B, 1)
    # r: half the span. A_ik B_jk does not depend on r, which only keeps
    # |a / r| <= 1; the floor keeps (2 r^2)^k finite for a group of equal
    # summaries
    r = ((hi - lo) / 2).clamp_min(1e-3)
    a = v - centre  # (B, C)
    u = a / r
    gauss = torch.exp(-a * a)
    columns = [gauss]
    for _ in range(order):  # over the expansion order, not the channels
        columns.append(columns[-1] * u)
    left = torch.stack(columns, dim=2)  # A: (B, C, p + 1)
    k = torch.arange(order + 1, device=v.device, dtype=v.dtype)
    # (2 r^2)^k / k!, (B, p + 1)
    coef = torch.exp(k * torch.log(2 * r * r) - torch.lgamma(k + 1))
    right = left * coef.unsqueeze(1)  # B: (B, C, p + 1)
    # (B, p+1, C) @ (B, C, P) -> (B, p+1, P); then (B, C, p+1) @ that
    num = torch.bmm(left, torch.bmm(right.transpose(1, 2), z))
    den = torch.bmm(left, right.sum(dim=1).unsqueeze(2))  # (B, C, 1)
    if exclude_self:
        own = (left * right).sum(dim=2, keepdim=True)  # K~_ii, (B, C, 1)
        num = num - own * z
        den = den - own
    return num / den
