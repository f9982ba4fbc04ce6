"""mmpretrain backbones with a plugin contract: ResNet, ResNeXt, the CIFAR
``6n+2`` ResNets, the CIFAR Wide-ResNets and MobileNetV2.

mmpretrain 1.2.0's backbones take no ``plugins``. These subclasses take
mmdet's list, ``plugins=[dict(cfg=dict(type=...), stages=(...),
position=...), ...]``, with ``in_channels`` injected and several entries at
one position chained in list order, for BasicBlocks as well as
Bottlenecks, plus positions outside the blocks:

==================  ====================================================
position            where
==================  ====================================================
``after_conv1/2/3``  inside every block of the enabled ``stages``
                    (:mod:`mmc3.models.classification.blocks`)
``after_depthwise`` MobileNetV2: after the depthwise BN, before ReLU6
``after_project``   MobileNetV2: after the projection BN, before the sum
``after_stem_norm`` after the stem's BN, before its ReLU (CE after the
                    stem BN, seed ``004``); once per network, no ``stages``
``after_stem``      on the stem's output, the input of stage 1 (after the
                    max-pool where there is one; C3's first CIFAR block)
``after_stage``     on the output of every enabled stage ``i``, i.e. the
                    input of stage ``i + 1`` (C3 between CIFAR stages)
==================  ====================================================

The features a backbone returns (``out_indices``) are taken after the
``after_stage`` plugins. Plugins belong to the part of the network they
follow: ``frozen_stages >= 0`` freezes the stem's plugins, and stage ``i``'s
(1-based) ``after_stage`` plugins are frozen with stage ``i``.

Checkpoint keys: block plugins are ``layer{i}.{j}.{name}``; the others
``after_stem_norm_plugins.{name}``, ``after_stem_plugins.{name}`` and
``after_stage_plugins.{i}.{name}`` (0-based ``i``), with ``name`` =
``_abbr_ + postfix``. Without plugins every host has exactly its upstream
class's parameters, keys and outputs.
"""
import inspect
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import torch.nn as nn
from mmpretrain.models.backbones.mobilenet_v2 import MobileNetV2
from mmpretrain.models.backbones.resnet import BasicBlock, ResNet
from mmpretrain.models.backbones.resnet_cifar import ResNet_CIFAR
from mmpretrain.models.backbones.resnext import ResNeXt
from mmpretrain.registry import MODELS
from torch import Tensor

from ...utils.plugins import check_plugins
from .blocks import PLUGIN_BLOCKS, PluginInvertedResidual, build_plugins

#: positions outside the blocks
HOST_POSITIONS = ('after_stem_norm', 'after_stem', 'after_stage')
UNSTAGED_POSITIONS = ('after_stem_norm', 'after_stem')
RESNET_BLOCK_POSITIONS = ('after_conv1', 'after_conv2', 'after_conv3')


def _build_sequence(entries: List[dict], in_channels: int,
                    owner: str) -> nn.Sequential:
    """The plugins ``entries`` at one place, chained, as a Sequential."""
    return nn.Sequential(OrderedDict(build_plugins(entries, in_channels,
                                                   owner)))


def _freeze(module: nn.Module) -> None:
    module.eval()
    for param in module.parameters():
        param.requires_grad = False


