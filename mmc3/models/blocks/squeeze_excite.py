"""Squeeze-and-Excitation block.

Hu, Shen, Sun, "Squeeze-and-Excitation Networks", CVPR 2018,
arXiv 1709.01507, Sec. 3 (Eq. 2 squeeze, Eq. 3 excitation, Eq. 4 scale):

    y = x * sigmoid(W2 ReLU(W1 mean_hw(x) + b1) + b2)

The C3 experiments use it as the baseline plugin in stage 4 of ResNet-101
(plugin position ``after_conv3``: after the last BN of the residual branch,
before the residual sum).
"""
from typing import Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmengine.registry import MODELS

from ._checks import check_bool, check_int
from ._layers import GateLink, GlobalAvgPool, PointwiseConv, scale_channels


@MODELS.register_module()
class SEBlock(BaseModule):
    """Squeeze-and-Excitation channel gate (Hu et al., CVPR 2018).

    ``y = x * sigmoid(W2 ReLU(W1 mean_hw(x) + b1) + b2)``, with ``W1``,
    ``W2`` 1x1 convolutions, with bias by default.

    Shape:
        - Input: ``(N, C, H, W)`` with ``C == in_channels``.
        - Output: ``(N, C, H, W)``, same as the input.

    Args:
        in_channels (int): Number of input channels ``C``. mmcv's
            ``build_plugin_layer`` passes it under this name.
        ratio (int): Reduction ratio ``r`` of the excitation MLP; the hidden
            width is ``max(1, C // r)``. Defaults to 16 (the paper's choice).
        bias (bool): Whether ``W1`` and ``W2`` have biases ``b1``, ``b2``.
            Defaults to True (the paper's Eq. 3 writes none; the released
            SENet models have them). The C3 papers' SE baselines are
            bias-free: their parameter counts (CIFAR ResNets with
            ``ratio=8``, ResNeXt-50 + SE at 37.45M) are only reproduced with
            ``bias=False``.
        init_cfg (dict | list[dict], optional): mmengine initialisation
            config. Defaults to None (PyTorch's default initialisation).

    Note:
        The hidden width is clamped to at least one unit, so blocks with
        ``C < ratio`` (shrunk test models) still build; the paper only uses
        ``C >= 64``.
    """

    _abbr_ = 'se_block'

    def __init__(self,
                 in_channels: int,
                 ratio: int = 16,
                 bias: bool = True,
                 init_cfg: Optional[Union[dict, list]] = None) -> None:
        super().__init__(init_cfg)
        self.in_channels = check_int('SEBlock', 'in_channels', in_channels)
        self.ratio = check_int('SEBlock', 'ratio', ratio)
        self.bias = check_bool('SEBlock', 'bias', bias)
        self.hidden_channels = max(1, in_channels // ratio)
        #: the squeeze, a module so that hook-based counters (thop) and
        #: forward hooks see it
        self.squeeze = GlobalAvgPool()
        # the paper's 1x1 convolutions, computed as matrix products on the
        # squeezed (N, C, 1, 1) vector (see mmc3.models.blocks._layers)
        self.fc1 = PointwiseConv(in_channels, self.hidden_channels, bias=bias)
        self.fc2 = PointwiseConv(self.hidden_channels, in_channels, bias=bias)
        #: the excitation in (0, 1), (N, C, 1, 1): a forward hook on this
        #: module sees every channel's gate
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Gate every channel of ``x`` by its excitation in ``(0, 1)``."""
        if x.dim() != 4 or x.size(1) != self.in_channels:
            raise ValueError(
                f'SEBlock: expected input of shape (N, {self.in_channels}, '
                f'H, W), got {tuple(x.shape)}')
        # the input's two gradient terms are formed in one pass (GateLink)
        link = GateLink()
        s = self.squeeze(x, link)  # (N, C, H, W) -> (N, C, 1, 1)
        s = self.fc2(F.relu(self.fc1(s)))  # -> (N, C/r, 1, 1) -> (N, C, 1, 1)
        # broadcast over (H, W)
        return scale_channels(x, self.gate(s), link)

    def extra_repr(self) -> str:
        return (f'in_channels={self.in_channels}, ratio={self.ratio}, '
                f'bias={self.bias}')
