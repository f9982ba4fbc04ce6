"""ChainedPluginResNet: mmseg's ResNet with stacked plugins chained."""
import pytest
import torch
from torch import nn

import mmc3  # noqa: F401  (registers the host and the blocks)
from mmc3.models.segmentation import (ChainedPluginBottleneck,
                                      ChainedPluginResNet)
from tests._helpers import build_in_scope


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


def _mmseg_build(cfg: dict):
    return build_in_scope('mmseg', cfg)


def _stage4(position, *cfgs):
    return [
        dict(cfg=cfg, stages=(False, False, False, True), position=position)
        for cfg in cfgs
    ]


def _build(type_='ChainedPluginResNet', **kwargs):
    cfg = dict(type=type_, depth=50, base_channels=8, stem_channels=8,
               deep_stem=True, strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4),
               out_indices=(3, ), init_cfg=None)
    cfg.update(kwargs)
    return _mmseg_build(cfg)


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


# --------------------------------------------------------------------------
# One host per mmseg ResNet flavour: the README's recipe keeps the stem
# --------------------------------------------------------------------------
V1C_CONFIG = 'mmseg::pspnet/pspnet_r50-d8_4xb2-40k_cityscapes-512x1024.py'


def _upstream_v1c_backbone_cfg():
    """The backbone of an upstream ResNetV1c config (PSPNet), as written."""
    from mmengine.config import Config
    path = _tmp_config(f'_base_ = {V1C_CONFIG!r}\n')
    backbone = dict(Config.fromfile(path).model.backbone)
    assert backbone['type'] == 'ResNetV1c'
    backbone['init_cfg'] = None  # no download
    return backbone


def _tmp_config(text: str) -> str:
    import tempfile
    handle = tempfile.NamedTemporaryFile('w', suffix='.py', delete=False)
    with handle:
        handle.write(text)
    return handle.name


def test_readme_recipe_keeps_the_upstream_v1c_stem():
    """Putting ``ChainedPlugin`` in front of an upstream ``ResNetV1c``
    backbone type (the README's recipe) builds the same state-dict keys as
    upstream plus only the plugin keys, so ``open-mmlab://resnet50_v1c``
    weights still load; the upstream weights load into it unchanged."""
    upstream_cfg = _upstream_v1c_backbone_cfg()
    upstream = _mmseg_build(upstream_cfg)
    ours = _mmseg_build(dict(
        upstream_cfg, type='ChainedPluginResNetV1c',
        plugins=_stage4('after_conv3', dict(type='SEBlock'))))
    upstream_keys, our_keys = set(upstream.state_dict()), set(
        ours.state_dict())
    assert any(k.startswith('stem.') for k in upstream_keys)
    assert upstream_keys <= our_keys
    extra = our_keys - upstream_keys
    assert extra and all('.se_block.' in k for k in extra), sorted(extra)[:5]
    missing, unexpected = ours.load_state_dict(upstream.state_dict(),
                                               strict=False)
    assert not unexpected and set(missing) == extra
    # and without plugins the two compute the same function
    plain = _mmseg_build(dict(upstream_cfg, type='ChainedPluginResNetV1c'))
    plain.load_state_dict(upstream.state_dict())
    upstream.eval(), plain.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(upstream(x), plain(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_plain_host_on_a_v1c_config_would_drop_the_stem():
    """Why the V1c host exists: ``ChainedPluginResNet`` has mmseg ResNet's
    defaults (7x7 stem), so it is not a drop-in for ``ResNetV1c``."""
    upstream_cfg = _upstream_v1c_backbone_cfg()
    plain = _mmseg_build(dict(upstream_cfg, type='ChainedPluginResNet'))
    assert not any(k.startswith('stem.') for k in plain.state_dict())


@pytest.mark.parametrize('flavour,stem_key,avg_down', [
    ('ChainedPluginResNetV1c', 'stem.0.weight', False),
    ('ChainedPluginResNetV1d', 'stem.0.weight', True),
    ('ChainedPluginResNet', 'conv1.weight', False),
])
def test_each_flavour_has_its_upstream_stem_and_chains(flavour, stem_key,
                                                       avg_down):
    from mmseg.models.backbones import ResNet, ResNetV1c, ResNetV1d
    upstream_type = {'ChainedPluginResNetV1c': ResNetV1c,
                     'ChainedPluginResNetV1d': ResNetV1d,
                     'ChainedPluginResNet': ResNet}[flavour]
    backbone = _mmseg_build(dict(
        type=flavour, depth=50, base_channels=8, stem_channels=8,
        init_cfg=None, plugins=_stage4(
            'after_conv3', dict(type=_AffineProbe, postfix='_1'),
            dict(type=_AffineProbe, postfix='_2'))))
    assert isinstance(backbone, upstream_type)
    assert stem_key in backbone.state_dict()
    assert backbone.avg_down is avg_down
    block = backbone.layer4[0]
    assert type(block) is ChainedPluginBottleneck
    x = torch.randn(1, 256, 4, 4)  # stage-4 output: 8 * 8 * 4 channels
    torch.testing.assert_close(
        block.forward_plugin(x, block.after_conv3_plugin_names),
        block.affine_probe_2(block.affine_probe_1(x)))


def _readme_mmseg_snippet() -> str:
    """The mmseg config snippet of the README's "Adding a block" section."""
    from pathlib import Path
    text = (Path(__file__).resolve().parents[3] / 'README.md').read_text()
    section = text[text.index('## Adding a block to any mmdet'):]
    section = section[section.index("In mmseg configs put `ChainedPlugin`"):]
    start = section.index('```python\n') + len('```python\n')
    return section[start:section.index('```', start)]


def test_readme_mmseg_snippet_keeps_upstream_keys(tmp_path):
    from mmengine.config import Config
    snippet = _readme_mmseg_snippet()
    assert V1C_CONFIG in snippet
    path = tmp_path / 'my_pspnet_se.py'
    path.write_text(snippet)
    cfg = Config.fromfile(str(path))
    ours_cfg = dict(cfg.model.backbone, init_cfg=None)
    ours = _mmseg_build(ours_cfg)
    upstream = _mmseg_build(_upstream_v1c_backbone_cfg())
    extra = set(ours.state_dict()) - set(upstream.state_dict())
    assert set(upstream.state_dict()) <= set(ours.state_dict())
    assert extra and all('.se_block.' in k for k in extra)
    missing, unexpected = ours.load_state_dict(upstream.state_dict(),
                                               strict=False)
    assert not unexpected and set(missing) == extra