class _PluginHost:
    """What the plugin hosts add to an mmpretrain backbone.

    Subclasses set :attr:`block_positions` (positions inside their blocks)
    and implement :meth:`_stage_channels` and :meth:`_forward_stem`.
    """

    block_positions: Sequence[str] = RESNET_BLOCK_POSITIONS
    #: positions outside the blocks this host has
    host_positions: Sequence[str] = HOST_POSITIONS

    # -- checking --------------------------------------------------------
    @classmethod
    def _signature_values(cls, args, kwargs) -> Dict:
        """Constructor arguments with every default of the class chain
        filled in (the most derived class's default wins)."""
        values: Dict = {}
        positional: List[str] = []
        for klass in reversed(cls.__mro__):
            init = klass.__dict__.get('__init__')
            if init is None or klass is object:
                continue
            params = list(inspect.signature(init).parameters.values())[1:]
            names = [p.name for p in params
                     if p.kind is p.POSITIONAL_OR_KEYWORD]
            if names:
                positional = names
            values.update({p.name: p.default for p in params
                           if p.default is not p.empty})
        values.update(zip(positional, args))
        values.update(kwargs)
        return values

    @classmethod
    def plugin_check_args(cls, host_cfg: dict) -> Dict:
        """Arguments of :func:`check_plugins` for a config of this host."""
        values = cls._signature_values(
            (), {k: v for k, v in host_cfg.items() if k != 'type'})
        return dict(num_stages=cls._num_stages(values),
                    positions=tuple(cls.block_positions) +
                    tuple(cls._valid_host_positions(values)),
                    unstaged_positions=UNSTAGED_POSITIONS,
                    basic_blocks=True)

    @classmethod
    def _num_stages(cls, values: Dict) -> int:
        return values['num_stages']

    @classmethod
    def _valid_host_positions(cls, values: Dict) -> Sequence[str]:
        positions = list(cls.host_positions)
        if values.get('deep_stem'):  # the stem's BN is inside a ConvModule
            positions.remove('after_stem_norm')
        return positions

    def _check_and_split(self, plugins, values) -> None:
        host = type(self).__name__
        checked = check_plugins(plugins, host,
                                scope='mmpretrain',
                                **type(self).plugin_check_args(values)) or []
        self._block_plugin_cfgs = [
            p for p in checked if p['position'] in self.block_positions]
        self._host_plugin_cfgs = [
            p for p in checked if p['position'] not in self.block_positions]

    def _stage_entries(self, stage: int, positions) -> List[dict]:
        """The entries at ``positions`` enabled for 0-based ``stage``."""
        return [
            p for p in (self._block_plugin_cfgs + self._host_plugin_cfgs)
            if p['position'] in positions and (
                p.get('stages') is None or p['stages'][stage])
        ]

    def _build_host_plugins(self, stem_channels: int,
                            stage_channels: Sequence[int]) -> None:
        owner = type(self).__name__
        once = {pos: [p for p in self._host_plugin_cfgs
                      if p['position'] == pos] for pos in UNSTAGED_POSITIONS}
        self.after_stem_norm_plugins = _build_sequence(
            once['after_stem_norm'], stem_channels, owner)
        self.after_stem_plugins = _build_sequence(once['after_stem'],
                                                  stem_channels, owner)
        self.after_stage_plugins = nn.ModuleList(
            _build_sequence(self._stage_entries(i, ('after_stage', )),
                            channels, owner)
            for i, channels in enumerate(stage_channels))

    # -- freezing ----------------------------------------------------------
    def _freeze_plugins(self) -> None:
        if not hasattr(self, 'after_stage_plugins'):
            return  # called by the upstream constructor, before they exist
        if self.frozen_stages >= 0:
            _freeze(self.after_stem_norm_plugins)
            _freeze(self.after_stem_plugins)
        for i in range(min(self.frozen_stages, len(self.after_stage_plugins))):
            _freeze(self.after_stage_plugins[i])

    def _freeze_stages(self) -> None:
        super()._freeze_stages()
        self._freeze_plugins()

    def train(self, mode: bool = True):
        """Upstream's ``train`` (freezing, ``norm_eval``), returning the
        module as ``nn.Module.train`` does (mmpretrain's returns None)."""
        super().train(mode)
        return self

    # -- forward -----------------------------------------------------------
    def _run_stages(self, x: Tensor, layer_names: Sequence[str]) -> tuple:
        x = self.after_stem_plugins(x)
        outs = []
        for i, name in enumerate(layer_names):
            x = getattr(self, name)(x)
            if i < len(self.after_stage_plugins):
                x = self.after_stage_plugins[i](x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)


