"""mmseg ResNet whose bottleneck plugins at one position are chained.

mmseg 1.2.2's ``Bottleneck.forward_plugin`` feeds the block's input to every
plugin registered at a position and returns only the last plugin's output,
so ``plugins=[A, B]`` at ``after_conv3`` silently computes ``B(x)`` and ``A``
never receives a gradient. mmdet's bottleneck computes ``B(A(x))``, which is
what a list of plugins means. This module fixes the one method and makes the
ResNet build its stages from the fixed bottleneck; everything else (stem,
dilations, ``frozen_stages``, ``norm_eval``, checkpoint keys) is mmseg's.
"""
from typing import List

from mmseg.models.backbones.resnet import Bottleneck, ResNet
from mmseg.models.utils import ResLayer
from mmseg.registry import MODELS
from torch import Tensor


class ChainedPluginBottleneck(Bottleneck):
    """mmseg's ``Bottleneck`` with the plugins at one position chained.

    ``out = P_k(... P_2(P_1(x)))`` for the plugins ``P_1 .. P_k`` listed at
    a position, in list order. With zero or one plugin it equals mmseg's
    ``Bottleneck``.
    """

    def forward_plugin(self, x: Tensor, plugin_names: List[str]) -> Tensor:
        """Apply the plugins ``plugin_names`` one after the other."""
        out = x
        for name in plugin_names:
            out = getattr(self, name)(out)
        return out


@MODELS.register_module()
class ChainedPluginResNet(ResNet):
    """mmseg's ``ResNet`` built from :class:`ChainedPluginBottleneck`.

    Takes exactly mmseg ``ResNet``'s arguments. ``ResNetV1c`` (the backbone
    of mmseg's DeepLab configs) is ``deep_stem=True, avg_down=False``.
    Checkpoints of mmseg's ``ResNet``/``ResNetV1c`` load unchanged: only the
    forward of the plugins differs.

    Note:
        Two plugins of one type at one position need distinct ``postfix``
        values in their ``cfg`` (mmseg names a plugin ``_abbr_ + postfix``
        and rejects duplicates).
    """

    def make_res_layer(self, **kwargs) -> ResLayer:
        """Build a stage, swapping mmseg's ``Bottleneck`` for the chained one.

        ``BasicBlock`` (ResNet-18/34) is kept: it rejects plugins anyway.
        """
        if kwargs.get('block') is Bottleneck:
            kwargs['block'] = ChainedPluginBottleneck
        return super().make_res_layer(**kwargs)
