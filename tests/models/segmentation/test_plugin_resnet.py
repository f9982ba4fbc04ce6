"""ChainedPluginResNet: mmseg's ResNet with stacked plugins chained."""
import pytest
import torch
from torch import nn

import mmc3  # noqa: F401  (registers the host and the blocks)
from mmc3.models.segmentation import (ChainedPluginBottleneck,
                                      ChainedPluginResNet)


class _AffineProbe(nn.Module):
    """Test plugin ``y = a * x + b`` with per-channel ``a``, ``b``; passed
    to the host as a class, so no registry is touched."""

    _abbr_ = 'affine_probe'

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(1 + 0.5 * torch.randn(in_channels, 1, 1))
        self.shift = nn.Parameter(0.5 * torch.randn(in_channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x + self.shift


def _stage4(position, *cfgs):
    return [
        dict(cfg=cfg, stages=(False, False, False, True), position=position)
        for cfg in cfgs
    ]


def _build(type_='ChainedPluginResNet', **kwargs):
    from mmseg.registry import MODELS
    cfg = dict(type=type_, depth=50, base_channels=8, stem_channels=8,
               deep_stem=True, strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4),
               out_indices=(3, ), init_cfg=None)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def _restated_bottleneck(block, x, plugins_after_conv3):
    """mmseg's bottleneck written out, plugins after conv3 composed."""
    out = block.relu(block.norm1(block.conv1(x)))
    out = block.relu(block.norm2(block.conv2(out)))
    out = block.norm3(block.conv3(out))
    for plugin in plugins_after_conv3:
        out = plugin(out)
    identity = x if block.downsample is None else block.downsample(x)
    return block.relu(out + identity)


def test_every_bottleneck_is_chained():
    backbone = _build(plugins=_stage4('after_conv3', dict(type='SEBlock')))
    blocks = [m for m in backbone.modules() if isinstance(m, nn.Module)
              and type(m).__name__.endswith('Bottleneck')]
    assert len(blocks) == 3 + 4 + 6 + 3
    assert all(type(b) is ChainedPluginBottleneck for b in blocks)
    assert isinstance(backbone, ChainedPluginResNet)
    for block in backbone.layer4:
        assert block.se_block.in_channels == 256
    assert not hasattr(backbone.layer3[0], 'se_block')


def test_output_equals_block2_of_block1():
    backbone = _build(plugins=_stage4(
        'after_conv3', dict(type=_AffineProbe, postfix='_1'),
        dict(type=_AffineProbe, postfix='_2')))
    backbone.eval()
    block = backbone.layer4[1]
    first, second = block.affine_probe_1, block.affine_probe_2
    assert block.after_conv3_plugin_names == ['affine_probe_1',
                                              'affine_probe_2']
    x = torch.randn(2, 256, 5, 7)
    with torch.no_grad():
        chained = block(x)
        assert torch.allclose(
            chained, _restated_bottleneck(block, x, [first, second]),
            atol=1e-6)
        # the order matters for affine maps with different coefficients
        assert not torch.allclose(
            chained, _restated_bottleneck(block, x, [second, first]),
            atol=1e-4)


def test_upstream_resnet_drops_the_first_plugin():
    """Documents why the subclass exists; fails once mmseg fixes its bug."""
    plugins = _stage4('after_conv3', dict(type=_AffineProbe, postfix='_1'),
                      dict(type=_AffineProbe, postfix='_2'))
    upstream = _build('ResNet', plugins=plugins)
    upstream.eval()
    block = upstream.layer4[1]
    x = torch.randn(1, 256, 5, 5)
    with torch.no_grad():
        assert torch.allclose(
            block(x), _restated_bottleneck(block, x, [block.affine_probe_2]),
            atol=1e-6)


@pytest.mark.parametrize('position', ['after_conv1', 'after_conv2',
                                      'after_conv3'])
def test_two_stacked_blocks_both_receive_gradients(position):
    backbone = _build(
        plugins=_stage4(position, dict(type='SEBlock', postfix='_1'),
                        dict(type='SEBlock', postfix='_2')),
        frozen_stages=3)
    backbone.train()
    outs = backbone(torch.randn(2, 3, 33, 35))
    outs[0].pow(2).mean().backward()
    for i, block in enumerate(backbone.layer4):
        for name in ('se_block_1', 'se_block_2'):
            for pname, p in getattr(block, name).named_parameters():
                assert p.grad is not None, f'layer4.{i}.{name}.{pname}'
                assert torch.isfinite(p.grad).all()
                assert p.grad.abs().sum() > 0, f'layer4.{i}.{name}.{pname}'


def test_one_plugin_matches_upstream_and_keys_load():
    plugins = _stage4('after_conv3', dict(type='SEBlock'))
    ours = _build(plugins=plugins)
    upstream = _build('ResNet', plugins=plugins)
    assert list(ours.state_dict()) == list(upstream.state_dict())
    ours.load_state_dict(upstream.state_dict())
    ours.eval()
    upstream.eval()
    x = torch.randn(1, 3, 41, 41)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), upstream(x))
    # a plain (plugin-free) mmseg ResNet checkpoint loads, blocks missing only
    plain = _build('ResNet')
    missing, unexpected = ours.load_state_dict(plain.state_dict(),
                                               strict=False)
    assert not unexpected
    assert missing and all('.se_block.' in k for k in missing)


def test_frozen_stages_have_no_trainable_parameters():
    backbone = _build(
        plugins=_stage4('after_conv3', dict(type='SEBlock')),
        frozen_stages=3, norm_eval=True,
        norm_cfg=dict(type='BN', requires_grad=False))
    backbone.train()
    frozen = [backbone.stem, backbone.layer1, backbone.layer2,
              backbone.layer3]
    for module in frozen:
        assert not any(p.requires_grad for p in module.parameters())
        assert not module.training
    trainable = {n for n, p in backbone.named_parameters() if p.requires_grad}
    assert trainable, 'stage 4 must train'
    assert all(n.startswith('layer4.') for n in trainable)
    assert any('.se_block.' in n for n in trainable)
    assert any('.conv2.' in n for n in trainable)
    # norm_eval: every BN, in stage 4 too, keeps its running statistics
    assert all(not m.training for m in backbone.modules()
               if isinstance(m, nn.BatchNorm2d))
