"""Gather-Excite block.

Hu, Shen, Albanie, Sun, Vedaldi, "Gather-Excite: Exploiting Feature Context
in Convolutional Neural Networks", NeurIPS 2018, arXiv 1810.12348, Sec. 3:

    out = x * sigmoid(interp(gather(x)))

with ``interp`` nearest upsampling to the input's ``(H, W)``. Released
models (Caffe prototxts): github.com/hujie-frank/GENet. The supplementary
material (Table 1) compares average and max pooling for the parameter-free
gather on ImageNet ResNet-50; average wins at both extents tested (4 and
global: top-1 error 22.87 vs 23.10, 22.14 vs 23.65).

Three variants, named as in the paper:

- ``'theta-'`` (GE-theta-minus, parameter-free): the gather is a pooling of
  extent ``e`` (kernel ``2e-1``, stride ``e``, padding ``e-1``, padding not
  counted), or global pooling.
- ``'theta'`` (GE-theta): the gather is ``log2(e)`` depthwise 3x3 stride-2
  convolutions, each followed by a norm layer, with ReLU between them; the
  global extent is one depthwise convolution whose kernel covers the whole
  (fixed) feature map.
- ``'theta+'`` (GE-theta-plus): the GE-theta gather, then ReLU and an
  SE-style 1x1 MLP ``C -> C // ratio -> C`` with biases before the sigmoid.
"""
import math
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule
from mmengine.registry import MODELS

from ._checks import check_choice, check_int, check_size, renamed
from ._layers import (FullMapDepthwiseConv, GateLink, GlobalAvgPool,
                      PointwiseConv, scale_channels)

_VARIANTS = ('theta-', 'theta', 'theta+')
_EXTENTS = (2, 4, 8, 'global')
_POOLINGS = ('avg', 'max')
_SIZE_MISMATCH = ('error', 'resize')


def _theta_minus_pool(extent, pooling: str) -> nn.Module:
    """GE-theta-'s gather: global pooling, or kernel ``2e-1``, stride
    ``e``, padding ``e-1`` (padding excluded from averages)."""
    if extent == 'global':
        return GlobalAvgPool() if pooling == 'avg' \
            else nn.AdaptiveMaxPool2d(1)
    e = extent
    if pooling == 'avg':
        return nn.AvgPool2d(2 * e - 1, stride=e, padding=e - 1,
                            count_include_pad=False)
    return nn.MaxPool2d(2 * e - 1, stride=e, padding=e - 1)


