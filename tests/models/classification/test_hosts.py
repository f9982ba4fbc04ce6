"""mmc3's mmpretrain hosts: upstream parity without plugins, every plugin
position checked against an independent restatement (a plugin whose effect
is known, set against the upstream model with the equivalent change),
channels injected per position, chaining order, freezing, checkpoint keys
and the error messages."""
import copy

import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmengine.registry import MODELS as ROOT_MODELS
from mmpretrain.models.backbones import (MobileNetV2, ResNet, ResNeXt,
                                         ResNet_CIFAR)

import mmc3  # noqa: F401
from mmc3.models.classification import (CifarResNet, CifarWideResNet,
                                        PluginMobileNetV2, PluginResNet,
                                        PluginResNeXt)

_SEEN = []


@ROOT_MODELS.register_module(force=True)
class _Affine(BaseModule):
    """Test plugin: ``y = scale * x + shift``; records its input shape."""

    _abbr_ = 'affine'

    def __init__(self, in_channels, scale=1.0, shift=0.0, init_cfg=None):
        super().__init__(init_cfg)
        self.in_channels = in_channels
        self.scale, self.shift = scale, shift
        self.weight = nn.Parameter(torch.ones(1))  # for freezing tests

    def forward(self, x):
        assert x.shape[1] == self.in_channels
        _SEEN.append(tuple(x.shape))
        return self.scale * x + self.shift


def affine(position, stages=None, **kwargs):
    entry = dict(cfg=dict(type='_Affine', **kwargs), position=position)
    if stages is not None:
        entry['stages'] = stages
    return entry


def _same(a, b):
    outs_a, outs_b = a, b
    assert len(outs_a) == len(outs_b)
    for x, y in zip(outs_a, outs_b):
        # same modules, same order of operations: float32 agrees up to a
        # few ulps of the activations' scale
        scale = y.abs().max().item() + 1e-12
        assert (x - y).abs().max().item() <= 1e-5 * scale


def _pair(host, upstream, **kwargs):
    torch.manual_seed(0)
    ours = host(**kwargs)
    theirs = upstream(**kwargs)
    theirs.load_state_dict(ours.state_dict())
    theirs.eval()  # mmpretrain's train() returns None
    return ours.eval(), theirs


SMALL = dict(stem_channels=8, base_channels=8, out_indices=(0, 1, 2, 3))


@pytest.mark.parametrize('host,upstream,kwargs', [
    (PluginResNet, ResNet, dict(depth=18, **SMALL)),
    (PluginResNet, ResNet, dict(depth=50, **SMALL)),
    (PluginResNet, ResNet, dict(depth=50, deep_stem=True, **SMALL)),
    (PluginResNeXt, ResNeXt, dict(depth=50, groups=4, width_per_group=2,
                                  **SMALL)),
    (PluginMobileNetV2, MobileNetV2, dict(widen_factor=0.25,
                                          out_indices=(1, 4, 7))),
], ids=['r18', 'r50', 'r50-deep-stem', 'resnext', 'mobilenet'])
def test_without_plugins_the_host_is_upstream(host, upstream, kwargs):
    ours, theirs = _pair(host, upstream, **kwargs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    x = torch.randn(2, 3, 64, 64)
    _same(ours(x), theirs(x))


def test_cifar_resnet_is_resnet_cifar_with_the_6n2_layout():
    """CifarResNet(depth=20) has mmpretrain ResNet_CIFAR's modules with 3
    stages of 3 BasicBlocks at 16/32/64 channels: loading into an upstream
    ResNet_CIFAR built with that layout gives the same outputs."""
    ours = CifarResNet(depth=20).eval()
    layout = ResNet_CIFAR(depth=18, stem_channels=16, base_channels=16,
                          num_stages=3, strides=(1, 2, 2),
                          dilations=(1, 1, 1), out_indices=(2, ))
    for i in range(3):  # ResNet-18 has 2 blocks per stage; add a third
        stage = getattr(layout, f'layer{i + 1}')
        stage.append(copy.deepcopy(stage[-1]))
    layout.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3, 32, 32)
    layout.eval()
    _same(ours(x), layout(x))
    assert [getattr(ours, f'layer{i}')[-1].out_channels
            for i in (1, 2, 3)] == [16, 32, 64]
    assert [len(getattr(ours, f'layer{i}')) for i in (1, 2, 3)] == [3, 3, 3]
    assert ours(x)[0].shape == (2, 64, 8, 8)


