"""Tests for PluginResLayer, the plugin-aware C4 RoI shared head."""
import pytest
import torch
from mmengine.registry import DefaultScope
from torch.nn.modules.batchnorm import _BatchNorm

import mmc3  # noqa: F401  (registers the blocks and the host)
from mmc3.models.detection import PluginResLayer
from mmdet.models.backbones import ResNet
from mmdet.models.roi_heads.shared_heads import ResLayer
from mmdet.registry import MODELS

BASE = 8
IN_CHANNELS = BASE * 2**2 * 4  # stage 3 output: 128
PLANES = BASE * 2**3  # stage 4 bottleneck width: 64
OUT_CHANNELS = PLANES * 4  # stage 4 output: 256
SE = dict(type='SEBlock', ratio=4)


def build(cfg: dict):
    """Build from mmdet's registry, as a config does."""
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MODELS.build(cfg)


def build_head(**kwargs) -> PluginResLayer:
    cfg = dict(type='PluginResLayer', depth=50, base_channels=BASE,
               style='caffe')
    cfg.update(kwargs)
    return build(cfg)


def rois(n: int = 3, size: int = 14) -> torch.Tensor:
    return torch.randn(n, IN_CHANNELS, size, size)


def plugin_names(head: PluginResLayer, abbr: str) -> list:
    return [name for name, _ in head.named_modules()
            if name.split('.')[-1].startswith(abbr)]


def test_without_plugins_equals_upstream_res_layer():
    """Reduction to the known case: no plugins, base width 64 -> the same
    parameters, names and outputs as mmdet's ResLayer."""
    ours = build(dict(type='PluginResLayer', depth=50))
    upstream = ResLayer(depth=50)
    assert ours.state_dict().keys() == upstream.state_dict().keys()
    ours.load_state_dict(upstream.state_dict())
    ours.eval()
    upstream.eval()
    x = torch.randn(2, 1024, 14, 14)
    torch.testing.assert_close(ours(x), upstream(x))
    assert ours(x).shape == (2, 2048, 7, 7)


@pytest.mark.parametrize('position,channels', [('after_conv1', PLANES),
                                               ('after_conv2', PLANES),
                                               ('after_conv3', OUT_CHANNELS)])
def test_plugins_at_each_position(position, channels):
    head = build_head(plugins=[dict(cfg=SE, position=position)])
    for i in range(3):  # R-50/101 stage 4 has 3 bottlenecks
        block = getattr(head.layer4[i], 'se_block')
        assert block.in_channels == channels
        assert getattr(head.layer4[i], f'{position}_plugin_names') == \
            ['se_block']
    assert len(plugin_names(head, 'se_block')) == 3
    head.train()
    out = head(rois())
    assert out.shape == (3, OUT_CHANNELS, 7, 7)


@pytest.mark.parametrize('stages,expected', [
    (None, 3),
    ((True, ), 3),
    ((False, ), 0),
    ((False, False, False, True), 3),
    ((True, True, True, False), 0),
])
def test_stage_masks(stages, expected):
    plugin = dict(cfg=SE, position='after_conv3')
    if stages is not None:
        plugin['stages'] = stages
    head = build_head(plugins=[plugin])
    assert len(plugin_names(head, 'se_block')) == expected


def test_checkpoint_keys_match_backbone_plugins():
    """The block keys in the head are the keys the same plugin gets in
    stage 4 of an mmdet ResNet backbone."""
    plugin = dict(cfg=SE, position='after_conv3',
                  stages=(False, False, False, True))
    head = build_head(plugins=[plugin])
    backbone = ResNet(depth=50, base_channels=BASE, plugins=[plugin])
    head_keys = {k for k in head.state_dict() if k.startswith('layer4.')}
    backbone_keys = {k for k in backbone.state_dict()
                     if k.startswith('layer4.')}
    assert head_keys == backbone_keys
    assert 'layer4.2.se_block.fc1.weight' in head_keys


def test_two_plugins_at_one_position_both_get_gradients():
    head = build_head(
        norm_eval=False,
        plugins=[
            dict(cfg=dict(SE, postfix='_a'), position='after_conv3'),
            dict(cfg=dict(type='C3Block', grid_size=7, postfix='_b'),
                 position='after_conv3'),
        ])
    head.train()
    head(rois()).pow(2).mean().backward()
    for i in range(3):
        layer = head.layer4[i]
        assert layer.after_conv3_plugin_names == ['se_block_a', 'c3_block_b']
        for name in ('se_block_a', 'c3_block_b'):
            for pname, p in getattr(layer, name).named_parameters():
                assert p.grad is not None, f'{i}.{name}.{pname}'
                assert p.grad.abs().sum() > 0, f'{i}.{name}.{pname}'


# (host norm, plugin norm): upstream's ``train`` only puts nn.BatchNorm2d in
# eval mode, so each case holds a _BatchNorm that is not one (SyncBN in the
# host, in the plugin, or in both) and passes only with the override.
@pytest.mark.parametrize('host_norm,plugin_norm', [
    ('SyncBN', 'SyncBN'), ('BN', 'SyncBN'), ('SyncBN', 'BN')])
