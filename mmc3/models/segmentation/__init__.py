"""Segmentation hosts and heads, registered in mmseg's MODELS.

- ``ChainedPluginResNet``, ``ChainedPluginResNetV1c``,
  ``ChainedPluginResNetV1d``: mmseg's ResNets with the plugins at one
  bottleneck position chained (mmseg 1.2.2 keeps only the last one).
- ``DeepLabV2Head``: DeepLab-v2's ASPP classifier (four dilated 3x3
  convolutions whose scores are summed).
"""
from .deeplabv2_head import DeepLabV2Head
from .plugin_resnet import (ChainedPluginBottleneck, ChainedPluginResNet,
                            ChainedPluginResNetV1c, ChainedPluginResNetV1d)

__all__ = [
    'ChainedPluginBottleneck', 'ChainedPluginResNet', 'ChainedPluginResNetV1c',
    'ChainedPluginResNetV1d', 'DeepLabV2Head'
]