def test_wide_resnet_layout():
    wrn = CifarWideResNet(depth=22, widen_factor=10)
    assert [len(getattr(wrn, f'layer{i}')) for i in (1, 2, 3)] == [3, 3, 3]
    assert [getattr(wrn, f'layer{i}')[-1].out_channels
            for i in (1, 2, 3)] == [160, 320, 640]
    assert wrn.stem_channels == 16


def _shift_then_double(position, stages=None):
    """Two chained plugins: ``2 * (x + 0.5)``."""
    return [affine(position, stages, shift=0.5),
            dict(affine(position, stages), cfg=dict(
                type='_Affine', scale=2.0, postfix='_2'))]


@pytest.mark.parametrize('depth,position,norm', [
    (18, 'after_conv2', 'norm2'), (50, 'after_conv3', 'norm3')])
def test_last_block_position_is_after_the_last_bn_before_the_sum(
        depth, position, norm):
    """``2 * (bn(x) + 0.5)`` after the last BN of every block, chained in
    list order, equals the upstream model whose last BN has weight
    ``2 gamma`` and bias ``2 (beta + 0.5)``: the position is after that BN
    and before the residual sum (and the ReLU that follows it)."""
    kwargs = dict(depth=depth, **SMALL)
    ours, theirs = _pair(PluginResNet, ResNet, **kwargs)
    plugged = PluginResNet(plugins=_shift_then_double(position), **kwargs)
    plugged.load_state_dict(ours.state_dict(), strict=False)
    for m in theirs.modules():
        bn = getattr(m, norm, None) if hasattr(m, 'downsample') else None
        if isinstance(bn, nn.BatchNorm2d):
            nn.init.normal_(bn.running_mean)  # make BN(0) != 0
            bn.weight.data *= 2
            bn.bias.data.add_(0.5).mul_(2)
    plugged_state = {k: v for k, v in theirs.state_dict().items()}
    # the same running statistics on both sides
    for name, module in plugged.named_modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(plugged_state[f'{name}.running_mean'])
    plugged.eval()
    x = torch.randn(2, 3, 64, 64)
    _same(plugged(x), theirs(x))


@pytest.mark.parametrize('depth', [18, 50])
def test_after_conv1_sees_the_rectified_conv1_output(depth):
    """``2 * relu(bn1(conv1 x))`` feeds conv2: equal to doubling conv2's
    weights upstream."""
    ours, theirs = _pair(PluginResNet, ResNet, depth=depth, **SMALL)
    plugged = PluginResNet(depth=depth, plugins=[affine('after_conv1',
                                                        scale=2.0)], **SMALL)
    plugged.load_state_dict(ours.state_dict(), strict=False)
    for m in theirs.modules():
        if hasattr(m, 'conv2') and hasattr(m, 'norm1'):
            m.conv2.weight.data *= 2
    x = torch.randn(2, 3, 64, 64)
    _same(plugged.eval()(x), theirs(x))


def test_after_stem_norm_is_between_the_stem_bn_and_its_relu():
    """Negating after the stem BN equals negating the BN's affine."""
    ours, theirs = _pair(PluginResNet, ResNet, depth=18, **SMALL)
    plugged = PluginResNet(depth=18, plugins=[
        affine('after_stem_norm', scale=-1.0)], **SMALL).eval()
    plugged.load_state_dict(ours.state_dict(), strict=False)
    theirs.norm1.weight.data.neg_()
    theirs.norm1.bias.data.neg_()
    x = torch.randn(2, 3, 64, 64)
    _same(plugged(x), theirs(x))


def _manual_forward(net, x, stem_fn, after_stage):
    """Upstream stages run by hand with ``after_stage[i]`` applied."""
    x = stem_fn(x)
    outs = []
    for i, name in enumerate(net.res_layers):
        x = after_stage.get(i, lambda t: t)(getattr(net, name)(x))
        if i in net.out_indices:
            outs.append(x)
    return outs


def test_after_stem_and_after_stage_act_between_stages():
    ours, theirs = _pair(PluginResNet, ResNet, depth=18, **SMALL)
    plugged = PluginResNet(depth=18, plugins=[
        affine('after_stem', shift=0.5),
        affine('after_stage', (False, True, False, True), scale=2.0),
    ], **SMALL).eval()
    plugged.load_state_dict(ours.state_dict(), strict=False)

    def stem(x):
        return theirs.maxpool(theirs.relu(theirs.norm1(
            theirs.conv1(x)))) + 0.5

    x = torch.randn(2, 3, 64, 64)
    expected = _manual_forward(theirs, x, stem,
                               {1: lambda t: 2 * t, 3: lambda t: 2 * t})
    _same(plugged(x), expected)