def test_norm_eval_freezes_every_batch_norm(host_norm, plugin_norm):
    ge = dict(type='GEBlock', variant='theta+', extent='global', grid_size=7,
              norm_cfg=dict(type=plugin_norm))
    head = build_head(
        norm_cfg=dict(type=host_norm, requires_grad=False),
        plugins=[dict(cfg=ge, position='after_conv3')])
    bns = [m for m in head.modules() if isinstance(m, _BatchNorm)]
    assert any(not isinstance(m, torch.nn.BatchNorm2d) for m in bns)
    # upstream's train() alone leaves those in training mode
    ResLayer.train(head, True)
    assert any(m.training for m in bns)
    assert head.train() is head
    assert bns and not any(m.training for m in bns)
    assert head.layer4[0].conv1.training and head.layer4[0].ge_block.training
    before = [m.running_mean.clone() for m in bns]
    head(rois())
    for m, old in zip(bns, before):
        torch.testing.assert_close(m.running_mean, old)
    head.eval()
    assert not any(m.training for m in head.modules())


def test_upstream_leaves_sync_bn_training():
    """Why train() is overridden: upstream only freezes nn.BatchNorm2d."""
    upstream = ResLayer(depth=50, norm_cfg=dict(type='SyncBN'))
    upstream.train()
    assert any(m.training for m in upstream.modules()
               if isinstance(m, _BatchNorm))
    ours = build(
        dict(type='PluginResLayer', depth=50, norm_cfg=dict(type='SyncBN')))
    ours.train()
    assert not any(m.training for m in ours.modules()
                   if isinstance(m, _BatchNorm))


def test_norm_eval_false_trains_batch_norms():
    head = build_head(norm_eval=False)
    head.train()
    assert all(m.training for m in head.modules())


def test_loads_stage4_weights_from_a_plain_resnet_checkpoint(tmp_path):
    """A plain ResNet state dict fills stage 4; the plugins' parameters are
    the only missing keys."""
    resnet = ResNet(depth=50, base_channels=BASE, style='caffe')
    with torch.no_grad():
        for p in resnet.parameters():
            p.normal_()
    ckpt = tmp_path / 'resnet50.pth'
    torch.save(resnet.state_dict(), ckpt)

    plugins = [dict(cfg=SE, position='after_conv3'),
               dict(cfg=dict(type='C3Block', grid_size=7),
                    position='after_conv2')]
    head = build_head(
        plugins=plugins,
        init_cfg=dict(type='Pretrained', checkpoint=str(ckpt)))
    head.init_weights()

    expected = {k: v for k, v in resnet.state_dict().items()
                if k.startswith('layer4.')}
    loaded = head.state_dict()
    for key, value in expected.items():
        torch.testing.assert_close(loaded[key], value, msg=key)

    result = head.load_state_dict(torch.load(ckpt), strict=False)
    plugin_keys = {k for k in head.state_dict()
                   if '.se_block.' in k or '.c3_block.' in k}
    assert plugin_keys
    assert set(result.missing_keys) == plugin_keys
    assert all(not k.startswith('layer4.') for k in result.unexpected_keys)


def test_plugins_need_a_bottleneck_depth():
    with pytest.raises(ValueError, match=r'Bottleneck ResNet.*depth=18'):
        build_head(depth=18, plugins=[dict(cfg=SE, position='after_conv3')])


@pytest.mark.parametrize('kwargs,error,match', [
    (dict(depth=42), ValueError, r'depth must be one of .*got 42'),
    (dict(base_channels=0), ValueError,
     r'base_channels must be a positive int, got 0'),
    (dict(base_channels=8.0), TypeError,
     r'base_channels must be a positive int, got float 8.0'),
])
def test_bad_host_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        build_head(**kwargs)


@pytest.mark.parametrize('cfg,error,match', [
    (dict(type='C3Block', grid_size=0), ValueError, r'C3Block: grid_size'),
    (dict(type='SEBlock', no_such_option=1), TypeError, r'no_such_option'),
])
def test_block_errors_surface_with_their_message(cfg, error, match):
    with pytest.raises(error, match=match):
        build_head(plugins=[dict(cfg=cfg, position='after_conv3')])


def test_stage_is_built_once(monkeypatch):
    """Construction builds the stage's bottlenecks once (3 for stage 4 of a
    ResNet-50), not upstream's plugin-free stage and then ours."""
    from mmdet.models.backbones.resnet import Bottleneck
    built = []
    original = Bottleneck.__init__

    def counting(self, *args, **kwargs):
        built.append(kwargs.get('planes', args[1] if len(args) > 1 else None))
        original(self, *args, **kwargs)

    monkeypatch.setattr(Bottleneck, '__init__', counting)
    head = build_head(plugins=[dict(cfg=SE, position='after_conv3')])
    assert len(built) == 3 and set(built) == {PLANES}
    assert isinstance(head, ResLayer)
    assert head.init_cfg == [
        dict(type='Kaiming', layer='Conv2d'),
        dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])]


def test_deprecated_pretrained_and_its_conflict_with_init_cfg():
    with pytest.warns(UserWarning, match='pretrained is deprecated'):
        head = build_head(pretrained='weights.pth')
    assert head.init_cfg == dict(type='Pretrained', checkpoint='weights.pth')
    with pytest.raises(ValueError, match='init_cfg and pretrained cannot '
                       'both be set'):
        build_head(pretrained='w.pth',
                   init_cfg=dict(type='Pretrained', checkpoint='w.pth'))
