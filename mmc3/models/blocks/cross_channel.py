"""Cross-channel communication (C3) block.

Yang, Ren, Gan, Zhu, Parikh, "Cross-channel Communication Networks",
NeurIPS 2019 (Sec. 3: feature encoder, message passing, feature decoder,
residual). Released code (CIFAR only):
https://github.com/jwyang/C3Net.pytorch (``lib/layers/cross_neuron*.py``).

Every channel's ``h x w`` map is treated as one node of a fully connected
graph over the channels of a layer: the maps are encoded, exchange messages
weighted by how similar their mean responses are, are decoded and added back
to the input as a residual.
"""
from collections import OrderedDict
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from ._checks import check_bool, check_int, check_size, renamed
from ._layers import column_sum, narrow_linear
from .message import MESSAGE_IMPLS, message_passing as pass_messages

_RESIZE_MODES = ('nearest', 'area', 'bilinear')


def _tall_blocks(rows: int, n: int, m: int, blocks: int = 64) -> int:
    """How many partial products :func:`_tall_product` sums: up to
    ``blocks``, and no more than keep the ``(blocks, n, m)`` partials at an
    eighth of the operands' ``rows * (n + m)`` elements (at least one)."""
    return max(1, min(blocks, rows, rows * (n + m) // (8 * n * m or 1)))


def _tall_product(narrow: Tensor, wide: Tensor, blocks: int = 64) -> Tensor:
    """``narrow^T @ wide`` for tall ``(R, n)`` and ``(R, m)`` matrices (a
    weight's gradient summed over all rows), as the sum of up to ``blocks``
    partial products of ``R / blocks`` rows (see :func:`_tall_blocks`).

    One matrix product reducing over a million rows of a few columns runs
    far below the machine's rate (measured on the CPU at ``R = 2^20``:
    288 ms for ``(49, R) @ (R, 7)`` against 23 ms in 64 blocks with the
    narrow operand first); the blocked sum is also more accurate (shorter
    sums). Wide operands get fewer blocks: at DeepLab's 41x41 grid
    (``(4096, 210)`` and ``(4096, 1681)``) 64 partials of ``210 x 1681``
    are 90 MB, and the product took 106 ms in 64 blocks against 27 ms in
    two.
    """
    r, n = narrow.shape
    m = wide.shape[1]
    b = _tall_blocks(r, n, m, blocks)
    head = r - r % b
    out = torch.bmm(narrow[:head].reshape(b, -1, n).transpose(1, 2),
                    wide[:head].reshape(b, -1, m)).sum(dim=0)
    if head < r:
        out += narrow[head:].t() @ wide[head:]
    return out  # (n, m)


class _FusedEnds(torch.autograd.Function):
    """``x + f4(middle(f1(x)))`` for ``(R, P)`` rows, with ``f1``, ``f4``
    linear maps to and from a few hidden units and ``middle`` a small
    differentiable function of ``(R, P/k)`` tensors (C3's factorized steps
    between the encoder's first and the decoder's last layer).

    Autograd through the same expression allocates the decoder's output,
    the residual sum, the encoder's input gradient and their sum: four
    ``(R, P)`` tensors. Here the residual is the product's accumulator
    (``addmm``), the input gradient is ``G + g_pre W1`` in one product, and
    the middle is differentiated by autograd on its small tensors: one
    ``(R, P)`` allocation each way, three reads of ``G`` and one of ``x`` in
    the backward pass. Keeps ``x`` (the block's input) and the hidden
    tensors, nothing of size ``(R, P)`` of its own. Not differentiable
    twice.

    ``x`` comes in its block shape ``(N, C, H, W)``, seen as ``R = N * C``
    rows, and the output is a tensor of that shape, not a view: hosts add
    their identity to the block's output in place (``out += identity``),
    and an in-place sum on a view makes autograd copy the whole tensor
    and scatter its gradient back into a zero-filled one (three more
    passes over it in the backward pass).
    """

    @staticmethod
    def forward(ctx, x, middle, w1, b1, w4, b4, *mid_params):
        ctx.shape = x.shape
        x = x.reshape(-1, w1.shape[1])  # (R, P)
        pre = torch.addmm(b1, x, w1.t())  # (R, P/k)
        with torch.enable_grad():
            pre = pre.detach().requires_grad_()
            g = middle(pre)  # (R, P/k), with a graph to pre and mid_params
        # [g, 1] @ [W4, b4]^T: the bias in the same product
        g_aug = torch.cat([g.detach(), g.new_ones(g.shape[0], 1)], dim=1)
        w4_aug = torch.cat([w4, b4.unsqueeze(1)], dim=1)  # (P, P/k + 1)
        out = x.new_empty(ctx.shape)
        torch.addmm(x, g_aug, w4_aug.t(), out=out.view_as(x))
        ctx.save_for_backward(x, w1, w4_aug, g_aug)
        ctx.graph = (pre, g)
        ctx.mid_params = mid_params
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, w1, w4_aug, g_aug = ctx.saved_tensors
        pre, g = ctx.graph
        grad = grad.reshape(x.shape)
        hidden = g.shape[1]
        # G W4 with W4 column-major: a third faster than row-major (CPU)
        grad_g = grad @ w4_aug[:, :hidden].t().contiguous().t()  # (R, P/k)
        grad_w4_aug = _tall_product(g_aug, grad).t()  # (P, P/k + 1)
        wanted = [pre] + [p for p in ctx.mid_params if p.requires_grad]
        # the middle's graph is kept while this node is (a retained outer
        # graph can be differentiated again); it is small
        found = torch.autograd.grad(g, wanted, grad_g,
                                    allow_unused=True, retain_graph=True)
        grad_pre, found = found[0], iter(found[1:])
        grad_mid = [next(found) if p.requires_grad else None
                    for p in ctx.mid_params]
        grad_x = torch.addmm(grad, grad_pre, w1)  # G + g_pre W1
        grad_w1 = _tall_product(grad_pre, x)  # (P/k, P)
        return (grad_x.view(ctx.shape), None, grad_w1, column_sum(grad_pre),
                grad_w4_aug[:, :hidden].contiguous(),
                grad_w4_aug[:, hidden].contiguous(), *grad_mid)


def _bottleneck(positions: int, ratio: int) -> nn.Sequential:
    """``P -> max(1, P // k) -> ReLU -> P``, shared by all channels."""
    hidden = max(1, positions // ratio)
    return nn.Sequential(
        OrderedDict(
            fc_in=nn.Linear(positions, hidden),
            act=nn.ReLU(),
            fc_out=nn.Linear(hidden, positions)))

_NAME = 'C3Block'


@MODELS.register_module()
class C3Block(BaseModule):
    """Cross-channel communication block (Yang et al., NeurIPS 2019).

    ``out = x + Dec(sum_j softmax_j(-(v_i - v_j)^2) Enc(x)_j)`` with
    ``Enc``/``Dec`` two-layer bottlenecks over the ``P = h * w`` positions of
    each channel map, shared by all channels, and ``v_i`` the spatial mean of
    ``Enc(x)_i``.

    Steps (paper Sec. 3):

    1. If the input is not ``grid_size``, resize it to the grid
       (``resize_mode``); the decoded residual is resized back to ``(H, W)``
       with the same mode before the sum. Inputs already at the grid are not
       resized.
    2. Encoder: ``z_i = f_out(ReLU(f_in(x_i)))``, linear maps with bias
       ``P -> max(1, P // ratio) -> P``.
    3. Message passing: ``zbar_i = sum_j a_ij z_j``,
       ``a_ij = softmax_j(-(v_i - v_j)^2)``, ``v_i = mean_p z_i[p]``, over the
       channels of ``i``'s group, ``j != i`` if ``exclude_self``.
    4. Decoder (own weights, same shape):
       ``xbar_i = g_out(ReLU(g_in(zbar_i)))``.
    5. Residual ``out = x + xbar``, then ReLU if ``post_act``.

    Parameters: ``2 * (2 * P * (P // k) + P // k + P)`` for ``k = ratio``,
    independent of ``in_channels`` (none when ``encode_decode=False``).

    Shape:
        - Input: ``(N, C, H, W)``, any ``H, W >= 1``
        - Output: ``(N, C, H, W)``

    Args:
        in_channels (int): Number of input channels ``C``.
        grid_size (int | tuple[int, int], optional): The block's spatial grid
            ``(h, w)``; the encoder/decoder weights depend on ``h * w``.
            Required whenever ``encode_decode`` is True: there is no default,
            because no single size fits every host and silently resizing a
            large map to a small default grid would discard most of it. Set it
            to the size the host feeds the block, e.g. ``7`` for stage 4 of
            the Faster/Mask R-CNN C4 RoI head (14x14 RoIs -> 7x7), ``(16, 16)``
            and ``(8, 8)`` for the CIFAR stem/stage outputs. With
            ``encode_decode=False`` it may be None (message passing then runs
            at the input's own resolution). Defaults to None.
        ratio (int): Bottleneck ratio ``k`` (the seeds' reduction ``k``);
            hidden width is
            ``max(1, P // k)``. Defaults to 8 (paper; seed ablation: 4 and 8
            best).
        exclude_self (bool): Sum the message over ``j != i`` (paper) rather
            than over all ``j`` (released code). Defaults to True.
        group_size (int, optional): Restrict communication to consecutive
            groups of this many channels; must divide ``in_channels``. None
            means all channels talk (paper, "full interactions across
            channels"); the released code uses 512. Defaults to None.
        resize_mode (str): Interpolation used to go to the grid and back, one
            of ``'nearest'`` (released code), ``'area'``, ``'bilinear'``
            (``align_corners=False``). Defaults to ``'nearest'``.
        post_act (bool): Apply ReLU after the residual sum, as the released
            code does. Defaults to False.
        message_passing (bool): Run step 3; if False, ``zbar = z`` (ablation
            "Enc-Dec only"). Defaults to True.
        encode_decode (bool): Use the encoder and decoder; if False both are
            the identity, ``z = x`` and ``xbar = zbar`` (ablation "Mess.
            Passing only"). Defaults to True.
        message_impl (str): How step 3 is computed: ``'dense'`` builds the
            ``C x C`` softmax of every group (exact, ``O(C^2)`` memory);
            ``'fast'`` evaluates the same message as a fast Gauss transform
            without that matrix, to within ``message_tol``; ``'auto'`` uses
            the fast path for groups of at least ``fast_min_channels(P,
            device)`` channels and the dense one below: the measured
            break-even group size, which grows with the positions ``P`` and
            depends on the device (the rule and its constants are in
            :func:`mmc3.models.blocks.message.fast_min_channels`).
            Defaults to ``'auto'``.
        message_tol (float): Largest error of the fast path's message
            relative to ``max |z|`` of its group, in ``(0, 1)``; float32
            rounding limits it to about ``1e-6``. With ``factorize`` the
            message runs on the hidden units, so the bound is relative to
            their ``max |h|`` and moves ``zbar`` by at most
            ``|f_out|_inf`` times that. Defaults to 1e-5.
        factorize (bool): Compute the same output without forming ``z`` and
            ``zbar``: the message weights of every channel sum to one, so the
            message commutes with the encoder's last linear map,
            ``zbar = msg(h) f_out^T`` on the hidden units ``h`` (with the
            weights from ``v = mean_p z = h . mean_p(f_out) + mean(b)``),
            and ``f_out`` and ``g_in`` compose into one small
            ``hidden x hidden`` map. The block then makes two passes over
            ``(N, C, P)`` maps instead of six; the values are the same up
            to float rounding (the fast message's tolerance then applies to
            ``h``: see ``message_tol``). Falls back to the literal steps
            when a forward hook is registered on ``encoder``,
            ``encoder.fc_out``, ``decoder`` or ``decoder.fc_in`` (or a
            global one), so hooks and hook-based counters see every layer,
            and where the message is not a convex combination (groups of one
            channel with ``exclude_self``). Defaults to True.
        init_cfg (dict | list[dict], optional): mmengine initialisation
            config. Defaults to None (PyTorch's default ``nn.Linear`` init).
        reduction (int, optional): Former name of ``ratio`` (deprecated,
            still accepted with a ``DeprecationWarning``).

    Note:
        - Paper vs released code: the paper sums over ``j != i`` and adds the
          residual without an activation; the released code keeps ``j = i``
          (``exclude_self=False``), applies ``ReLU`` after the sum
          (``post_act=True``) and groups channels by 512
          (``group_size=512``). The default ``post_act=False`` is chosen
          because mmdet/mmseg plugins sit before the bottleneck's residual
          add, where rectifying would change the host.
        - Some released variants also add a normalisation layer after the
          decoder, detach ``v`` from the graph, or split large maps into
          tiles instead of resizing; none of these is in the paper and none
          is implemented here.
        - With one channel (or groups of one) and ``exclude_self=True`` the
          message is zero, so ``out = x + Dec(0)``.
        - ``message_impl`` is an implementation choice, not in the paper or
          the released code (which are dense): the fast path's message
          differs from the dense one by at most ``message_tol * max |z|``,
          and its gradients are those of that approximation. The method: the
          softmax is shift invariant, so ``zbar_i = sum_j K(v_i - v_j) z_j /
          sum_j K(v_i - v_j)`` with ``K(u) = exp(-u^2)``, a pair of 1-D Gauss
          transforms. The channel means are binned, each bin's channels are
          summarised by Taylor moments, translated to every bin within the
          kernel's reach and evaluated at the targets; the order and bin
          width are the cheapest that provably meet ``message_tol`` for the
          actual bin counts, and channels with no neighbour within 1 are
          computed exactly. At the C4 head's 128 x 2048 x 49 it is about 40x
          faster than the dense softmax and needs 27x less memory on the
          CPU (README, Benchmarks). Details, error bounds and the measured
          switch-over: ``mmc3/models/blocks/message/``.
        - With ``message_passing=False`` and ``encode_decode=False`` the
          block reduces to ``out = 2 * x``; it is accepted so that ablation
          sweeps can enumerate all four combinations.
    """

    _abbr_ = 'c3_block'

    def __init__(self,
                 in_channels: int,
                 grid_size: Union[int, Tuple[int, int], None] = None,
                 ratio: int = 8,
                 exclude_self: bool = True,
                 group_size: Optional[int] = None,
                 resize_mode: str = 'nearest',
                 post_act: bool = False,
                 message_passing: bool = True,
                 encode_decode: bool = True,
                 message_impl: str = 'auto',
                 message_tol: float = 1e-5,
                 factorize: bool = True,
                 init_cfg: Union[dict, list, None] = None,
                 reduction: Optional[int] = None) -> None:
        super().__init__(init_cfg)
        self.in_channels = check_int(_NAME, 'in_channels', in_channels)
        ratio = renamed(_NAME, 'ratio', ratio, 8, 'reduction', reduction)
        self.ratio = check_int(_NAME, 'ratio', ratio)
        self.exclude_self = check_bool(_NAME, 'exclude_self', exclude_self)
        self.post_act = check_bool(_NAME, 'post_act', post_act)
        self.message_passing = check_bool(_NAME, 'message_passing', message_passing)
        self.encode_decode = check_bool(_NAME, 'encode_decode', encode_decode)
        self.factorize = check_bool(_NAME, 'factorize', factorize)
        if (not isinstance(message_impl, str)
                or message_impl not in MESSAGE_IMPLS):
            raise ValueError(f'C3Block: message_impl must be one of '
                             f'{MESSAGE_IMPLS}, got {message_impl!r}')
        self.message_impl = message_impl
        if isinstance(message_tol, bool) or not isinstance(
                message_tol, (int, float)):
            raise TypeError('C3Block: message_tol must be a float in (0, 1), '
                            f'got {type(message_tol).__name__} '
                            f'{message_tol!r}')
        if not 0 < message_tol < 1:
            raise ValueError('C3Block: message_tol must be a float in (0, 1), '
                             f'got {message_tol}')
        self.message_tol = float(message_tol)
        if group_size is not None:
            check_int(_NAME, 'group_size', group_size)
            if in_channels % group_size != 0:
                raise ValueError(
                    f'C3Block: group_size must divide in_channels '
                    f'({in_channels}), got {group_size}')
        self.group_size = group_size
        if (not isinstance(resize_mode, str)
                or resize_mode not in _RESIZE_MODES):
            raise ValueError(f'C3Block: resize_mode must be one of '
                             f'{_RESIZE_MODES}, got {resize_mode!r}')
        self.resize_mode = resize_mode
        if grid_size is None:
            if encode_decode:
                raise ValueError(
                    'C3Block: grid_size is required when encode_decode=True '
                    '(the encoder weights depend on h*w), got None; set it to '
                    'the feature size the host feeds the block, e.g. '
                    'grid_size=7 for stage 4 of the C4 RoI head')
            self.grid_size: Optional[Tuple[int, int]] = None
        else:
            self.grid_size = check_size(_NAME, 'grid_size', grid_size)

        if encode_decode:
            positions = self.grid_size[0] * self.grid_size[1]
            self.encoder = _bottleneck(positions, self.ratio)
            self.decoder = _bottleneck(positions, self.ratio)
        else:
            self.encoder = nn.Identity()
            self.decoder = nn.Identity()

    def _resize(self, x: Tensor, size: Tuple[int, int]) -> Tensor:
        if self.resize_mode == 'bilinear':
            return F.interpolate(
                x, size=size, mode='bilinear', align_corners=False)
        return F.interpolate(x, size=size, mode=self.resize_mode)

    def _message(self, z: Tensor, v: Optional[Tensor] = None) -> Tensor:
        """Step 3 on ``(N, C, P)`` encoded maps (dense or fast, see
        ``message_impl``), weighted by ``v`` (``(N, C)``) if given, else by
        the means of ``z``."""
        return pass_messages(z, self.exclude_self, self.group_size,
                             impl=self.message_impl, tol=self.message_tol,
                             v=v)

    def _runs_factorized(self) -> bool:
        """Whether :meth:`forward` may skip ``z`` and ``zbar`` (see
        ``factorize``)."""
        if not (self.factorize and self.encode_decode):
            return False
        if self.message_passing and self.exclude_self and (
                self.group_size or self.in_channels) == 1:
            return False  # a zero message is no convex combination
        # skipped (the fused path computes with the layers' weights)
        skipped = (self.encoder, self.decoder, *self.encoder.children(),
                   *self.decoder.children())
        if any(m._forward_hooks or m._forward_pre_hooks for m in skipped):
            return False
        module_hooks = nn.modules.module
        return not (getattr(module_hooks, '_global_forward_hooks', None)
                    or getattr(module_hooks, '_global_forward_pre_hooks',
                               None))

    def _middle(self, h: Tensor) -> Tensor:
        """The factorized steps between the encoder's hidden units ``h``
        (after its ReLU) and the decoder's (after its ReLU), ``(N, C, P/k)
        -> (N, C, P/k)``: the message on ``h`` weighted by the means of
        ``z = f_out(h)``, then ``g_in . f_out`` as one map (see
        ``factorize``)."""
        enc, dec = self.encoder, self.decoder
        w_out, b_out = enc.fc_out.weight, enc.fc_out.bias  # (P, P/k), (P,)
        if self.message_passing:
            # v = mean_p z = h . mean_p(w_out) + mean_p(b_out), (N, C)
            v = narrow_linear(h, w_out.mean(dim=0, keepdim=True),
                              b_out.mean().reshape(1)).squeeze(2)
            h = self._message(h, v)
        # g_in(h f_out^T + b_out) = h (W_in W_out)^T + (W_in b_out + b_in)
        w_in, b_in = dec.fc_in.weight, dec.fc_in.bias
        return dec.act(narrow_linear(h, w_in @ w_out,
                                     torch.addmv(b_in, w_in, b_out)))

    def _factorized(self, xf: Tensor) -> Tensor:
        """Steps 2-4 on ``(N, C, P)`` maps without forming ``z`` and
        ``zbar`` (see ``factorize``); returns ``xbar``, ``(N, C, P)``."""
        enc = self.encoder
        return self.decoder.fc_out(self._middle(enc.act(enc.fc_in(xf))))

    def _fused(self, x: Tensor) -> Tensor:
        """The whole block for an input at the grid, without autocast:
        :class:`_FusedEnds` around :meth:`_middle`."""
        n, c, h, w = x.shape
        enc, dec = self.encoder, self.decoder
        hidden = enc.fc_in.out_features

        def middle(pre: Tensor) -> Tensor:  # (N*C, P/k) -> (N*C, P/k)
            return self._middle(F.relu(pre).view(n, c, hidden)).flatten(0, 1)

        mid_params = (enc.fc_out.weight, enc.fc_out.bias, dec.fc_in.weight,
                      dec.fc_in.bias)
        return _FusedEnds.apply(x, middle, enc.fc_in.weight, enc.fc_in.bias,
                                dec.fc_out.weight, dec.fc_out.bias,
                                *mid_params)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block; see the class docstring."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f'C3Block: expected input of shape (N, {self.in_channels}, H, '
                f'W), got {tuple(x.shape)}')
        n, c, h, w = x.shape
        grid = self.grid_size if self.grid_size is not None else (h, w)
        resized = grid != (h, w)
        xg = self._resize(x, grid) if resized else x

        factorized = self._runs_factorized()
        if factorized and not resized and x.dtype in (
                torch.float32, torch.float64) and not torch.is_autocast_enabled(
                    x.device.type):
            out = self._fused(x)
            return self._post_act(out)
        if factorized:
            xbar = self._factorized(xg.flatten(2)).reshape(n, c, *grid)
        else:
            z = self.encoder(xg.flatten(2))  # (N, C, h, w) -> (N, C, P)
            zbar = self._message(z) if self.message_passing else z
            # (N, C, P) -> (N, C, h, w)
            xbar = self.decoder(zbar).reshape(n, c, *grid)

        if resized:
            # the resize's output is this block's own temporary: sum into it
            # rather than allocate another (N, C, H, W) tensor
            out = self._resize(xbar, (h, w)).add_(x)
        else:
            # not in place: xbar is a view here, and the output must not be
            # one (see _FusedEnds)
            out = x + xbar
        return self._post_act(out)

    def _post_act(self, out: Tensor) -> Tensor:
        """ReLU after the residual sum if ``post_act``, as ``threshold``:
        its backward keeps its input, this block's own temporary, where
        ReLU's keeps its output, which a host may then modify in place
        (``out += identity``) and so break the backward pass."""
        return F.threshold(out, 0.0, 0.0) if self.post_act else out

    def extra_repr(self) -> str:
        return (f'in_channels={self.in_channels}, grid_size={self.grid_size}, '
                f'ratio={self.ratio}, '
                f'exclude_self={self.exclude_self}, '
                f'group_size={self.group_size}, '
                f'resize_mode={self.resize_mode!r}, '
                f'post_act={self.post_act}, '
                f'message_passing={self.message_passing}, '
                f'encode_decode={self.encode_decode}, '
                f'message_impl={self.message_impl!r}, '
                f'message_tol={self.message_tol}, '
                f'factorize={self.factorize}')
