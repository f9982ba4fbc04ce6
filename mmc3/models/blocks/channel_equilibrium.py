"""Channel Equilibrium (CE) block.

Shao, Tang, Pan, Tan, Wang, Luo, "Channel Equilibrium Networks for Learning
Deep Representation", ICML 2020, arXiv:2003.00214. Implemented: the CE unit
``out = lam * BD(u) + (1 - lam) * IR(u)`` (the released code's reading of
appendix D Eq. 31) with batch decorrelation (BD: group-wise Newton-Schulz
whitening of the channel covariance, appendix E "Model and computational
complexity" and appendix G), instance reweighting (IR: appendix B.1 Eq. 21
and the global variance scale ``s`` of the main text's Eq. 8) and the
moving-average inference rule (appendix E Eq. 32).
Released code: https://github.com/Tangshitao/CENet
(``devkit/ops/CE_module.py``).
"""
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
from torch.autograd.function import once_differentiable
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmengine.registry import MODELS

from . import _layers
from ._checks import check_bool, check_float, check_int

_NAME = 'CEBlock'


def _fit_group_size(channels: int, group_size: int) -> int:
    """Largest ``group_size / 2**k`` that divides ``channels`` (as released).

    Examples: ``(64, 16) -> 16``, ``(24, 16) -> 8``, ``(8, 16) -> 8``,
    ``(3, 16) -> 1``.
    """
    d = group_size
    while channels % d != 0:
        d //= 2
    return d


