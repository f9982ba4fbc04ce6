"""mmseg ResNet whose bottleneck plugins at one position are chained.

mmseg 1.2.2's ``Bottleneck.forward_plugin`` feeds the block's input to every
plugin registered at a position and returns only the last plugin's output,
so ``plugins=[A, B]`` at ``after_conv3`` silently computes ``B(x)`` and ``A``
never receives a gradient. mmdet's bottleneck computes ``B(A(x))``, which is
what a list of plugins means. This module fixes the one method and makes the
ResNet build its stages from the fixed bottleneck; everything else (stem,
dilations, ``frozen_stages``, ``norm_eval``, checkpoint keys) is mmseg's.
There is one host per mmseg ResNet flavour (``ChainedPluginResNet``,
``ChainedPluginResNetV1c``, ``ChainedPluginResNetV1d``), so that putting
``ChainedPlugin`` in front of a config's backbone type changes nothing but
the plugins.
"""
import inspect
from typing import List

from mmseg.models.backbones.resnet import (Bottleneck, ResNet, ResNetV1c,
                                           ResNetV1d)
from mmseg.models.utils import ResLayer
from mmseg.registry import MODELS
from torch import Tensor

from ...utils.plugins import check_plugins


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


class _ChainedPluginStages:
    """What the ``ChainedPlugin*`` ResNets add to the mmseg ResNet they
    extend: the ``plugins`` entries checked before anything is built
    (:func:`mmc3.utils.plugins.check_plugins`: the host, the key, the value
    and the choices in every message, instead of mmseg's bare assertions and
    mmcv's ``Cannot find None``), and stages built from
    :class:`ChainedPluginBottleneck`."""

    def __init__(self, *args, **kwargs) -> None:
        bound = inspect.signature(ResNet.__init__).bind(self, *args, **kwargs)
        bound.apply_defaults()
        values = bound.arguments
        check_plugins(values['plugins'], type(self).__name__,
                      num_stages=values['num_stages'], depth=values['depth'])
        super().__init__(*args, **kwargs)

    def make_res_layer(self, **kwargs) -> ResLayer:
        """Build a stage, swapping mmseg's ``Bottleneck`` for the chained one.

        ``BasicBlock`` (ResNet-18/34) is kept: it takes no plugins (refused
        with a message before this point).
        """
        if kwargs.get('block') is Bottleneck:
            kwargs['block'] = ChainedPluginBottleneck
        return super().make_res_layer(**kwargs)


@MODELS.register_module()
class ChainedPluginResNet(_ChainedPluginStages, ResNet):
    """mmseg's ``ResNet`` built from :class:`ChainedPluginBottleneck`.

    Takes exactly mmseg ``ResNet``'s arguments, and its defaults: a plain
    7x7 stem (``deep_stem=False``). For a config whose backbone is
    ``ResNetV1c`` or ``ResNetV1d`` use :class:`ChainedPluginResNetV1c` /
    :class:`ChainedPluginResNetV1d`: replacing ``ResNetV1c`` by this class
    alone would drop the deep stem (the V1c settings live in ``ResNetV1c``'s
    constructor, not in the config) and the ``open-mmlab://resnet50_v1c``
    weights would no longer fit. Checkpoints of mmseg's ``ResNet`` load
    unchanged: only the forward of the plugins differs.

    Note:
        Two plugins of one type at one position need distinct ``postfix``
        values in their ``cfg`` (mmseg names a plugin ``_abbr_ + postfix``
        and rejects duplicates).
    """


@MODELS.register_module()
class ChainedPluginResNetV1c(_ChainedPluginStages, ResNetV1c):
    """mmseg's ``ResNetV1c`` (deep stem, ``avg_down=False``) with chained
    plugins: the drop-in replacement for ``type='ResNetV1c'`` (PSPNet,
    DeepLabV3, ... configs). Same arguments, same state-dict keys as
    ``ResNetV1c`` plus the plugins'."""


@MODELS.register_module()
class ChainedPluginResNetV1d(_ChainedPluginStages, ResNetV1d):
    """mmseg's ``ResNetV1d`` (deep stem, ``avg_down=True``) with chained
    plugins: the drop-in replacement for ``type='ResNetV1d'``."""