def test_plugins_at_one_position_are_chained_in_list_order():
    base = dict(depth=20)
    add_then_double = CifarResNet(plugins=[
        affine('after_stem', shift=1.0),
        dict(affine('after_stem', scale=2.0), cfg=dict(
            type='_Affine', scale=2.0, postfix='_2'))], **base).eval()
    plain = CifarResNet(**base).eval()
    plain.load_state_dict(add_then_double.state_dict(), strict=False)

    def stem(x):
        return 2 * (plain.relu(plain.norm1(plain.conv1(x))) + 1)

    x = torch.randn(2, 3, 32, 32)
    _same(add_then_double(x), _manual_forward(plain, x, stem, {}))


def test_in_channels_and_maps_per_position_and_stage():
    _SEEN.clear()
    net = CifarResNet(depth=20, plugins=[
        affine('after_stem'),
        affine('after_stage', (True, True, False)),
        affine('after_conv1', (False, False, True)),
        affine('after_conv2', (True, False, False)),
    ]).eval()
    net(torch.randn(1, 3, 32, 32))
    stem, stage1 = (1, 16, 32, 32), (1, 16, 32, 32)
    assert _SEEN.count(stem) == 1 + 1 + 3  # stem, after stage 1, 3 blocks
    assert (1, 32, 16, 16) in _SEEN  # after stage 2
    assert _SEEN.count((1, 64, 8, 8)) == 3  # after_conv1 of stage 3
    assert len(_SEEN) == 1 + 2 + 3 + 3 and stage1 == stem


def test_bottleneck_positions_get_mid_and_out_channels():
    _SEEN.clear()
    net = PluginResNeXt(depth=50, groups=4, width_per_group=2, plugins=[
        affine('after_conv2', (False, False, False, True)),
        dict(affine('after_conv3', (False, False, False, True)),
             cfg=dict(type='_Affine', postfix='_b')),
    ], **SMALL).eval()
    net(torch.randn(1, 3, 64, 64))
    block = net.layer4[0]
    assert {s[1] for s in _SEEN} == {block.mid_channels, block.out_channels}
    assert len(_SEEN) == 6


def test_mobilenet_positions():
    """after_depthwise: negation equals negating the depthwise BN affine;
    after_project with scale 0 leaves only the residual input."""
    kwargs = dict(widen_factor=0.25)
    ours, theirs = _pair(PluginMobileNetV2, MobileNetV2, **kwargs)
    neg = PluginMobileNetV2(plugins=[affine('after_depthwise', scale=-1.0)],
                            **kwargs).eval()
    neg.load_state_dict(ours.state_dict(), strict=False)
    for name in theirs.layers[:-1]:
        for block in getattr(theirs, name):
            bn = block.conv[-2].bn
            bn.weight.data.neg_()
            bn.bias.data.neg_()
    x = torch.randn(2, 3, 64, 64)
    _same(neg(x), theirs(x))

    zero = PluginMobileNetV2(plugins=[
        affine('after_project', (False, False, True) + (False, ) * 4,
               scale=0.0)], **kwargs).eval()
    block = zero.layer3[1]  # stride 1, same channels: a residual block
    assert block.use_res_connect
    t = torch.randn(1, block.conv[0].conv.in_channels, 8, 8)
    assert torch.equal(block(t), t)


def test_freezing_covers_the_plugins_of_frozen_parts():
    net = CifarResNet(depth=20, frozen_stages=1, plugins=[
        affine('after_stem'),
        affine('after_stage', (True, True, False)),
    ])
    net.train()
    assert not net.after_stem_plugins.affine.weight.requires_grad
    assert not net.after_stage_plugins[0].affine.weight.requires_grad
    assert net.after_stage_plugins[1].affine.weight.requires_grad
    assert not net.after_stage_plugins[0].training
    assert net.after_stage_plugins[1].training


