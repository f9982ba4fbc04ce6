"""Order and binning of the fast message: the sorted channel summaries,
their bins, the reach of the kernel, the expansion order that meets the
tolerance for the actual bin counts, the choice of bin width, and the
isolated channels computed exactly (see :mod:`.function`)."""
import math
from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from .expansion import MAX_ORDER, _offset_errors
from .translation import _translation_cost

#: Nearest-neighbour distance in ``v`` beyond which a target is evaluated
#: exactly when the self pair is excluded (see the module docstring).
ISOLATION_RADIUS = 1.0

#: Candidate bin widths ``h`` (in units of ``v``).
BIN_WIDTHS = (0.125, 0.25, 0.5, 1.0)


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
