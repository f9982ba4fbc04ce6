"""Segmentation hosts and heads, registered in mmseg's MODELS.

- ``ChainedPluginResNet``: mmseg's ResNet with the plugins at one bottleneck
  position chained (mmseg 1.2.2 keeps only the last one).
- ``DeepLabV2Head``: DeepLab-v2's ASPP classifier (four dilated 3x3
  convolutions whose scores are summed).
"""
from .deeplabv2_head import DeepLabV2Head
from .plugin_resnet import ChainedPluginBottleneck, ChainedPluginResNet

__all__ = ['ChainedPluginBottleneck', 'ChainedPluginResNet', 'DeepLabV2Head']
