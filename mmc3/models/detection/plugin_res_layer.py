"""Plugin-aware RoI shared head for C4 detectors (Faster/Mask R-CNN C4).

In the C4 recipe (He et al., "Mask R-CNN", ICCV 2017, Sec. 3 "Network
Architecture", ResNet-C4 head; mmdet config
``faster_rcnn/faster-rcnn_r50-caffe_c4-1x_coco.py``) the backbone runs the
stem and stages 1-3, and stage 4 of the ResNet runs once per RoI on the
14x14 RoIAlign features (stride 2 -> 7x7 maps) as the RoI "shared head".
That is where the channel-block experiments put their blocks ("stage 4 of
ResNet-101 with lower layers fixed", C3 author response, seed 001).

mmdet's shared head (``mmdet.models.roi_heads.shared_heads.ResLayer``) takes
no ``plugins`` and hard-codes the base width 64; :class:`PluginResLayer` adds
both, reusing mmdet's own ``Bottleneck`` plugin mechanism, so a block sits in
the RoI head exactly as it would sit in stage 4 of an mmdet ``ResNet``
backbone (same positions, same attribute and checkpoint names).
"""
import warnings
from typing import List, Optional, Sequence

from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from mmdet.models.backbones.resnet import ResNet
from mmdet.models.layers import ResLayer as _make_res_layer
from mmdet.models.roi_heads.shared_heads import ResLayer
from mmdet.registry import MODELS

from ...utils.plugins import check_plugins

_RESNET_STAGES = 4


def _select_plugins(plugins: Optional[Sequence[dict]], stage: int,
                    depth: int) -> Optional[List[dict]]:
    """Validate ``plugins`` and keep those that apply to ``stage``.

    Accepts mmdet ``ResNet`` plugin entries ``dict(cfg=..., position=...,
    stages=...)`` (checked by :func:`mmc3.utils.plugins.check_plugins`).
    ``stages`` may be omitted (the plugin applies), a 1-tuple ``(bool,)``
    (this single stage) or a 4-tuple over the ResNet's stages, of which entry
    ``stage`` is used, so that one stage-4 fragment fits both a 4-stage
    backbone and this head. Returns the entries without ``stages``, or None
    when nothing applies (mmdet's ``Bottleneck`` then builds no plugin
    machinery at all).
    """
    plugins = check_plugins(plugins, 'PluginResLayer',
                            stage_lengths=(1, _RESNET_STAGES), depth=depth)
    if plugins is None:
        return None
    selected = []
    for plugin in plugins:
        plugin = dict(plugin)
        stages = plugin.pop('stages', None)
        if stages is not None and not (stages[0] if len(stages) == 1 else
                                       stages[stage]):
            continue
        selected.append(plugin)
    return selected or None


