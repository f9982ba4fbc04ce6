"""mmpretrain's residual blocks with mmdet's plugin contract.

Each block takes ``plugins`` (the entries of its stage, already checked by
the host): ``[dict(cfg=dict(type=...), position=...), ...]``. Every block
is built with ``in_channels`` set to the channels of its position, named
``_abbr_ + postfix`` as mmdet names it (that name is the checkpoint key),
and the blocks listed at one position are applied in list order
(``P_k(... P_1(x))``). Without plugins each block computes exactly what
mmpretrain's computes.

Positions, as in mmdet's ``Bottleneck``:

- ``BasicBlock``: ``after_conv1`` (after conv1-BN-ReLU), ``after_conv2``
  (after the last BN, before the residual sum; where SE and CE go).
- ``Bottleneck`` (ResNet and ResNeXt): ``after_conv1``, ``after_conv2``
  (after conv-BN-ReLU), ``after_conv3`` (after the last BN, before the sum).
- ``InvertedResidual`` (MobileNetV2): ``after_depthwise``, after the
  depthwise conv's BN and before its ReLU6 (CE-MobileNetV2, seed ``004``
  Fig. 6a: the widest point of the block, and the last one followed by a
  rectifier); ``after_project``, after the projecting 1x1 conv's BN, before
  the residual sum (SE, as in a ResNet block).
"""
from typing import Dict, List, Optional, Sequence

import torch.nn as nn
import torch.utils.checkpoint as cp
from mmcv.cnn import build_plugin_layer
from mmpretrain.models.backbones.mobilenet_v2 import InvertedResidual
from mmpretrain.models.backbones.resnet import BasicBlock, Bottleneck
from mmpretrain.models.backbones.resnext import \
    Bottleneck as ResNeXtBottleneck
from torch import Tensor


def build_plugins(entries: List[dict], in_channels: int,
                  owner: str) -> List[tuple]:
    """``(name, layer)`` for each plugin entry, ``in_channels`` injected,
    named ``_abbr_ + postfix``; two equal names are refused."""
    built: List[tuple] = []
    for plugin in entries:
        cfg = dict(plugin['cfg'])
        postfix = cfg.pop('postfix', '')
        name, layer = build_plugin_layer(cfg, postfix=postfix,
                                         in_channels=in_channels)
        if name in (n for n, _ in built):
            raise ValueError(
                f'{owner}: two plugins at one position are both named '
                f'{name!r}; give them distinct cfg.postfix values')
        built.append((name, layer))
    return built


def run_checkpointed(module, inner, x: Tensor) -> Tensor:
    """``inner(x)``, under activation checkpointing if ``module.with_cp``
    and ``x`` needs a gradient (as the upstream blocks do)."""
    if module.with_cp and x.requires_grad:
        return cp.checkpoint(inner, x, use_reentrant=False)
    return inner(x)


class _BlockPlugins:
    """Builds the plugins of a block and applies those of one position."""

    #: the positions of this block kind
    positions: Sequence[str] = ()

    def position_channels(self, position: str) -> int:
        raise NotImplementedError

    def _build_plugins(self, plugins: Optional[List[dict]]) -> None:
        self.plugin_names: Dict[str, List[str]] = {
            position: [] for position in self.positions}
        owner = type(self).__name__
        for plugin in plugins or []:
            position = plugin['position']
            if position not in self.plugin_names:
                raise ValueError(
                    f'{owner}: plugin position {position!r} does not exist '
                    f'in this block; valid positions: '
                    f'{", ".join(map(repr, self.positions))}')
        for position in self.positions:
            entries = [p for p in plugins or [] if p['position'] == position]
            for name, layer in build_plugins(
                    entries, self.position_channels(position), owner):
                if hasattr(self, name):
                    raise ValueError(
                        f'{owner}: two plugins are both named {name!r}; give '
                        'them distinct cfg.postfix values')
                self.add_module(name, layer)
                self.plugin_names[position].append(name)

    def forward_plugins(self, x: Tensor, position: str) -> Tensor:
        """Apply the plugins at ``position`` one after the other."""
        for name in self.plugin_names[position]:
            x = getattr(self, name)(x)
        return x


