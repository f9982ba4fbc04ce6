"""mmpretrain hosts: ResNet, ResNeXt, CIFAR ResNet / Wide-ResNet and
MobileNetV2 with mmdet's plugin contract plus stem and stage positions
(registered in mmpretrain's ``MODELS``)."""
from .hosts import (CifarResNet, CifarWideResNet, PluginMobileNetV2,
                    PluginResNet, PluginResNeXt)

__all__ = ['PluginResNet', 'PluginResNeXt', 'CifarResNet', 'CifarWideResNet',
           'PluginMobileNetV2']
