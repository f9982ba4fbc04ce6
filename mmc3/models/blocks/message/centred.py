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
from torch.autograd.function import once_differentiable

from .._layers import row_dot

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


def _expansion(v: Tensor, order: int):
    """The centred expansion's factors of every group's summaries ``v``
    (``(B, C)``): ``a = v - c``, ``A^T`` (``(B, p + 1, C)``: the channels
    along the inner stride, see :class:`_CentredMessage`), the weights
    ``(2 r^2)^k / k!`` (``(B, p + 1, 1)``) and ``1 / r`` (``(B, 1)``), with
    the centre ``c`` and the half-span ``r`` constants of the
    approximation."""
    hi, lo = v.amax(dim=1, keepdim=True), v.amin(dim=1, keepdim=True)
    centre = (hi + lo) / 2  # (B, 1)
    # r: half the span. A_ik B_jk does not depend on r, which only keeps
    # |a / r| <= 1; the floor keeps (2 r^2)^k finite for a group of equal
    # summaries
    r = ((hi - lo) / 2).clamp_min(1e-3)
    a = v - centre  # (B, C)
    u = a / r
    left_t = v.new_empty(v.shape[0], order + 1, v.shape[1])  # A^T
    torch.exp(-a * a, out=left_t[:, 0])
    for k in range(order):  # over the expansion order, not the channels
        torch.mul(left_t[:, k], u, out=left_t[:, k + 1])
    k = torch.arange(order + 1, device=v.device, dtype=v.dtype)
    # (2 r^2)^k / k!, (B, p + 1, 1)
    coef = torch.exp(k * torch.log(2 * r * r) - torch.lgamma(k + 1))
    return a, left_t, coef.unsqueeze(2), 1 / r


def _rows(t: Tensor) -> Tensor:
    """``(B, P, C) -> (B, C, P)``, contiguous."""
    return t.transpose(1, 2).contiguous()


class _CentredMessage(torch.autograd.Function):
    """The centred message with a written backward.

    Autograd through the expression keeps and accumulates a gradient for
    every intermediate, and its batched products have the ``C`` channels
    as the rows of ``(C, p + 1) @ (p + 1, P)`` products, which CPU batched
    products run several times slower than the transposed ones (measured
    at 512 x 2048 x 5 by 512 x 5 x 6: 17.5 ms against 3.9 ms). Here ``A``
    and ``B`` are kept as ``(B, p + 1, C)`` with the channels along the
    inner stride, every product is of the fast kind, and only the message
    and ``z``'s gradient are transposed back to ``(B, C, P)``. Measured at
    C3's 512 x 2048 x 6 hidden units, span 1.2, order 8: 373 ms
    forward+backward through autograd, 205 ms here (see the README).
    Keeps ``z``, ``A^T``, the moments, the denominators and the output. Not
    differentiable twice (like the binned path's :class:`._FastMessage`).
    """

    @staticmethod
    def forward(ctx, z: Tensor, v: Tensor, exclude_self: bool,
                order: int) -> Tensor:
        a, left_t, coef, inv_r = _expansion(v, order)
        right_t = left_t * coef  # B^T: (B, p + 1, C)
        moments = torch.bmm(right_t, z)  # B^T z: (B, p + 1, P)
        ones = right_t.sum(dim=2, keepdim=True)  # B^T 1: (B, p + 1, 1)
        # A s: (B, 1, p + 1) @ (B, p + 1, C), seen as (B, C, 1)
        den = torch.bmm(ones.transpose(1, 2), left_t).view(*v.shape, 1)
        own = None
        if exclude_self:
            # K~_ii = sum_k A_ik B_ik, (B, C, 1)
            own = (left_t * right_t).sum(dim=1).unsqueeze(2)
            den.sub_(own)
        out = _rows(torch.bmm(moments.transpose(1, 2), left_t))  # A M
        if exclude_self:
            out.addcmul_(z, own, value=-1)
        out.div_(den)
        ctx.save_for_backward(z, a, left_t, coef, inv_r, moments, ones, den,
                              out, own)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        z, a, left_t, coef, inv_r, moments, ones, den, out, own = \
            ctx.saved_tensors
        right_t = left_t * coef
        # out = num / den: d num = G / den, d den = -sum_p G num / den^2
        g_num = grad / den  # (B, C, P)
        g_den = -row_dot(g_num, out).unsqueeze(2)  # (B, C, 1)
        # num = A M (- own z), den = A s (- own), M = B^T z, s = B^T 1;
        # gradients of A and B transposed like them, (B, p + 1, C)
        g_left_t = torch.bmm(moments, g_num.transpose(1, 2)).addcmul_(
            ones, g_den.transpose(1, 2))
        g_moments = torch.bmm(left_t, g_num)  # (B, p + 1, P)
        g_ones = torch.bmm(left_t, g_den)  # (B, p + 1, 1)
        g_right_t = torch.bmm(g_moments, z.transpose(1, 2)).add_(g_ones)
        g_z = None
        if ctx.needs_input_grad[0]:
            g_z = _rows(torch.bmm(g_moments.transpose(1, 2), right_t))
            if own is not None:
                g_z.addcmul_(g_num, own, value=-1)
        g_v = None
        if ctx.needs_input_grad[1]:
            if own is not None:
                # own = sum_k A_k B_k enters num as -own z and den as -own
                g_own = -(row_dot(g_num, z) + g_den.squeeze(2))
                g_own = g_own.unsqueeze(1)  # (B, 1, C)
                g_left_t.addcmul_(g_own, right_t)
                g_right_t.addcmul_(g_own, left_t)
            g_left_t.addcmul_(g_right_t, coef)  # B = A coef
            # A_k = exp(-a^2) u^k, u = a / r:
            # dA_k / da = -2 a A_k + k A_(k-1) / r
            k = torch.arange(1, left_t.shape[1], device=z.device,
                             dtype=z.dtype).view(1, -1, 1)
            g_v = (-2 * a) * (g_left_t * left_t).sum(dim=1) + inv_r * (
                g_left_t[:, 1:] * k * left_t[:, :-1]).sum(dim=1)
        return g_z, g_v, None, None


def centred_message(z: Tensor, v: Tensor, exclude_self: bool,
                    order: int) -> Tensor:
    """The message of every group by the centred expansion of ``order``.

    Differentiable once in ``z`` and ``v`` (the centres and spans are
    constants of the approximation), by :class:`_CentredMessage`.

    Shape:
        - z: ``(B, C, P)`` groups of channels; v: ``(B, C)`` their
          summaries
        - output: ``(B, C, P)``
    """
    return _CentredMessage.apply(z, v, exclude_self, order)