class PluginBasicBlock(_BlockPlugins, BasicBlock):
    """mmpretrain's ``BasicBlock`` (ResNet-18/34, CIFAR ResNets) with
    plugins at ``after_conv1`` and ``after_conv2``."""

    positions = ('after_conv1', 'after_conv2')

    def __init__(self, *args, plugins: Optional[List[dict]] = None,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._build_plugins(plugins)

    def position_channels(self, position: str) -> int:
        return self.mid_channels if position == 'after_conv1' \
            else self.out_channels

    def forward(self, x: Tensor) -> Tensor:

        def _inner_forward(x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.norm1(self.conv1(x)))
            out = self.forward_plugins(out, 'after_conv1')
            out = self.norm2(self.conv2(out))
            out = self.forward_plugins(out, 'after_conv2')
            return self.drop_path(out) + identity

        return self.relu(run_checkpointed(self, _inner_forward, x))


class _PluginBottleneckForward(_BlockPlugins):
    """Bottleneck forward with plugins at ``after_conv1/2/3`` (mmdet's)."""

    positions = ('after_conv1', 'after_conv2', 'after_conv3')

    def __init__(self, *args, plugins: Optional[List[dict]] = None,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._build_plugins(plugins)

    def position_channels(self, position: str) -> int:
        return self.out_channels if position == 'after_conv3' \
            else self.mid_channels

    def forward(self, x: Tensor) -> Tensor:

        def _inner_forward(x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.norm1(self.conv1(x)))
            out = self.forward_plugins(out, 'after_conv1')
            out = self.relu(self.norm2(self.conv2(out)))
            out = self.forward_plugins(out, 'after_conv2')
            out = self.norm3(self.conv3(out))
            out = self.forward_plugins(out, 'after_conv3')
            return self.drop_path(out) + identity

        return self.relu(run_checkpointed(self, _inner_forward, x))


class PluginBottleneck(_PluginBottleneckForward, Bottleneck):
    """mmpretrain's ResNet ``Bottleneck`` with plugins."""


class PluginResNeXtBottleneck(_PluginBottleneckForward, ResNeXtBottleneck):
    """mmpretrain's ResNeXt ``Bottleneck`` (grouped conv2) with plugins."""


#: mmpretrain block -> its plugin-carrying subclass
PLUGIN_BLOCKS = {
    BasicBlock: PluginBasicBlock,
    Bottleneck: PluginBottleneck,
    ResNeXtBottleneck: PluginResNeXtBottleneck,
}


class PluginInvertedResidual(_BlockPlugins, InvertedResidual):
    """mmpretrain's MobileNetV2 ``InvertedResidual`` with plugins after the
    depthwise conv's BN (``after_depthwise``), before its ReLU6, and after
    the projection's BN (``after_project``), before the residual sum."""

    positions = ('after_depthwise', 'after_project')

    def __init__(self, *args, plugins: Optional[List[dict]] = None,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # layers: [expand 1x1 (if expand_ratio != 1), depthwise 3x3, 1x1]
        self.depthwise_index = len(self.conv) - 2
        self._build_plugins(plugins)

    @property
    def depthwise(self) -> nn.Module:
        """The depthwise ConvModule (conv, BN, ReLU6)."""
        return self.conv[self.depthwise_index]

    def position_channels(self, position: str) -> int:
        if position == 'after_project':
            return self.conv[-1].conv.out_channels
        return self.depthwise.conv.out_channels

    def _residual_branch(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.conv):
            if i != self.depthwise_index:
                x = layer(x)
                continue
            x = layer.norm(layer.conv(x))
            x = self.forward_plugins(x, 'after_depthwise')
            x = layer.activate(x)
        return self.forward_plugins(x, 'after_project')

    def forward(self, x: Tensor) -> Tensor:

        def _inner_forward(x):
            out = self._residual_branch(x)
            return x + out if self.use_res_connect else out

        return run_checkpointed(self, _inner_forward, x)