@MODELS.register_module()
class GEBlock(BaseModule):
    """Gather-Excite channel/spatial gate (Hu et al., NeurIPS 2018).

    ``out = x * sigmoid(interp(gather(x)))``; ``gather`` reduces each channel
    to ``ceil(H / e) x ceil(W / e)`` (or ``1 x 1`` for the global extent),
    ``interp`` is nearest upsampling back to ``(H, W)``.

    Shape:
        - Input and output: ``(N, C, H, W)``, ``C == in_channels``.

    Args:
        in_channels (int): Channels ``C`` of the input (the host injects
            it through mmcv's ``build_plugin_layer``).
        extent (int | str): Gather extent ratio ``e``, one of 2, 4, 8 or
            ``'global'``. Defaults to ``'global'`` (the best parameter-free
            setting in the paper's Table 1 of the supplementary).
        variant (str): ``'theta-'`` (parameter-free pooling gather),
            ``'theta'`` (depthwise-conv gather) or ``'theta+'`` (depthwise-conv
            gather followed by an SE-style MLP). Defaults to ``'theta-'``.
        pooling (str): ``'avg'`` or ``'max'`` pooling for ``'theta-'``.
            Parametric variants have no pooling and reject ``'max'``.
            Defaults to ``'avg'``.
        grid_size (int | tuple[int, int], optional): Spatial size ``(h, w)``
            of the input; required by (and only accepted for) the parametric
            variants with ``extent='global'``, whose depthwise kernel is
            ``h x w``. Defaults to None.
        ratio (int): Reduction ratio of the ``'theta+'`` MLP; the hidden
            width is ``max(1, C // ratio)``. Unused by the other variants.
            Defaults to 16.
        size_mismatch (str): What a parametric global gather does with an
            input that is not ``grid_size``: ``'error'`` raises a
            ``ValueError``; ``'resize'`` first resizes the input to
            ``grid_size`` by adaptive average pooling (area interpolation).
            Defaults to ``'error'``.
        norm_cfg (dict): Norm layer after every depthwise convolution of the
            parametric gather (mmcv ``build_norm_layer`` config, e.g.
            ``dict(type='SyncBN')`` for multi-GPU training). Defaults to
            ``dict(type='BN')``.
        init_cfg (dict | list[dict], optional): mmengine initialisation
            config. Defaults to None (PyTorch's default initialisation).
        feat_size (int | tuple[int, int], optional): Former name of
            ``grid_size`` (deprecated, still accepted with a
            ``DeprecationWarning``).

    Note:
        - The paper writes the sigmoid after the interpolation. With nearest
          interpolation both commute, so the gate (sigmoid, and for
          ``'theta+'`` the 1x1 MLP too) is computed at the gathered
          resolution and upsampled afterwards: same values, less work.
        - ``'theta+'``: the last depthwise conv of the gather already ends in
          a norm layer, so "GE-theta gather, then BN, ReLU, MLP" is built as
          gather (whose last norm is that BN) -> ReLU -> MLP; no second norm
          layer is stacked on the first.
        - A norm layer in training mode needs more than one value per
          channel: a parametric variant with batch size 1 whose gather
          output is ``1 x 1`` (global extent, or a tiny input) raises
          PyTorch's ``ValueError`` in training mode, as any BN would.
        - The global parametric gather has fixed weights of size
          ``grid_size``; by default any other input size is an error (see
          ``size_mismatch``).
        - Host interaction: an mmdet/mmseg ResNet with ``norm_eval=True``
          (mmdet's default) puts every ``_BatchNorm`` below it in eval mode,
          this block's included, so the gather's BN normalises with its
          running statistics, which then never move from their initial
          mean 0 / variance 1: it acts as a learnable per-channel affine map.
          Pass ``norm_cfg=dict(type='GN', num_groups=...)`` (no batch
          statistics) or set the host's ``norm_eval=False`` to change that.
    """

    _abbr_ = 'ge_block'

    def __init__(self,
                 in_channels: int,
                 extent: Union[int, str] = 'global',
                 variant: str = 'theta-',
                 pooling: str = 'avg',
                 grid_size: Optional[Union[int, Tuple[int, int]]] = None,
                 ratio: int = 16,
                 size_mismatch: str = 'error',
                 norm_cfg: dict = dict(type='BN'),
                 init_cfg: Optional[Union[dict, list]] = None,
                 feat_size: Optional[Union[int, Tuple[int, int]]] = None
                 ) -> None:
        super().__init__(init_cfg)
        grid_size = renamed('GEBlock', 'grid_size', grid_size, None,
                            'feat_size', feat_size)
        self.in_channels = check_int('GEBlock', 'in_channels', in_channels)
        check_choice('GEBlock', 'extent', extent, _EXTENTS)
        check_choice('GEBlock', 'variant', variant, _VARIANTS)
        check_choice('GEBlock', 'pooling', pooling, _POOLINGS)
        if variant != 'theta-' and pooling != 'avg':
            raise ValueError(
                f"GEBlock: pooling={pooling!r} only applies to "
                f"variant='theta-' (the parametric variant {variant!r} "
                f'gathers with depthwise convolutions)')
        check_choice('GEBlock', 'size_mismatch', size_mismatch,
                     _SIZE_MISMATCH)
        self.ratio = check_int('GEBlock', 'ratio', ratio)
        parametric_global = variant != 'theta-' and extent == 'global'
        if parametric_global and grid_size is None:
            raise ValueError(
                f"GEBlock: variant={variant!r} with extent='global' needs "
                f'grid_size=(h, w), the input size its depthwise kernel '
                f'covers, got None')
        if not parametric_global and grid_size is not None:
            raise ValueError(
                f"GEBlock: grid_size is only used by variant 'theta'/'theta+' "
                f"with extent='global', got grid_size={grid_size!r} with "
                f'variant={variant!r}, extent={extent!r}')
        if not isinstance(norm_cfg, dict) or 'type' not in norm_cfg:
            raise TypeError(f"GEBlock: norm_cfg must be a dict with a 'type' "
                            f'key, got {norm_cfg!r}')

        self.extent = extent
        self.variant = variant
        self.pooling = pooling
        self.size_mismatch = size_mismatch
        self.grid_size = (None if grid_size is None else
                          check_size('GEBlock', 'grid_size', grid_size))

        if variant == 'theta-':
            #: the parameter-free gather, a module so that hook-based
            #: counters (thop) and forward hooks see it
            self.pool = _theta_minus_pool(extent, pooling)
        else:
            c = in_channels
            if extent == 'global':
                # one depthwise conv over the whole grid_size map
                convs = [FullMapDepthwiseConv(c, self.grid_size)]
            else:
                # log2(e) depthwise 3x3 stride-2 convs
                convs = [
                    nn.Conv2d(c, c, 3, stride=2, padding=1, groups=c,
                              bias=False) for _ in range(int(math.log2(extent)))
                ]
            self.gather_convs = nn.ModuleList(convs)
            self.gather_norms = nn.ModuleList(
                build_norm_layer(norm_cfg, c)[1] for _ in convs)
        if variant == 'theta+':
            self.hidden_channels = max(1, in_channels // ratio)
            self.fc1 = PointwiseConv(in_channels, self.hidden_channels)
            self.fc2 = PointwiseConv(self.hidden_channels, in_channels)
        #: the gate in (0, 1) before the upsampling, (N, C, h, w): a forward
        #: hook on this module sees it
        self.gate = nn.Sigmoid()

    def gather(self, x: torch.Tensor,
               link: Optional[GateLink] = None) -> torch.Tensor:
        """Gather context: ``(N, C, H, W) -> (N, C, ceil(H/e), ceil(W/e))``
        (``(N, C, 1, 1)`` for the global extent). ``link``: handed to a
        global gather (:class:`~mmc3.models.blocks._layers.GateLink`)."""
        if self.variant == 'theta-':
            if isinstance(self.pool, GlobalAvgPool):
                return self.pool(x, link)
            return self.pool(x)

        if self.extent == 'global' and tuple(x.shape[2:]) != self.grid_size:
            if self.size_mismatch == 'error':
                raise ValueError(
                    f"GEBlock: variant={self.variant!r} with extent='global' "
                    f'was built for grid_size={self.grid_size}, got an input '
                    f"of spatial size {tuple(x.shape[2:])}; set "
                    f"size_mismatch='resize' to resize inputs to grid_size")
            # (N, C, H, W) -> (N, C, h, w), area interpolation
            x = F.adaptive_avg_pool2d(x, self.grid_size)
        if self.extent == 'global':
            # a FullMapDepthwiseConv: (N, C, h, w) -> (N, C, 1, 1)
            return self.gather_norms[0](self.gather_convs[0](x, link))
        n_convs = len(self.gather_convs)
        for i, (conv, norm) in enumerate(
                zip(self.gather_convs, self.gather_norms)):
            # (N, C, H, W) -> (N, C, ceil(H/2), ceil(W/2))
            x = norm(conv(x))
            if i < n_convs - 1:
                x = F.relu(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Gate ``x`` by the upsampled sigmoid of its gathered context."""
        if x.dim() != 4 or x.size(1) != self.in_channels:
            raise ValueError(
                f'GEBlock: expected input of shape (N, {self.in_channels}, '
                f'H, W), got {tuple(x.shape)}')
        # the input's two gradient terms are formed in one pass (GateLink)
        link = GateLink()
        g = self.gather(x, link)  # (N, C, H, W) -> (N, C, h, w)
        if self.variant == 'theta+':
            g = self.fc2(F.relu(self.fc1(F.relu(g))))
        gate = self.gate(g)
        if gate.shape[2:] != x.shape[2:] and gate.shape[2:] != (1, 1):
            # (N, C, h, w) -> (N, C, H, W); a 1x1 gate broadcasts instead
            gate = F.interpolate(gate, size=x.shape[2:], mode='nearest')
        return scale_channels(x, gate, link)

    def extra_repr(self) -> str:
        s = (f'in_channels={self.in_channels}, extent={self.extent!r}, '
             f'variant={self.variant!r}')
        if self.variant == 'theta-':
            s += f', pooling={self.pooling!r}'
        if self.grid_size is not None:
            s += f', grid_size={self.grid_size}'
        if self.variant == 'theta+':
            s += f', ratio={self.ratio}'
        return s
