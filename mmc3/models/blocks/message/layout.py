"""The padded layout of the fast message: channels sorted by bin, bins
padded to multiples of :data:`TILE` rows and grouped by padded size, so that
moments and evaluation are one batched product per size; and the chunks of
groups processed at a time (see :mod:`.function`)."""
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from .binning import _Binning

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
