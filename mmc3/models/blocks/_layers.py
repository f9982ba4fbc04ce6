"""Convolutions of the blocks computed the fast way, as modules.

The gates of SE and GE apply 1x1 convolutions to small (often ``1 x 1``)
maps, and parametric global GE applies a depthwise convolution whose kernel
covers the whole map. CPU convolution kernels are several times slower than
a matrix product there, so the blocks used to bypass their ``Conv2d``
modules with ``F.linear`` / ``einsum`` on the modules' weights, which hid
them from forward hooks, FLOP counters and pruning tools. These subclasses
keep the ``Conv2d`` parameters, state-dict layout and type (``init_cfg``
with ``layer='Conv2d'`` still applies) and compute the same values in their
own ``forward``, so the modules are called like any other.
:func:`narrow_linear` is the same kind of shortcut for C3's products over
a few hidden units.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

#: elements per chunk of the chunked backward passes (4 MiB of float32):
#: small enough that a chunk's product is still in the last-level cache
#: when it is read again, large enough that the Python loop over chunks
#: (about 50 at 512x2048x7x7) costs nothing next to the arithmetic
CHUNK_ELEMENTS = 2**20


def _pack_factor(rows: int, width: int) -> int:
    """How many rows :func:`narrow_linear` packs into one: the largest power
    of two ``k <= 32 // width`` that divides ``rows`` (1 for wide rows)."""
    k = 1
    while 2 * k * width <= 32 and rows % (2 * k) == 0:
        k *= 2
    return k