class _PluginResNetHost(_PluginHost):
    """The plugin contract for mmpretrain's ``ResNet`` family; an
    unsupported depth names the supported ones (``arch_settings``)."""

    def __init__(self, *args, plugins: Optional[List[dict]] = None,
                 **kwargs) -> None:
        values = self._signature_values(args, kwargs)
        depth = values['depth']
        if depth not in self.arch_settings:
            raise KeyError(
                f'{type(self).__name__}: depth must be one of '
                f'{", ".join(map(str, sorted(self.arch_settings)))}, got '
                f'{depth!r}')
        self._check_and_split(plugins, values)
        super().__init__(*args, **kwargs)
        self._build_host_plugins(
            self.stem_channels,
            [getattr(self, name)[-1].out_channels
             for name in self.res_layers])
        self._freeze_plugins()

    def make_res_layer(self, **kwargs) -> nn.Module:
        """Build stage ``len(self.res_layers)`` from plugin blocks."""
        stage = len(self.res_layers)
        block = kwargs['block']
        kwargs['block'] = PLUGIN_BLOCKS.get(block, block)
        entries = self._stage_entries(stage, self.block_positions)
        if entries:
            valid = kwargs['block'].positions
            for entry in entries:
                if entry['position'] not in valid:
                    raise ValueError(
                        f'{type(self).__name__}: position '
                        f'{entry["position"]!r} does not exist in the '
                        f'{block.__name__} blocks of stage {stage + 1}; '
                        f'valid positions: {", ".join(map(repr, valid))} '
                        f'and {", ".join(map(repr, self.host_positions))}')
        kwargs['plugins'] = entries
        return super().make_res_layer(**kwargs)

    def _forward_stem(self, x: Tensor) -> Tensor:
        if self.deep_stem:
            x = self.stem(x)
        else:
            x = self.norm1(self.conv1(x))
            x = self.after_stem_norm_plugins(x)
            x = self.relu(x)
        maxpool = getattr(self, 'maxpool', None)  # CIFAR stems have none
        return x if maxpool is None else maxpool(x)

    def forward(self, x: Tensor) -> tuple:
        return self._run_stages(self._forward_stem(x), self.res_layers)


@MODELS.register_module()
class PluginResNet(_PluginResNetHost, ResNet):
    """mmpretrain's ``ResNet`` (depths 18, 34, 50, 101, 152) with plugins.

    Takes ``ResNet``'s arguments and ``plugins`` (see the module docstring);
    plugins work in BasicBlocks (ResNet-18/34) too.
    """


@MODELS.register_module()
class PluginResNeXt(_PluginResNetHost, ResNeXt):
    """mmpretrain's ``ResNeXt`` with plugins (``groups``,
    ``width_per_group`` as upstream; the seeds' ResNeXt-50 is
    ``groups=4, width_per_group=32``, 34.93M parameters)."""


def _cifar_depths(blocks_per_stage: Dict[int, int]) -> Dict:
    return {depth: (BasicBlock, (n, n, n))
            for depth, n in blocks_per_stage.items()}


