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

Method (:func:`fast_message`), per sample and channel group (when every
group's summaries lie within :data:`.centred.MAX_SPAN`, steps 1-5 are
replaced by the single centred expansion of :mod:`.centred`):

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
densely. When those rows would hold more than ``max(DENSE_MAX_ELEMENTS,
B C^2 / 8)`` weights (``B`` groups of ``C``), :func:`fast_message` hands the
whole call to :func:`dense_message`, which forms its affinities in bounded
chunks (a C4 detector whose channel means had drifted apart in training
once spent minutes and gigabytes per iteration in one unchunked
``(groups, M, C)`` tensor of exact rows).

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
from typing import Optional, Tuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .binning import (BIN_WIDTHS, _choose_expansion, _exact_channels,
                      _sorted_summaries)
from .centred import centred_message, centred_order
from .dense import DENSE_MAX_ELEMENTS, _check_summaries, dense_message
from .layout import _chunks, _Layout, _slopes
from .translation import _Translation

class _FastMessage(torch.autograd.Function):
    """The message ``(N_i - e z_i) / (D_i - e)`` (``e = 1`` with
    ``exclude_self``) from the Gauss transforms ``N_i = sum_j K~_ij z_j`` and
    ``D_i = sum_j K~_ij``, computed chunk by chunk of groups on the padded
    layout of :class:`_Layout`, with the rows in ``exact`` replaced by their
    exact messages.

    ``K~`` is the truncated two-sided Taylor expansion of ``exp(-u^2)`` on
    the bins described in the module docstring. Inputs and output are flat
    over ``(group, channel)`` rows in the channels' original order. ``v``
    holds the channels' summaries (``z.mean(1)`` unless the caller computes
    them otherwise) and gets its own gradient, ``shift`` the centre of every channel's bin, so that the
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
        # offsets = (v - shift) / r
        grad_v = grad_x.div_(ctx.translation.h / 2)
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
            grad_z.view(-1, channels, p).index_add_(0, groups, grad_zg)
            grad_v.view(-1, channels).index_add_(0, groups, grad_vg)
        return grad_z, grad_v, None, None, None, None, None


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
                 tol: float = 1e-5,
                 v: Optional[Tensor] = None) -> Tensor:
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
        v (Tensor, optional): ``(N, C)`` channel summaries that weight the
            message in place of ``z.mean(2)`` (see
            :func:`mmc3.models.blocks.message.message_passing`). Defaults to
            None.

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
    _check_summaries('fast_message', z, v)
    n, c, p = z.shape
    if exclude_self and cg == 1:
        return z * 0
    if z.numel() == 0:
        return dense_message(z, exclude_self, group_size, v=v)
    groups = c // cg
    batch = n * groups
    compute_dtype = torch.promote_types(z.dtype, torch.float32)
    with torch.autocast(device_type=z.device.type, enabled=False):
        # (N, C, P) -> (N * G, C / G, P): consecutive channels share a group
        zc = z.reshape(batch, cg, p).to(compute_dtype)
        vc = (zc.mean(dim=2) if v is None else
              v.reshape(batch, cg).to(compute_dtype))  # (B, C/G)
        vd = vc.detach()
        span_g = vd.amax(dim=1) - vd.amin(dim=1)
        span = span_g.max()
        if not bool(torch.isfinite(span)) or float(span) > 2.0**40 * min(
                BIN_WIDTHS):
            return dense_message(z, exclude_self, group_size, v=v)
        order = centred_order(float(span), tol)
        if order is not None:
            return centred_message(zc, vc, exclude_self,
                                   order).to(z.dtype).reshape(n, c, p)
        v_sorted, perm = _sorted_summaries(vd)
        exact = _exact_channels(v_sorted, perm) if exclude_self else None
        if exact is not None and exact[1].numel() * cg > max(
                DENSE_MAX_ELEMENTS, batch * cg * cg // 8):
            # many isolated channels: their exact rows would form a
            # (groups, M, C) tensor approaching the dense path's, in one
            # piece (and the bins of so spread a group are many); the dense
            # path forms its affinities in bounded chunks
            return dense_message(z, exclude_self, group_size, v=v)
        chosen = _choose_expansion(v_sorted, tol, cg, exclude_self)
        if chosen is None:
            return dense_message(z, exclude_self, group_size, v=v)
        expansion, binning = chosen
        h = expansion[0]
        # centre of every channel's bin, in the channels' original order
        # (the bin choice is piecewise constant; the offsets from it carry
        # the gradient)
        b = torch.empty_like(binning.b).scatter_(1, perm, binning.b)
        shift = v_sorted[:, :1] + (b.to(compute_dtype) + 0.5) * h
        if exact is not None:
            exact += (cg, )
        chunks = [(start * cg, end * cg,
                   _Layout(binning.select(start, end), perm[start:end],
                           compute_dtype))
                  for start, end in _chunks(batch, cg, p)]
        translation = _Translation(*expansion, binning.num_bins,
                                   compute_dtype, z.device)
        message = _FastMessage.apply(zc.reshape(batch * cg, p),
                                     vc.reshape(-1), shift.reshape(-1),
                                     exact, chunks, translation,
                                     exclude_self)
    return message.to(z.dtype).reshape(n, c, p)