def test_checkpoint_keys_are_the_documented_ones():
    net = PluginResNet(depth=18, plugins=[
        affine('after_stem_norm'), affine('after_stem'),
        affine('after_stage', (False, True, False, False)),
        affine('after_conv2', (True, False, False, False))], **SMALL)
    keys = {k for k in net.state_dict() if 'affine' in k}
    assert keys == {'after_stem_norm_plugins.affine.weight',
                    'after_stem_plugins.affine.weight',
                    'after_stage_plugins.1.affine.weight',
                    'layer1.0.affine.weight', 'layer1.1.affine.weight'}


def test_c3_grid_larger_than_the_map_is_a_resize():
    net = CifarResNet(depth=20, plugins=[dict(
        cfg=dict(type='C3Block', grid_size=16), position='after_stage',
        stages=(False, False, True))]).eval()
    out = net(torch.randn(2, 3, 32, 32))[0]  # an 8x8 map, a 16x16 grid
    assert out.shape == (2, 64, 8, 8) and torch.isfinite(out).all()


@pytest.mark.parametrize('build,error,match', [
    (lambda: CifarResNet(depth=21), KeyError,
     r'CifarResNet: depth must be one of 20, 32, 44, 56, 62, 74, 86, 98, '
     r'110, got 21'),
    (lambda: CifarWideResNet(depth=20), KeyError,
     r'depth must be one of 16, 22, 28, 40, got 20'),
    (lambda: PluginResNet(depth=19), KeyError,
     r'depth must be one of 18, 34, 50, 101, 152'),
    (lambda: CifarResNet(depth=20, plugins=[affine('after_conv4')]),
     ValueError, r"position must be one of 'after_conv1', 'after_conv2', "
     r"'after_conv3', 'after_stem_norm', 'after_stem', 'after_stage', got "
     r"'after_conv4'"),
    (lambda: PluginResNet(depth=18, plugins=[affine('after_conv3')]),
     ValueError, r"'after_conv3' does not exist in the BasicBlock blocks of "
     r"stage 1; valid positions: 'after_conv1', 'after_conv2'"),
    (lambda: CifarResNet(depth=20, plugins=[
        affine('after_stem', (True, True, True))]), ValueError,
     r"stages must not be set for position 'after_stem'"),
    (lambda: CifarResNet(depth=20, plugins=[
        affine('after_stage', (True, True, True, True))]), ValueError,
     r'stages must have 3 entries'),
    (lambda: PluginResNet(depth=50, deep_stem=True, plugins=[
        affine('after_stem_norm')]), ValueError,
     r"position must be one of .*'after_stem', 'after_stage', got "
     r"'after_stem_norm'"),
    (lambda: PluginMobileNetV2(plugins=[affine('after_conv3')]), ValueError,
     r"position must be one of 'after_depthwise', 'after_project', "
     r"'after_stem', 'after_stage'"),
    (lambda: CifarWideResNet(depth=22, base_channels=16), TypeError,
     r'set widen_factor instead'),
    (lambda: CifarResNet(depth=20, plugins=[
        affine('after_stem'), affine('after_stem')]), ValueError,
     r"both named 'affine'; give them distinct cfg.postfix"),
])
def test_bad_input_names_the_valid_choices(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_config_check_uses_the_host_rules():
    from mmengine.config import Config

    from mmc3.utils.plugins import check_config_plugins
    cfg = Config(dict(default_scope='mmpretrain', model=dict(
        type='ImageClassifier', backbone=dict(
            type='CifarResNet', depth=20,
            plugins=[affine('after_stage', (True, False, False, False))]))))
    message = check_config_plugins(cfg)
    assert 'model.backbone (CifarResNet)' in message
    assert 'stages must have 3 entries' in message
    cfg.model.backbone.plugins = [affine('after_stage', (True, False, False))]
    assert check_config_plugins(cfg) is None


def test_with_cp_gives_the_same_gradients():
    """Activation checkpointing (``with_cp``) changes memory, not values."""
    torch.manual_seed(0)
    plugins = [affine('after_conv2', scale=2.0)]
    plain = CifarResNet(depth=20, plugins=plugins)
    cp_net = CifarResNet(depth=20, plugins=plugins, with_cp=True)
    cp_net.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 32)
    grads = []
    for net in (plain, cp_net):
        net.zero_grad()
        net(x)[0].square().sum().backward()
        grads.append(net.layer1[0].conv1.weight.grad.clone())
    scale = grads[0].abs().max().item()
    assert (grads[0] - grads[1]).abs().max().item() <= 1e-5 * scale