@MODELS.register_module()
class CifarResNet(_PluginResNetHost, ResNet_CIFAR):
    """The ``6n + 2`` CIFAR ResNets of He et al. 2016 (Sec. 4.2) as the
    released C3 code builds them, with plugins.

    A 3x3 stem with 16 channels (no max-pool), three stages of ``n``
    BasicBlocks with 16/32/64 channels at 32x32/16x16/8x8 on a CIFAR image,
    1x1-conv + BN projection shortcuts where the shape changes (mmpretrain's
    ``ResLayer``; the seeds' parameter counts depend on them, an identity
    padding shortcut would give fewer). mmpretrain's ``ResNet_CIFAR`` has only
    the ImageNet-width depths 18-152.

    Args:
        depth (int): ``6n + 2``: 20, 32, 44, 56, 62, 74, 86, 98 or 110.
        stem_channels, base_channels (int): 16 (the paper's widths).
        num_stages (int): 3. strides: ``(1, 2, 2)``. out_indices: ``(2, )``.
        **kwargs: the other arguments of mmpretrain's ``ResNet``.
    """

    arch_settings = _cifar_depths(
        {d: (d - 2) // 6 for d in (20, 32, 44, 56, 62, 74, 86, 98, 110)})

    def __init__(self, depth: int, stem_channels: int = 16,
                 base_channels: int = 16, num_stages: int = 3,
                 strides: Sequence[int] = (1, 2, 2),
                 dilations: Sequence[int] = (1, 1, 1),
                 out_indices: Sequence[int] = (2, ), **kwargs) -> None:
        super().__init__(depth, stem_channels=stem_channels,
                         base_channels=base_channels, num_stages=num_stages,
                         strides=strides, dilations=dilations,
                         out_indices=out_indices, **kwargs)


@MODELS.register_module()
class CifarWideResNet(CifarResNet):
    """Wide-ResNet ``WRN-depth-k`` for CIFAR (Zagoruyko and Komodakis 2016)
    in the released C3 code's form: the :class:`CifarResNet` layout with
    stage widths ``16k/32k/64k`` and ``(depth - 4) / 6`` post-activation
    BasicBlocks per stage.

    The seeds' "Wide-ResNet" is ``depth=22, widen_factor=10`` (three blocks
    per stage, widths 160/320/640, 26.86M parameters on CIFAR-100); the
    released code calls it "20" (it does not count the two projection
    convolutions).

    Args:
        depth (int): 16, 22, 28 or 40 (Zagoruyko's counting).
        widen_factor (int): ``k``. Defaults to 10.
        **kwargs: as :class:`CifarResNet` (``base_channels`` is ``16 k``).
    """

    arch_settings = _cifar_depths({d: (d - 4) // 6 for d in (16, 22, 28, 40)})

    def __init__(self, depth: int, widen_factor: int = 10,
                 **kwargs) -> None:
        if 'base_channels' in kwargs:
            raise TypeError('CifarWideResNet: base_channels is 16 * '
                            'widen_factor; set widen_factor instead')
        if not isinstance(widen_factor, int) or isinstance(
                widen_factor, bool) or widen_factor < 1:
            raise ValueError('CifarWideResNet: widen_factor must be a '
                             f'positive int, got {widen_factor!r}')
        self.widen_factor = widen_factor
        super().__init__(depth, base_channels=16 * widen_factor, **kwargs)


@MODELS.register_module()
class PluginMobileNetV2(_PluginHost, MobileNetV2):
    """mmpretrain's ``MobileNetV2`` with plugins.

    Stages are its seven ``layer1 .. layer7`` (``stages`` has 7 entries);
    block positions ``after_depthwise`` (CE-MobileNetV2, seed ``004``
    Fig. 6a) and ``after_project`` (SE), ``after_stem`` (after the stem ConvModule) and
    ``after_stage``. The final 1x1 conv (``conv2``, out index 7) has no
    plugins.
    """

    block_positions = ('after_depthwise', 'after_project')
    host_positions = ('after_stem', 'after_stage')

    @classmethod
    def _num_stages(cls, values: Dict) -> int:
        return len(cls.arch_settings)

    @classmethod
    def _valid_host_positions(cls, values: Dict) -> Sequence[str]:
        return cls.host_positions

    def __init__(self, *args, plugins: Optional[List[dict]] = None,
                 **kwargs) -> None:
        self._check_and_split(plugins,
                              self._signature_values(args, kwargs))
        super().__init__(*args, **kwargs)
        stage_channels = [getattr(self, name)[-1].conv[-1].conv.out_channels
                          for name in self.layers[:-1]]
        self._build_host_plugins(self.conv1.conv.out_channels,
                                 stage_channels)
        self._freeze_plugins()

    def make_layer(self, out_channels: int, num_blocks: int, stride: int,
                   expand_ratio: int) -> nn.Sequential:
        """Stage ``len(self.layers)`` built from plugin blocks."""
        entries = self._stage_entries(len(self.layers),
                                      self.block_positions)
        blocks = []
        for i in range(num_blocks):
            blocks.append(
                PluginInvertedResidual(
                    self.in_channels, out_channels, stride if i == 0 else 1,
                    expand_ratio=expand_ratio, conv_cfg=self.conv_cfg,
                    norm_cfg=self.norm_cfg, act_cfg=self.act_cfg,
                    with_cp=self.with_cp, plugins=entries))
            self.in_channels = out_channels
        return nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> tuple:
        return self._run_stages(self.conv1(x), self.layers)


__all__ = ['PluginResNet', 'PluginResNeXt', 'CifarResNet', 'CifarWideResNet',
           'PluginMobileNetV2']