@MODELS.register_module()
class PluginResLayer(ResLayer):
    """mmdet's RoI shared head (one ResNet stage) with block plugins.

    ``out = layer{stage+1}(x)``, each bottleneck ``relu(x' + p3(bn3(conv3(
    p2(relu(bn2(conv2(p1(relu(bn1(conv1(x)))))))))))`` with ``x'`` the
    identity or downsample branch and ``p1/p2/p3`` the plugins at
    ``after_conv1/2/3`` (identity if none).

    Shape:
        - Input: ``(R, base_channels * 2**(stage-1) * 4, H, W)`` RoI
          features (C4 recipe: ``(R, 1024, 14, 14)``).
        - Output: ``(R, base_channels * 2**stage * 4, H/s, W/s)`` with ``s =
          stride`` (C4 recipe: ``(R, 2048, 7, 7)``).

    Args:
        depth (int): ResNet depth (18, 34, 50, 101, 152); plugins need a
            bottleneck depth (50, 101, 152).
        stage (int): 0-based index of the ResNet stage to run. Defaults to 3.
        stride (int): Stride of the stage's first block. Defaults to 2.
        dilation (int): Dilation of the stage. Defaults to 1.
        style (str): ``'pytorch'`` (stride in conv2) or ``'caffe'`` (stride in
            conv1). Defaults to ``'pytorch'``.
        norm_cfg (dict): Norm layer config. Defaults to
            ``dict(type='BN', requires_grad=True)``.
        norm_eval (bool): Keep every ``_BatchNorm`` (BN, SyncBN, also inside
            plugins) in eval mode while training. Defaults to True.
        with_cp (bool): Gradient checkpointing. Defaults to False.
        dcn (dict, optional): Deformable conv config. Defaults to None.
        plugins (list[dict], optional): Blocks to insert, in mmdet
            ``ResNet`` syntax: ``dict(cfg=dict(type='SEBlock'),
            position='after_conv3', stages=(False, False, False, True))``.
            ``in_channels`` is injected by the bottleneck. ``stages`` may be
            omitted, a 1-tuple, or a 4-tuple whose entry ``stage`` decides.
            Defaults to None.
        base_channels (int): Width of the ResNet's first stage (``planes =
            base_channels * 2**stage``); must match the backbone's.
            Defaults to 64.
        pretrained (str, optional): Deprecated, use ``init_cfg``.
        init_cfg (dict | list[dict], optional): mmengine init config; a
            ``Pretrained`` ImageNet ResNet checkpoint fills the stage's
            weights (``layer{stage+1}.*`` keys) and reports only the plugins'
            parameters as missing. Defaults to None (upstream's Kaiming/
            constant init).

    Note:
        - Upstream builds its layer in ``__init__`` with the width fixed at
          64 and no plugins, and the module has no smaller hook; this class
          does not run upstream's ``__init__`` (it would build a stage only
          to discard it) but sets the attributes upstream's ``forward`` and
          ``train`` read and builds ``layer{stage+1}`` once, with
          ``plugins`` and ``base_channels``, under upstream's name (same
          checkpoint keys) and with upstream's default ``init_cfg``.
        - Upstream ``train`` puts only ``nn.BatchNorm2d`` in eval mode under
          ``norm_eval``; here every ``_BatchNorm`` (SyncBN too, including
          those inside plugins) is, as mmdet's ``ResNet`` backbone does.
        - In stage 4 with the C4 recipe every bottleneck's ``after_conv3``
          output is 7x7 (the stride is taken in conv1/conv2 of the first
          bottleneck), so a block with a fixed grid (C3, parametric global
          GE) sees 7x7 maps at every position of that stage.
    """

    def __init__(self,
                 depth: int,
                 stage: int = 3,
                 stride: int = 2,
                 dilation: int = 1,
                 style: str = 'pytorch',
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 norm_eval: bool = True,
                 with_cp: bool = False,
                 dcn: Optional[dict] = None,
                 plugins: Optional[Sequence[dict]] = None,
                 base_channels: int = 64,
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if depth not in ResNet.arch_settings:
            raise ValueError('PluginResLayer: depth must be one of '
                             f'{sorted(ResNet.arch_settings)}, got {depth!r}')
        if not isinstance(base_channels, int) or isinstance(
                base_channels, bool):
            raise TypeError('PluginResLayer: base_channels must be a positive '
                            f'int, got {type(base_channels).__name__} '
                            f'{base_channels!r}')
        if base_channels < 1:
            raise ValueError('PluginResLayer: base_channels must be a '
                             f'positive int, got {base_channels}')
        stage_plugins = _select_plugins(plugins, stage, depth)
        block, stage_blocks = ResNet.arch_settings[depth]
        if init_cfg and pretrained:
            raise ValueError('PluginResLayer: init_cfg and pretrained cannot '
                             'both be set (pretrained is deprecated)')
        if pretrained is not None and not isinstance(pretrained, str):
            raise TypeError('PluginResLayer: pretrained must be a str or '
                            f'None, got {type(pretrained).__name__}')
        # Upstream's __init__ would build a 64-wide, plugin-free stage only
        # for it to be replaced: skip it and set what upstream's forward and
        # train read (the stage is built once, under upstream's name).
        BaseModule.__init__(self, init_cfg)
        self.norm_eval = norm_eval
        self.norm_cfg = norm_cfg
        self.stage = stage
        self.fp16_enabled = False
        self.base_channels = base_channels
        self.plugins = stage_plugins
        planes = base_channels * 2**stage
        inplanes = base_channels * 2**(stage - 1) * block.expansion
        layer = _make_res_layer(
            block,
            inplanes,
            planes,
            stage_blocks[stage],
            stride=stride,
            dilation=dilation,
            style=style,
            with_cp=with_cp,
            norm_cfg=norm_cfg,
            dcn=dcn,
            plugins=stage_plugins)
        self.add_module(f'layer{stage + 1}', layer)
        # upstream's default initialisation and deprecated `pretrained`
        if isinstance(pretrained, str):
            warnings.warn('PluginResLayer: pretrained is deprecated, use '
                          "init_cfg=dict(type='Pretrained', checkpoint=...)")
            self.init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        elif init_cfg is None:
            self.init_cfg = [
                dict(type='Kaiming', layer='Conv2d'),
                dict(type='Constant', val=1,
                     layer=['_BatchNorm', 'GroupNorm'])
            ]

    def train(self, mode: bool = True) -> 'PluginResLayer':
        """Set train/eval mode; under ``norm_eval`` every ``_BatchNorm``
        (upstream: only ``nn.BatchNorm2d``) stays in eval mode."""
        super().train(mode)
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self
