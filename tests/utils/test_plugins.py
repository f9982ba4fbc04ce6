"""Bad ``plugins`` entries give a message naming host, key, value and choices,
in every host mmc3 provides and, through the tools' config check, in the
upstream ResNets of mmdet and mmseg."""
import re

import pytest
from mmengine.config import Config

import mmc3  # noqa: F401  (registers the blocks and the hosts)
from mmc3.utils import check_config_plugins, check_plugins
from tests._helpers import build_in_scope

STAGE4 = (False, False, False, True)
SE = dict(type='SEBlock')

# mistake -> (plugins list, exception type, regex on the message). The
# message starts with the host name; the host-specific part of the stages
# message is filled in per host.
MISTAKES = {
    'unknown_type': ([dict(cfg=dict(type='C3Blok'), position='after_conv3',
                           stages=STAGE4)], KeyError,
                     r"plugins\[0\]\.cfg\.type 'C3Blok' is not registered in "
                     r"the '\w+' registry or its parents.*custom_imports="
                     r"dict\(imports=\['mmc3'\]"),
    'wrong_stage_count': ([dict(cfg=SE, position='after_conv3',
                                stages=(False, True))], ValueError,
                          r'plugins\[0\]\.stages must have {lengths} entries '
                          r'\(one per stage\), got 2: \(False, True\)'),
    'unknown_position': ([dict(cfg=SE, position='after_conv4',
                               stages=STAGE4)], ValueError,
                         r"plugins\[0\]\.position must be one of "
                         r"'after_conv1', 'after_conv2', 'after_conv3', got "
                         r"'after_conv4'"),
    'misspelt_key': ([dict(cfg=SE, position='after_conv3', stage=STAGE4)],
                     TypeError,
                     r"plugins\[0\] has unknown key\(s\) 'stage'; valid keys: "
                     r'cfg, position, stages'),
    'missing_position': ([dict(cfg=SE)], TypeError,
                         r"plugins\[0\] needs the key 'position' \(keys: cfg, "
                         r"position, stages\)"),
    'cfg_without_type': ([dict(cfg=dict(ratio=4), position='after_conv3')],
                         TypeError,
                         r"plugins\[0\]\.cfg must be a dict with a 'type' "
                         r"key, got \{'ratio': 4\}"),
    'in_channels_set': ([dict(cfg=dict(SE, in_channels=64),
                              position='after_conv3')], ValueError,
                        r'plugins\[0\]\.cfg\.in_channels must not be set .*'
                        r'got 64'),
    'stages_not_bools': ([dict(cfg=SE, position='after_conv3',
                               stages=(0, 0, 0, 1))], TypeError,
                         r'plugins\[0\]\.stages must be None or a tuple of '
                         r'bools, got \(0, 0, 0, 1\)'),
    'not_a_list': (dict(cfg=SE, position='after_conv3'), TypeError,
                   r'plugins must be a list of dicts, got \w*[dD]ict'),
    'second_entry': ([dict(cfg=SE, position='after_conv3'),
                      dict(cfg=SE, position='after_conv5')], ValueError,
                     r"plugins\[1\]\.position must be one of .* got "
                     r"'after_conv5'"),
}


def _build_plugin_res_layer(plugins, depth=50):
    return build_in_scope('mmdet', dict(type='PluginResLayer', depth=depth,
                                        base_channels=8, plugins=plugins))


def _build_mmseg(type_, plugins, depth=50):
    return build_in_scope('mmseg', dict(type=type_, depth=depth,
                                        base_channels=8, stem_channels=8,
                                        init_cfg=None, plugins=plugins))


def _via_tools_check(scope, type_, plugins, depth=50):
    """What tools/train.py and tools/test.py run before building."""
    cfg = Config(dict(default_scope=scope, model=dict(
        type='Detector', backbone=dict(type=type_, depth=depth,
                                       plugins=plugins))))
    problem = check_config_plugins(cfg)
    if problem is not None:
        raise ValueError(problem)


# host -> (how to build it, host name in the message, stages lengths)
HOSTS = {
    'PluginResLayer': (_build_plugin_res_layer, r'PluginResLayer', '1 or 4'),
    'ChainedPluginResNet': (
        lambda p, **k: _build_mmseg('ChainedPluginResNet', p, **k),
        r'ChainedPluginResNet', '4'),
    'ChainedPluginResNetV1c': (
        lambda p, **k: _build_mmseg('ChainedPluginResNetV1c', p, **k),
        r'ChainedPluginResNetV1c', '4'),
    'ChainedPluginResNetV1d': (
        lambda p, **k: _build_mmseg('ChainedPluginResNetV1d', p, **k),
        r'ChainedPluginResNetV1d', '4'),
    'mmdet ResNet (tools)': (
        lambda p, **k: _via_tools_check('mmdet', 'ResNet', p, **k),
        r'model\.backbone \(ResNet\)', '4'),
    'mmseg ResNetV1c (tools)': (
        lambda p, **k: _via_tools_check('mmseg', 'ResNetV1c', p, **k),
        r'model\.backbone \(ResNetV1c\)', '4'),
}


@pytest.mark.parametrize('mistake', sorted(MISTAKES))
@pytest.mark.parametrize('host', sorted(HOSTS))
def test_every_host_names_every_kind_of_mistake(host, mistake):
    build, host_name, lengths = HOSTS[host]
    plugins, exc_type, pattern = MISTAKES[mistake]
    if host.endswith('(tools)'):
        exc_type = ValueError  # the tools print the message and exit 2
    with pytest.raises(exc_type) as info:
        build(plugins)
    message = info.value.args[0]
    assert re.match(host_name + ': ', message), message
    assert re.search(pattern.replace('{lengths}', lengths), message), message


@pytest.mark.parametrize('host', sorted(HOSTS))
def test_basic_block_depths_refuse_plugins_by_name(host):
    build, host_name, _ = HOSTS[host]
    with pytest.raises((ValueError, TypeError)) as info:
        build([dict(cfg=SE, position='after_conv3')], depth=18)
    assert re.match(host_name + r': plugins need a Bottleneck ResNet \(depth '
                    r'50, 101 or 152\); depth=18', info.value.args[0])


def test_a_valid_config_passes_the_tools_check():
    cfg = Config(dict(default_scope='mmdet', model=dict(
        type='FasterRCNN',
        backbone=dict(type='ResNet', depth=50, num_stages=3, plugins=[
            dict(cfg=SE, position='after_conv2', stages=(False, True, True))
        ]),
        roi_head=dict(shared_head=dict(type='PluginResLayer', depth=50,
                                       plugins=[dict(cfg=SE,
                                                     position='after_conv3',
                                                     stages=STAGE4)])))))
    assert check_config_plugins(cfg) is None
    # the backbone has 3 stages: a 4-tuple there is a mistake
    cfg.model.backbone.plugins[0].stages = STAGE4
    assert check_config_plugins(cfg).startswith(
        'model.backbone (ResNet): plugins[0].stages must have 3 entries')


def test_every_experiment_config_passes_the_check():
    from pathlib import Path
    root = Path(__file__).resolve().parents[2] / 'configs'
    paths = sorted(root.rglob('*.py'))
    paths = [p for p in paths if '_base_' not in p.parts]
    assert paths
    for path in paths:
        assert check_config_plugins(Config.fromfile(str(path))) is None, path


def test_check_plugins_returns_the_list_unchanged():
    plugins = (dict(cfg=SE, position='after_conv1'), )
    assert check_plugins(plugins, 'Host') == list(plugins)
    assert check_plugins(None, 'Host') is None