def _chunk_samples(x: torch.Tensor) -> int:
    """Samples of ``x`` (N, G, d, P) per chunk of :func:`_stats` and
    :func:`_stats_grad`: about ``CHUNK_ELEMENTS`` elements (at least one
    sample)."""
    return max(1, _layers.CHUNK_ELEMENTS // max(1, x[0].numel()))


def _stats(x: torch.Tensor):
    """``(N, G, d, P) -> (ss, sigma, mean)``; see :class:`_ChannelStats`.

    A chunk of samples at a time: the centred chunk is formed in a buffer
    that is still in the cache when its Gram matrices are taken, instead of
    an input-sized ``xc`` written to and read back from memory (66 -> 52
    ms at 512x2048x7x7, ``d = 16``).
    """
    n, g, d, p = x.shape
    mean = x.new_empty(n, g, d)
    ss = x.new_empty(n, g, d)
    sigma = x.new_zeros(g, d, d)
    rows = _chunk_samples(x)
    buf = x.new_empty(min(rows, n) * g, d, p)
    gram = x.new_empty(min(rows, n) * g, d, d)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        k = (stop - start) * g
        xs = x[start:stop].reshape(k, d, p)
        m = torch.mean(xs, dim=2, out=mean[start:stop].view(k, d))
        xc = torch.sub(xs, m.unsqueeze(2), out=buf[:k])
        gr = torch.bmm(xc, xc.transpose(1, 2), out=gram[:k])  # (k, d, d)
        ss[start:stop].view(k, d).copy_(torch.diagonal(gr, dim1=1, dim2=2))
        sigma += gr.view(stop - start, g, d, d).sum(dim=0)
    delta = mean - mean.mean(dim=0)  # (N, G, d)
    sigma += p * torch.einsum('ngi,ngj->gij', delta, delta)
    return ss, sigma.div_(n * p), mean


def _stats_grad(x: torch.Tensor, mean: torch.Tensor,
                grad_ss: Optional[torch.Tensor],
                grad_sigma: Optional[torch.Tensor],
                mix_t: Optional[torch.Tensor] = None,
                grad: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The gradient :func:`_stats` sends to ``x`` (N, G, d, P), a new
    tensor; a ``None`` gradient counts as zero. With ``mix_t`` (N, G, d,
    d) and ``grad`` (N, G, d, P), ``mix_t @ grad`` is added to it (the
    product's gradient in :class:`_Equilibrium`).

    With ``B = (g_sigma + g_sigma^T) / M`` (symmetric, shared by the
    samples) and ``S_n = B + diag(2 g_ss,n)``, the gradient is ``S_n xc_n
    + B (mean_n - mbar)`` (the second term from the covariance's
    ``delta_n``; ``mbar`` the means over the samples), that is ``S_n x_n``
    minus ``B mbar + 2 g_ss,n * mean_n`` at every position: one batched
    product per sample and group, and a shift that takes products over
    the groups only. Formed a chunk of samples at a time, so that each
    chunk's product is still in the cache when the next term is added.
    """
    n, g, d, p = x.shape
    shift = x.new_zeros(n, g, d, 1)
    if grad_sigma is not None:
        b = (grad_sigma + grad_sigma.transpose(1, 2)) / (n * p)  # (G, d, d)
        sym = b.expand(n, g, d, d).contiguous()
        shift += torch.matmul(b, mean.mean(dim=0).unsqueeze(2))  # (G, d, 1)
    else:
        sym = x.new_zeros(n, g, d, d)
    if grad_ss is not None:
        torch.diagonal(sym, dim1=2, dim2=3).add_(2 * grad_ss)
        shift.addcmul_(grad_ss.unsqueeze(3), mean.unsqueeze(3), value=2)
    out = torch.empty_like(x)
    rows = _chunk_samples(x)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        k = (stop - start) * g
        o = torch.bmm(sym[start:stop].reshape(k, d, d),
                      x[start:stop].reshape(k, d, p),
                      out=out[start:stop].view(k, d, p))
        if mix_t is not None:
            o.baddbmm_(mix_t[start:stop].reshape(k, d, d),
                       grad[start:stop].reshape(k, d, p))
        o.sub_(shift[start:stop].view(k, d, 1))
    return out


class _ChannelStats(torch.autograd.Function):
    """Both statistics CE takes of its input, in one pass over it.

    ``(N, G, d, P) -> (ss, sigma)``: ``ss`` (N, G, d), each channel's sum of
    squared deviations from its own mean over the positions (the IR
    variances times their denominator), and ``sigma`` (G, d, d), every
    group's covariance over all ``M = N * P`` samples and positions.

    With ``xc`` the input centred per sample and channel and ``delta_n`` the
    per-sample means minus the group means, ``M sigma = sum_n xc_n xc_n^T +
    P sum_n delta_n delta_n^T`` (the cross terms vanish because ``xc``
    sums to zero over the positions): two sums of positive semi-definite
    terms, no cancellation, and ``ss`` is the diagonal of the first one's
    summands. Autograd through these expressions would keep ``xc`` (the
    block's size) for the backward pass; this function keeps the input and
    the means and forms ``xc`` again there: the gradient is ``(S_n + S_n^T)
    xc_n`` plus a constant per sample and channel, with ``S_n = diag(g_ss)
    + g_sigma / M``.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor):
        ss, sigma, mean = _stats(x)
        ctx.save_for_backward(x, mean)
        return ss, sigma

    @staticmethod
    def backward(ctx, grad_ss, grad_sigma):
        x, mean = ctx.saved_tensors
        return _stats_grad(x, mean, grad_ss, grad_sigma)


def _assemble(shared: torch.Tensor, diag: torch.Tensor) -> torch.Tensor:
    """CE's per-sample matrices ``shared + diag(diag)``: ``(G, d, d)`` and
    ``(N, G, d)`` -> ``(N, G, d, d)``."""
    n, g, d = diag.shape
    mix = shared.expand(n, g, d, d).clone()
    torch.diagonal(mix, dim1=2, dim2=3).add_(diag)
    return mix


class _Equilibrium(torch.autograd.Function):
    """The whole CE block for a float input without autocast: ``mix(ss,
    sigma) @ x`` with ``(ss, sigma)`` the statistics of :class:`_ChannelStats`
    and ``mix = shared + diag(diag)`` (N, G, d, d) from two small
    differentiable functions of them, ``shared`` (G, d, d) and ``diag``
    (N, G, d) (the whitening, the IR gate, the running averages:
    :meth:`CEBlock._mix_parts`).

    Autograd through the same steps sends ``x`` two input-sized gradients
    (the statistics' and the product's) and sums them into a third. Here
    the product's gradient ``mix^T G`` is accumulated (``baddbmm``) into the
    statistics' and the middle is differentiated by autograd on its small
    tensors: one input-sized allocation each way. ``mix`` itself is formed
    without autograd: its gradient ``G x^T`` reaches the middle as its sum
    over the samples (``shared``'s) and its diagonal (``diag``'s), so no
    ``(N, G, d, d)`` tensor is copied, scattered or summed by autograd in
    either pass. The output is a tensor of
    the input's shape, not a view, so that the host's in-place residual sum
    (``out += identity``) does not make autograd copy it and scatter its
    gradient back (see ``_FusedEnds`` in ``cross_channel``). Keeps ``x``
    (the block's input), the means and ``mix``. Not differentiable twice.
    """

    @staticmethod
    def forward(ctx, u, groups, middle, *params):
        n, c, h, w = u.shape
        x = u.reshape(n, groups, c // groups, h * w)
        ss, sigma, mean = _stats(x)
        with torch.enable_grad():
            ss.requires_grad_()
            sigma.requires_grad_()
            # (G, d, d) and (N, G, d), with a graph to ss, sigma
            parts = middle(ss, sigma)
        ctx.shape = u.shape
        mix = _assemble(*(q.detach() for q in parts))  # (N, G, d, d)
        out = u.new_empty(n, c, h, w)
        torch.matmul(mix, x, out=out.view(x.shape))
        ctx.save_for_backward(x, mean, mix)
        ctx.graph = (ss, sigma, parts)
        ctx.params = params
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, mean, mix = ctx.saved_tensors
        ss, sigma, parts = ctx.graph
        grad = grad.reshape(x.shape)
        grad_mix = torch.matmul(grad, x.transpose(2, 3))  # (N, G, d, d)
        # (G, d, d) and (N, G, d): the gradients of shared and diag
        grad_parts = (grad_mix.sum(dim=0),
                      torch.diagonal(grad_mix, dim1=2, dim2=3))
        outputs = [(q, gq) for q, gq in zip(parts, grad_parts)
                   if q.requires_grad]
        wanted = [ss, sigma] + [q for q in ctx.params if q.requires_grad]
        # the middle's graph is kept while this node is; it is small
        found = torch.autograd.grad([q for q, _ in outputs], wanted,
                                    [gq for _, gq in outputs],
                                    allow_unused=True, retain_graph=True)
        grad_x = _stats_grad(x, mean, found[0], found[1],
                             mix.transpose(2, 3), grad)
        found = iter(found[2:])
        grad_params = [next(found) if q.requires_grad else None
                       for q in ctx.params]
        return (grad_x.view(ctx.shape), None, None, *grad_params)


@MODELS.register_module()
class CEBlock(BaseModule):
    """Channel Equilibrium block (Shao et al., ICML 2020).

    ``out = lam * P u + (1 - lam) * (g(sigma2) / s) * u``, ``lam =
    sigmoid(theta)``, ``P`` the group-wise Newton-Schulz whitening matrix of
    ``u``'s channel covariance, ``g`` the IR gate of Eq. 21.

    The block sits after a BN layer, before the residual sum and the ReLU
    (mmdet/mmseg plugin position ``after_conv3``).

    * IR branch (appendix B.1, Eq. 21): ``sigma2[n, c]`` is the variance of
      ``u[n, c]`` over the ``H*W`` positions; ``g_n = Sigmoid(W2 ReLU(LN(W1
      sigma2_n)))`` with ``W1: C -> C/r`` and ``W2: C/r -> C`` without biases
      and an affine LayerNorm on the ``C/r`` hidden units; ``s = sqrt(mean_{n,
      c} sigma2 + eps)``; ``IR(u) = (g / s) * u``.
    * BD branch: channels are split into ``G = C / d`` groups of ``d``
      consecutive channels. Per group, over all ``M = N*H*W`` positions,
      ``Sigma = (1/M) (u - mean)(u - mean)^T + eps * I``, ``Sigma_N = Sigma /
      tr(Sigma)``, ``P_0 = I``, ``P_{k+1} = 1.5 P_k - 0.5 P_k^3 Sigma_N``
      (``T = ns_iters`` steps), ``BD(u) = P_T u`` applied to the un-centred
      ``u``. All groups are processed together by batched matrix products.
    * Training mode uses the batch statistics and updates running averages
      ``running_wm <- (1 - m) running_wm + m P_T`` (initialised to ``I``) and
      ``running_scale <- (1 - m) running_scale + m s`` (initialised to 1).
      Eval mode uses ``running_wm`` and ``running_scale`` (appendix E,
      Eq. 32), so that each sample's output depends on that sample only. The
      IR gate ``g`` is always computed from the sample itself.

    Shape:
        - Input: ``(N, C, H, W)`` with ``C == in_channels``; any ``H, W >= 1``.
        - Output: ``(N, C, H, W)``, same dtype as the input.

    Args:
        in_channels (int): Number of channels ``C`` of the input.
        ratio (int): Reduction ratio ``r`` of the IR bottleneck; the hidden
            width is ``max(1, C // r)``. Defaults to 4 (appendix B.1).
        group_size (int): Requested whitening group size ``d``; halved until
            it divides ``C`` (as in the released code). Defaults to 16
            (appendix G).
        ns_iters (int): Number ``T`` of Newton-Schulz iterations. ``0`` gives
            ``P_T = I`` (BD is the identity). Defaults to 3.
        eps (float): Added to the covariance diagonal and inside the square
            root of the IR scale ``s``. Defaults to 1e-5.
        momentum (float): Momentum ``m`` of the running averages of ``P_T``
            and ``s``, in ``[0, 1]``. Defaults to 0.1.
        pool (bool): Estimate the covariance on a 2x2 max-pooled (stride 2)
            copy of ``u`` to save computation on large maps (appendix E/G).
            ``P_T`` is still applied to the full-resolution ``u``.
            Defaults to False.
        unbiased_var (bool): Use the unbiased (``1/(HW-1)``) instance
            variance in the IR branch, as the released code; False uses
            ``1/(HW)`` as appendix B Eq. 17. Defaults to True.
        trace_rescale (bool): Multiply ``P_T`` by ``tr(Sigma)^(-1/2)`` so that
            it approximates ``Sigma^(-1/2)`` (IterNorm's scaling) instead of
            ``Sigma_N^(-1/2) = tr(Sigma)^(1/2) Sigma^(-1/2)``. Defaults to
            False (the paper, appendix C Prop. 1 with ``tr(Sigma) = 1``, and
            the released code).
        init_cfg (dict or list[dict], optional): mmengine initialisation
            config. Defaults to None (PyTorch's default ``nn.Linear``
            initialisation, as released; ``theta`` starts at 0).

    Note:
        Deviations from, and readings of, the paper and the released code:

        * Whitening scale: with the default ``trace_rescale=False`` the
          applied matrix is ``P_T ~ Sigma_N^(-1/2)``, *not* rescaled by
          ``sqrt(tr(Sigma))^-1``, exactly as the released code (its ``wm =
          P[T]``, no ``rTr.sqrt()`` factor) and as appendix C assumes. On a
          whitened input (``Sigma = I``) with ``d = 16`` and ``T = 3`` the
          BD branch therefore multiplies ``u`` by about 2.87 (the exact
          inverse square root would give ``sqrt(d) = 4``).
        * The IR scale has ``eps`` inside the square root: the released code
          computes ``sqrt(mean sigma2)`` and produces NaN on an all-zero
          input (``zero_init_residual`` makes the preceding BN output zeros
          at step 0). The running ``s`` starts at 1 (released: 0, which
          divides by zero in eval before the first training step).
        * With ``H*W == 1`` the unbiased variance is undefined; the variance
          is then 0 (released: NaN).
        * ``pool=True`` pools with ``ceil_mode=True`` so that odd and 1x1
          maps keep their last row/column (released: ``floor``, which fails
          on 1x1 maps). The pooled covariance is divided by the pooled
          sample count ``M_p = N * ceil(H/2) * ceil(W/2)``; the released code
          divides it by the unpooled ``M = N*H*W`` (about 4x more), so its
          covariance is ``M_p / M`` times ours and, after the trace
          normalisation, its ``eps`` weighs ``M / M_p`` times more. Its
          whitening matrix is exactly ours computed with ``eps * M / M_p``
          (``4 * eps`` for even ``H`` and ``W``) in the BD branch (tested).
        * The released code also tracks a running mean that it never uses;
          it is not kept here.
        * Batch statistics are computed per process, not synchronised
          across GPUs (as the paper, appendix G); like BN's, the running
          buffers are updated by every training-mode forward.
        * Covariance, Newton-Schulz, instance variances and ``s`` are computed
          in float32 (float64 if the input is float64) with autocast
          disabled; the IR MLP follows the ambient autocast policy.
        * Hosts with ``norm_eval=True`` (the mmdet ResNet default) put only
          their ``_BatchNorm`` modules in eval mode. CE is not a
          ``_BatchNorm`` and deliberately keeps following the host's own
          train/eval mode: while the host trains, CE uses batch statistics
          and updates its running averages; after ``host.eval()`` it uses the
          running averages. Freezing CE with the BNs would keep
          ``running_wm = I`` forever when CE is added to a pretrained
          backbone, turning BD into the identity.
    """

    _abbr_ = 'ce_block'

    def __init__(self,
                 in_channels: int,
                 ratio: int = 4,
                 group_size: int = 16,
                 ns_iters: int = 3,
                 eps: float = 1e-5,
                 momentum: float = 0.1,
                 pool: bool = False,
                 unbiased_var: bool = True,
                 trace_rescale: bool = False,
                 init_cfg: Optional[Union[dict, list]] = None) -> None:
        super().__init__(init_cfg)
        self.in_channels = check_int(_NAME, 'in_channels', in_channels)
        self.ratio = check_int(_NAME, 'ratio', ratio)
        self.requested_group_size = check_int(_NAME, 'group_size', group_size)
        self.ns_iters = check_int(_NAME, 'ns_iters', ns_iters, 0)
        self.eps = check_float(_NAME, 'eps', eps, 0.0, float('inf'),
                               low_open=True, high_open=True)
        self.momentum = check_float(_NAME, 'momentum', momentum, 0.0, 1.0,
                                     low_open=False)
        self.pool = check_bool(_NAME, 'pool', pool)
        self.unbiased_var = check_bool(_NAME, 'unbiased_var', unbiased_var)
        self.trace_rescale = check_bool(_NAME, 'trace_rescale', trace_rescale)

        self.group_size = _fit_group_size(in_channels, group_size)
        self.num_groups = in_channels // self.group_size
        hidden = max(1, in_channels // ratio)

        # IR branch, Eq. 21: W1 -> LN -> ReLU -> W2 -> Sigmoid, no biases.
        self.fc1 = nn.Linear(in_channels, hidden, bias=False)
        self.ln = nn.LayerNorm(hidden)
        self.fc2 = nn.Linear(hidden, in_channels, bias=False)
        #: the IR branch's instance gate g in (0, 1), (N, C): a forward hook
        #: on this module sees it
        self.gate = nn.Sigmoid()
        # Gate between the branches, lam = sigmoid(theta) = 0.5 at start.
        self.theta = nn.Parameter(torch.zeros(1))

        eye = torch.eye(self.group_size)
        self.register_buffer(
            'running_wm',
            eye.expand(self.num_groups, -1, -1).clone())  # (G, d, d)
        self.register_buffer('running_scale', torch.ones(1))

    def extra_repr(self) -> str:
        return (f'in_channels={self.in_channels}, ratio={self.ratio}, '
                f'group_size={self.group_size}, '
                f'num_groups={self.num_groups}, ns_iters={self.ns_iters}, '
                f'eps={self.eps}, momentum={self.momentum}, '
                f'pool={self.pool}, unbiased_var={self.unbiased_var}, '
                f'trace_rescale={self.trace_rescale}')

    @staticmethod
    def _stat_dtype(dtype: torch.dtype) -> torch.dtype:
        """float64 stays float64; every other dtype computes in float32."""
        return torch.float64 if dtype == torch.float64 else torch.float32

    def _whitening_matrix(self, u: torch.Tensor,
                          cov: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Whitening matrices ``P_T``: (N, C, H, W) -> (G, d, d), from the
        groups' covariance ``cov`` (G, d, d) if the caller has it (not with
        ``pool``).

        Computed in float32 (float64 for float64 inputs) with autocast
        disabled, whatever the ambient autocast state.
        """
        with torch.autocast(device_type=u.device.type, enabled=False):
            x = u.to(self._stat_dtype(u.dtype))
            if self.pool:
                x = F.max_pool2d(x, kernel_size=2, stride=2, ceil_mode=True)
            n, _, h, w = x.shape
            g, d = self.num_groups, self.group_size
            eye = torch.eye(d, dtype=x.dtype, device=x.device).expand(g, d, d)
            if cov is None or self.pool:
                cov = _ChannelStats.apply(x.reshape(n, g, d, h * w))[1]
            # Sigma = eps * I + (1/M) xc xc^T: (G, d, d)
            sigma = cov + self.eps * eye
            trace = sigma.diagonal(dim1=1, dim2=2).sum(-1)  # (G,)
            sigma_n = sigma / trace.view(g, 1, 1)  # (G, d, d)
            p = eye
            for _ in range(self.ns_iters):
                p3 = torch.bmm(torch.bmm(p, p), p)
                # P <- 1.5 P - 0.5 P^3 Sigma_N
                p = torch.baddbmm(p, p3, sigma_n, beta=1.5, alpha=-0.5)
            if self.trace_rescale:
                p = p * trace.rsqrt().view(g, 1, 1)
            return p

    def _ir_scale(self, sigma2: torch.Tensor) -> torch.Tensor:
        """Global IR scale ``s = sqrt(mean sigma2 + eps)``: (N, C) -> (1,)."""
        return (sigma2.mean() + self.eps).sqrt().reshape(1)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """Apply CE: (N, C, H, W) -> (N, C, H, W)."""
        if u.dim() != 4 or u.shape[1] != self.in_channels:
            raise ValueError(
                f'{_NAME}: expected input of shape (N, {self.in_channels}, '
                f'H, W), got {tuple(u.shape)}')
        n, c, h, w = u.shape
        g, d = self.num_groups, self.group_size
        if (u.dtype in (torch.float32, torch.float64) and not self.pool
                and torch.is_grad_enabled()
                and not torch.is_autocast_enabled(u.device.type)):
            return _Equilibrium.apply(
                u, g, lambda ss, cov: self._mix_parts(ss, cov, u),
                *self.parameters())
        with torch.autocast(device_type=u.device.type, enabled=False):
            # per-channel squared deviations over H*W and, in training, the
            # groups' covariance, in one pass (_ChannelStats)
            x = u.to(self._stat_dtype(u.dtype)).reshape(n, g, d, h * w)
            ss, cov = _ChannelStats.apply(x)
        mix = self._mix(ss, cov, u)
        with torch.autocast(device_type=u.device.type, enabled=False):
            # (N, G, d, d) @ (N, G, d, H*W) -> (N, G, d, H*W)
            out = torch.matmul(mix, x)
        out = out.reshape(n, c, h, w)  # a view of the product
        if out.dtype != u.dtype:
            return out.to(u.dtype)
        # a host's in-place residual sum on a view costs more than this copy
        # (see _Equilibrium)
        return out.clone() if torch.is_grad_enabled() else out

    def _mix(self, ss: torch.Tensor, cov: torch.Tensor,
             u: torch.Tensor) -> torch.Tensor:
        """The matrix CE applies to each sample's groups, (N, G, d, d):
        :meth:`_mix_parts` assembled (differentiably)."""
        shared, diag = self._mix_parts(ss, cov, u)
        n, g, d = diag.shape
        with torch.autocast(device_type=u.device.type, enabled=False):
            return torch.diagonal_scatter(
                shared.expand(n, g, d, d),
                torch.diagonal(shared, dim1=-2, dim2=-1) + diag,
                dim1=-2, dim2=-1)

    def _mix_parts(self, ss: torch.Tensor, cov: torch.Tensor,
                   u: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The two parts of the matrix CE applies to each sample's groups,
        from the statistics of ``u`` (N, C, H, W): the squared deviations
        ``ss`` (N, G, d) and the groups' covariance ``cov`` (G, d, d).

        ``lam * P u + (1 - lam) * (gate / s) * u`` is ``lam * P + diag((1 -
        lam) * gate / s)`` applied to ``u``: returns ``lam * P`` (G, d, d),
        shared by the samples, and the diagonal ``(1 - lam) * gate / s``
        (N, G, d). In training this also updates the running averages.
        """
        n, c, h, w = u.shape
        g, d = self.num_groups, self.group_size
        stat_dtype = self._stat_dtype(u.dtype)
        with torch.autocast(device_type=u.device.type, enabled=False):
            p = h * w  # one position: ss is 0, the variance 0
            denom = max(p - 1, 1) if self.unbiased_var else p
            sigma2 = ss.reshape(n, c) / denom  # (N, C)
        if self.training:
            wm = self._whitening_matrix(u, cov)  # (G, d, d)
            with torch.autocast(device_type=u.device.type, enabled=False):
                scale = self._ir_scale(sigma2)  # (1,)
            self._update_running(wm, scale)
        else:
            wm = self.running_wm.to(stat_dtype)
            scale = self.running_scale.to(stat_dtype)

        # IR branch: gate from the per-sample variances, Eq. 21.
        hidden = self.fc1(sigma2.to(self.fc1.weight.dtype))  # (N, C/r)
        gate = self.gate(self.fc2(F.relu(self.ln(hidden))))  # (N, C)
        with torch.autocast(device_type=u.device.type, enabled=False):
            lam = torch.sigmoid(self.theta.to(stat_dtype))
            # BD acts on the un-centred input
            ir_diag = ((1.0 - lam) / scale) * gate.to(stat_dtype)
            return lam * wm, ir_diag.view(n, g, d)

    @torch.no_grad()
    def _update_running(self, wm: torch.Tensor, scale: torch.Tensor) -> None:
        """Moving averages of ``P_T`` and ``s`` (appendix E, Eq. 32)."""
        m = self.momentum
        self.running_wm.mul_(1.0 - m).add_(
            wm.detach().to(self.running_wm.dtype), alpha=m)
        self.running_scale.mul_(1.0 - m).add_(
            scale.detach().to(self.running_scale.dtype), alpha=m)