def narrow_linear(x: torch.Tensor, weight: torch.Tensor,
                  bias: torch.Tensor = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` for inputs of a few features (C3's
    hidden units: 6 at a 7x7 grid), with ``k`` rows packed into one.

    CPU matrix products with an inner dimension this small run far below
    the machine's rate (measured at ``2^20 x 6`` rows and a ``6 x 6``
    weight: 31 ms through ``F.linear`` against 6 ms for ``2^18 x 24`` rows
    times the ``24 x 24`` block-diagonal weight, which is the same memory
    and the same values: each output is the sum of the same products plus
    exact zeros). Autograd differentiates the packed product, so the
    input's and the weight's gradients are packed products too.

    Shape: ``(..., in) -> (..., out)``, like ``F.linear``.
    """
    width = max(x.shape[-1], weight.shape[0])
    rows = x.numel() // max(1, x.shape[-1])
    k = _pack_factor(rows, width)
    if k == 1 or not x.is_contiguous():
        return F.linear(x, weight, bias)
    packed = torch.block_diag(*([weight] * k))  # (k out, k in)
    bias = None if bias is None else bias.repeat(k)
    out = F.linear(x.reshape(rows // k, k * x.shape[-1]), packed, bias)
    return out.view(*x.shape[:-1], weight.shape[0])


class PointwiseConv(nn.Conv2d):
    """A 1x1 convolution computed as a matrix product over channels.

    Shape: ``(N, C_in, h, w) -> (N, C_out, h, w)``; same values and
    parameters as ``nn.Conv2d(C_in, C_out, 1)``.
    """

    def __init__(self, in_channels: int, out_channels: int,
                 bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (C_out, C_in, 1, 1) -> (C_out, C_in); (N, C, h, w) -> (N, h, w, C)
        y = F.linear(x.movedim(1, -1), self.weight.flatten(1), self.bias)
        return y.movedim(-1, 1)  # (N, h, w, C_out) -> (N, C_out, h, w)


class GateLink:
    """Hands the gating product's output gradient from
    :func:`scale_channels`' backward to the backward of the gather that
    the gate was computed from (:class:`GlobalAvgPool`,
    :class:`FullMapDepthwiseConv`), so that the block's input gradient,
    ``G * gate`` plus the gather's own term, is formed in one pass.

    Autograd would have each backward write its term as an input-sized
    tensor and then add the two in a further pass: at 512x2048x7x7 that is
    one pass more for SE and three more for parametric global GE (whose
    gather term ``g w`` is input-sized too). A block makes one link per
    forward and passes it to the gather and to :func:`scale_channels`; the
    scale only defers its input gradient when the gate's graph reaches the
    gather it was given (a forward hook that detaches or replaces the gate
    breaks the link, and the scale then forms its input gradient itself).
    """

    __slots__ = ('source', 'deferred')

    def __init__(self) -> None:
        #: which tensor the gather saw (set by the gather; see
        #: :meth:`key`)
        self.source = None
        #: ``(grad, gate)`` from the scale's backward, until the gather's
        #: backward takes it
        self.deferred = None

    @staticmethod
    def key(x: torch.Tensor) -> tuple:
        """What identifies ``x`` as the same tensor (memory, layout and
        in-place version): a forward pre-hook that hands the gather
        another tensor, even of the same shape, breaks the link."""
        return (x.data_ptr(), tuple(x.shape), x.stride(), x._version)

    def take(self):
        """The deferred ``(grad, gate)``, or None; cleared once taken."""
        deferred, self.deferred = self.deferred, None
        return deferred


def _gather_node_of(link: GateLink, node, budget: int = 64) -> bool:
    """Whether the autograd graph behind ``node`` reaches, within
    ``budget`` nodes, the gather's node that holds ``link``."""
    # the visited nodes are kept so that their ids are not reused: a C++
    # node's Python wrapper can be a new object at every access
    stack, seen, visited = [node], set(), []
    while stack and budget > 0:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        visited.append(node)
        budget -= 1
        if getattr(node, 'link', None) is link:
            return True
        stack.extend(fn for fn, _ in node.next_functions)
    return False


def _gated_plus(grad: torch.Tensor, gate: torch.Tensor, g: torch.Tensor,
                w: torch.Tensor = None) -> torch.Tensor:
    """``grad * gate + g`` (``w is None``) or ``grad * gate + g * w`` for
    ``grad`` (N, C, H, W) contiguous, ``gate`` and ``g`` (N, C, 1, 1) and
    ``w`` (C, H, W), written once: the second product is added a chunk of
    samples at a time while the chunk of the first is still in the
    cache."""
    if w is None:
        return torch.addcmul(g, grad, gate)
    out = torch.empty_like(grad)
    rows = _chunk_rows(grad.shape[1:].numel())
    for start in range(0, grad.shape[0], rows):
        stop = min(start + rows, grad.shape[0])
        chunk = out[start:stop]
        torch.mul(grad[start:stop], gate[start:stop], out=chunk)
        chunk.addcmul_(g[start:stop], w)
    return out


def _plain_float(x: torch.Tensor) -> bool:
    """Whether ``x`` is a contiguous float32/float64 tensor outside
    autocast: what the matrix-vector forms below take."""
    return (x.is_contiguous() and x.dtype in (torch.float32, torch.float64)
            and not torch.is_autocast_enabled(x.device.type))


def spatial_sum(x: torch.Tensor) -> torch.Tensor:
    """``x.sum((2, 3), keepdim=True)`` for ``x`` (N, C, H, W): for a
    contiguous float input, as the product of the ``(N * C, H * W)`` maps
    with a vector of ones. Reducing each short row (49 elements at 7x7)
    through the reduction kernel runs below the memory's rate; the
    matrix-vector product reads the maps once at full rate (12.7 against
    16.5 ms at 512x2048x7x7, medians of 15 alternating runs)."""
    n, c, h, w = x.shape
    if not _plain_float(x):
        return x.sum(dim=(2, 3), keepdim=True)
    ones = x.new_ones(h * w)
    return torch.mv(x.view(n * c, h * w), ones).view(n, c, 1, 1)


def row_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.linalg.vecdot(a, b)`` (real, same shapes): the products
    summed over the last dimension as one matrix-vector product with
    ones. For short rows (C3's 6 hidden units) the reduction kernel runs
    far below the memory's rate: 10.0 against 6.6 ms at 512 x 2048 x 6
    (medians of 15 alternating runs)."""
    prod = a * b
    if not _plain_float(prod) or prod.numel() == 0:
        return prod.sum(dim=-1)
    k = prod.shape[-1]
    return torch.mv(prod.view(-1, k), prod.new_ones(k)).view(prod.shape[:-1])


def column_sum(m: torch.Tensor) -> torch.Tensor:
    """``m.sum(dim=0)`` for a tall ``(R, k)`` matrix, as ``m^T`` times a
    vector of ones (a bias's gradient over a million rows of C3's 6
    hidden units: 8.3 against 6.2 ms)."""
    if not _plain_float(m) or m.dim() != 2 or m.shape[0] == 0:
        return m.sum(dim=0)
    return torch.mv(m.t(), m.new_ones(m.shape[0]))


class _SpatialMean(torch.autograd.Function):
    """``x.sum((2, 3), keepdim=True) / (H * W)`` whose backward adds the
    deferred gating gradient of its :class:`GateLink` (see there)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, link: GateLink) -> torch.Tensor:
        ctx.shape = x.shape
        ctx.link = link
        link.source = GateLink.key(x)
        return spatial_sum(x) / (x.shape[2] * x.shape[3])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        g = grad / (ctx.shape[2] * ctx.shape[3])  # (N, C, 1, 1)
        deferred = ctx.link.take()
        if deferred is None:
            return g.expand(ctx.shape), None
        return _gated_plus(deferred[0], deferred[1], g), None


class GlobalAvgPool(nn.AdaptiveAvgPool2d):
    """Global average pooling, ``(N, C, H, W) -> (N, C, 1, 1)``, as a sum
    divided by ``H * W``: the same values as ``nn.AdaptiveAvgPool2d(1)``
    (whose type it keeps, for hook-based counters), but the backward pass
    broadcasts the gradient as a view (a sum's gradient) instead of
    materialising an input-sized tensor (a mean's or a pooling's)."""

    def __init__(self) -> None:
        super().__init__(1)

    def forward(self, x: torch.Tensor,
                link: GateLink = None) -> torch.Tensor:
        """``link``: the block's :class:`GateLink` when ``x`` is also the
        input that :func:`scale_channels` gates."""
        if link is not None and x.requires_grad and torch.is_grad_enabled():
            return _SpatialMean.apply(x, link)
        return spatial_sum(x) / (x.shape[2] * x.shape[3])


class _FullMapDot(torch.autograd.Function):
    """``y[n, c] = sum_p x[n, c, p] w[c, p]`` for ``x`` (N, C, h, w) and
    ``w`` (C, h, w), with both gradients as one broadcast product each.

    Autograd through ``einsum`` forms the weight's gradient as a batched
    product over channels of ``x`` transposed: 200 ms at 512x2048x7x7 on
    the CPU, against 27 ms for ``(g x).sum(0)`` and 11 ms for the input's
    gradient ``g w`` (40 ms through a batched product); the weight's
    gradient is summed a chunk of samples at a time
    (:func:`_sum_of_products_over_batch`). Keeps ``x`` and ``w``;
    differentiable twice (double backward uses plain ops).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor,
                link: GateLink = None) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        ctx.link = link
        if link is not None:
            link.source = GateLink.key(x)
        if x.is_contiguous():
            return _dot_over_maps(x.flatten(2), w.flatten(1))  # (N, C)
        return torch.linalg.vecdot(x.flatten(2), w.flatten(1))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, w = ctx.saved_tensors
        g = grad.unsqueeze(2)  # (N, C, 1)
        deferred = None if ctx.link is None else ctx.link.take()
        if deferred is not None:
            # the gating gradient plus this one, in one pass
            grad_x = _gated_plus(deferred[0], deferred[1], g.unsqueeze(3), w)
        elif ctx.needs_input_grad[0]:
            grad_x = (g * w.flatten(1)).view_as(x)
        else:
            grad_x = None
        grad_w = None
        if ctx.needs_input_grad[1]:
            if torch.is_grad_enabled() or not x.is_contiguous():
                # double backward (plain ops) or an unusual layout
                grad_w = (g * x.flatten(2)).sum(dim=0)
            else:
                grad_w = _sum_of_products_over_batch(g, x.flatten(2))
            grad_w = grad_w.view_as(w)
        return grad_x, grad_w, None


def _chunk_rows(row_elements: int) -> int:
    """Rows of ``row_elements`` each that fill one chunk of
    :data:`CHUNK_ELEMENTS` (at least one row)."""
    return max(1, CHUNK_ELEMENTS // max(1, row_elements))


def _dot_over_maps(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``(x * w).sum(2)`` for ``x`` (N, C, P) contiguous and ``w`` (C, P),
    a chunk of samples at a time, each chunk's product summed while it is
    still in the cache (``vecdot`` writes the whole product and reads it
    back: 38 against 24 ms at 512x2048x7x7, medians of 11 alternating
    runs)."""
    rows = _chunk_rows(x.shape[1:].numel())
    out = x.new_empty(x.shape[:2])
    buf = x.new_empty((min(rows, x.shape[0]), ) + tuple(x.shape[1:]))
    for start in range(0, x.shape[0], rows):
        stop = min(start + rows, x.shape[0])
        prod = torch.mul(x[start:stop], w, out=buf[:stop - start])
        torch.sum(prod, dim=2, out=out[start:stop])
    return out


def _sum_of_products_over_batch(g: torch.Tensor,
                                x: torch.Tensor) -> torch.Tensor:
    """``(g * x).sum(0)`` for ``g`` (N, C, 1) and ``x`` (N, C, P)
    contiguous, a chunk of samples at a time: each chunk's product is
    summed while it is still in the cache instead of being written to and
    read back from memory (15 against 27 ms at 512x2048x7x7)."""
    rows = _chunk_rows(x.shape[1:].numel())
    buf = x.new_empty((min(rows, x.shape[0]), ) + tuple(x.shape[1:]))
    total = x.new_zeros(x.shape[1:])
    part = torch.empty_like(total)
    for start in range(0, x.shape[0], rows):
        stop = min(start + rows, x.shape[0])
        prod = buf[:stop - start]
        torch.mul(g[start:stop], x[start:stop], out=prod)
        total.add_(torch.sum(prod, dim=0, out=part))
    return total


class FullMapDepthwiseConv(nn.Conv2d):
    """A depthwise convolution (no bias, no padding) whose kernel covers the
    whole input map: a per-channel weighted sum of the map.

    Shape: ``(N, C, h, w) -> (N, C, 1, 1)`` with ``(h, w)`` the kernel size;
    same values and parameters as ``nn.Conv2d(C, C, (h, w), groups=C,
    bias=False)`` (3-4x faster than CPU depthwise kernels).
    """

    def __init__(self, channels: int, size) -> None:
        super().__init__(channels, channels, size, groups=channels,
                         bias=False)

    def forward(self, x: torch.Tensor,
                link: GateLink = None) -> torch.Tensor:
        """``link``: the block's :class:`GateLink` when ``x`` is also the
        input that :func:`scale_channels` gates."""
        if tuple(x.shape[2:]) != tuple(self.kernel_size):
            raise ValueError(
                f'FullMapDepthwiseConv: expected maps of size '
                f'{tuple(self.kernel_size)}, got {tuple(x.shape[2:])}')
        # (N, C, h, w) x (C, h, w) -> (N, C) -> (N, C, 1, 1)
        w = self.weight[:, 0]  # (C, 1, h, w) -> (C, h, w)
        if x.dtype != w.dtype or torch.is_autocast_enabled(x.device.type):
            return torch.einsum('nchw,chw->nc', x, w)[:, :, None, None]
        return _FullMapDot.apply(x, w, link)[:, :, None, None]


class _ChannelScale(torch.autograd.Function):
    """``x * gate`` with a per-channel gate ``(N, C, 1, 1)``.

    Autograd's product makes three passes over input-sized tensors in the
    backward pass (``G * x`` written, read back by its spatial sum, and
    ``G * gate``). Here both products are formed a chunk of channel maps
    at a time, the first in the chunk of the output that the second then
    overwrites, so ``G * x`` is summed while it is still in the cache: 33
    against 47 ms at 512x2048x7x7. Keeps ``x`` (the block's input) and the
    gate. Double backward (``create_graph=True``) uses plain products.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, gate: torch.Tensor,
                link: GateLink = None) -> torch.Tensor:
        ctx.save_for_backward(x, gate)
        ctx.link = link
        return x * gate

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, gate = ctx.saved_tensors
        need_x, need_gate = ctx.needs_input_grad[:2]
        if not need_gate:
            return grad * gate, None, None
        if (torch.is_grad_enabled() or not x.is_contiguous()
                or not grad.is_contiguous()):
            # double backward (plain ops) or an unusual layout
            grad_gate = (grad * x).sum(dim=(2, 3), keepdim=True)
            return (grad * gate if need_x else None), grad_gate, None
        if need_x and ctx.link is not None:
            # the gather's backward forms the input's gradient (GateLink)
            ctx.link.deferred = (grad, gate)
            need_x = False
        n, c, h, w = x.shape
        rows = _chunk_rows(h * w)
        g_maps = grad.view(n * c, h * w)
        x_maps = x.view(n * c, h * w)
        gate_rows = gate.reshape(n * c, 1)
        grad_gate = gate.new_empty(n * c, 1)
        grad_x = torch.empty_like(grad) if need_x else None
        out = grad_x.view(n * c, h * w) if need_x else \
            grad.new_empty(min(rows, n * c), h * w)
        for start in range(0, n * c, rows):
            stop = min(start + rows, n * c)
            chunk = out[start:stop] if need_x else out[:stop - start]
            torch.mul(g_maps[start:stop], x_maps[start:stop], out=chunk)
            torch.sum(chunk, dim=1, keepdim=True, out=grad_gate[start:stop])
            if need_x:
                torch.mul(g_maps[start:stop], gate_rows[start:stop],
                          out=chunk)
        return grad_x, grad_gate.view_as(gate), None


def scale_channels(x: torch.Tensor, gate: torch.Tensor,
                   link: GateLink = None) -> torch.Tensor:
    """``x * gate`` for ``x`` ``(N, C, H, W)`` and ``gate`` ``(N, C, 1, 1)``
    of the same dtype (see :class:`_ChannelScale`); other shapes and dtypes
    (autocast) broadcast as a plain product.

    ``link``: the :class:`GateLink` the block passed to the gather of
    ``x`` that ``gate`` was computed from; it is used only when the gather
    saw this very ``x`` and the gate's graph reaches that gather."""
    if (gate.dim() == 4 and gate.shape[2:] == (1, 1)
            and gate.shape[:2] == x.shape[:2] and gate.dtype == x.dtype
            and x.dim() == 4):
        if link is not None and not (
                link.source == GateLink.key(x) and x.requires_grad
                and _gather_node_of(link, gate.grad_fn)):
            link = None
        return _ChannelScale.apply(x, gate, link)
    return x * gate
