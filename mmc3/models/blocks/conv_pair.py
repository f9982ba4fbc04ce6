"""The "+Convs" control of the C3 papers: two 3x3 convolutions in place of
a C3 block.

Seed ``001`` (C3 author response), Table 1, bottom row: "the same
architectures after replacing each NC block with two convolution layers
that contain more parameters, perform less favorably". The layers are

    out = x + conv3x3(C4 -> C)(ReLU(conv3x3(C -> 4C, bias)(x)))

(the residual sum is the one of the C3 block it replaces). On CIFAR-100 at
the three C3 positions this reproduces the seed's parameter counts
(ResNet-20 0.39M, ResNet-110 1.85M, Wide-ResNet 36.1M).
"""
from typing import Optional, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmengine.registry import MODELS

from ._checks import check_bool, check_int


@MODELS.register_module()
class ConvPairBlock(BaseModule):
    """Two 3x3 convolutions, ``C -> expansion * C -> C``, with a ReLU between
    them and (by default) a residual sum: the "+Convs" control of C3.

    Shape:
        - Input: ``(N, C, H, W)`` with ``C == in_channels``.
        - Output: ``(N, C, H, W)``, same as the input.

    Args:
        in_channels (int): Number of input channels ``C`` (injected by the
            host).
        expansion (int): Width of the hidden layer in units of ``C``.
            Defaults to 4 (seed ``001``: the counts 0.39M / 1.85M / 36.1M).
        bias1 (bool): Bias of the first convolution. Defaults to True.
        bias2 (bool): Bias of the second convolution. Defaults to False
            (the seed counts cannot tell; ``C`` parameters per block).
        residual (bool): Add the input to the output, as the C3 block it
            replaces does. Defaults to True.
        init_cfg (dict | list[dict], optional): mmengine initialisation
            config. Defaults to None (PyTorch's default initialisation).
    """

    _abbr_ = 'conv_pair'

    def __init__(self,
                 in_channels: int,
                 expansion: int = 4,
                 bias1: bool = True,
                 bias2: bool = False,
                 residual: bool = True,
                 init_cfg: Optional[Union[dict, list]] = None) -> None:
        super().__init__(init_cfg)
        name = 'ConvPairBlock'
        self.in_channels = check_int(name, 'in_channels', in_channels)
        self.expansion = check_int(name, 'expansion', expansion)
        self.residual = check_bool(name, 'residual', residual)
        hidden = in_channels * expansion
        self.conv1 = nn.Conv2d(in_channels, hidden, 3, padding=1,
                               bias=check_bool(name, 'bias1', bias1))
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(hidden, in_channels, 3, padding=1,
                               bias=check_bool(name, 'bias2', bias2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.size(1) != self.in_channels:
            raise ValueError(
                f'ConvPairBlock: expected input of shape (N, '
                f'{self.in_channels}, H, W), got {tuple(x.shape)}')
        out = self.conv2(self.relu(self.conv1(x)))
        return x + out if self.residual else out
