"""Every config in ``configs/`` (except ``_base_`` fragments) loads, names only
registered types, keeps its real architecture, and its shrunk model runs one
training step and one prediction step on the CPU.

The list comes from a glob, so a new config is covered without editing this
file. Shrinking and the fake batch depend on the codebase: the config's
``default_scope`` selects ``tests/_shrink_<scope>.py``, which must export
``shrink_config(cfg) -> cfg`` and ``fake_batch(cfg) -> dict``.
"""
import copy
import functools
import importlib
import math
import re
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmengine.registry import (MODELS, TASK_UTILS, WEIGHT_INITIALIZERS,
                               DefaultScope)

CONFIG_DIR = Path(__file__).resolve().parents[2] / 'configs'
CONFIGS = sorted(p for p in CONFIG_DIR.rglob('*.py')
                 if '_base_' not in p.relative_to(CONFIG_DIR).parts)

# Configs of the experiment table (DESIGN): ResNet-101, blocks in stage 4,
# lower stages frozen. The block is named by the config name.
_EXPERIMENT = re.compile(
    r'^(faster_rcnn|mask_rcnn|deeplabv2)_r101_(baseline|se|c3|ce|ge)(_|$)')
_BLOCK_TYPES = {
    'baseline': set(),
    'se': {'SEBlock'},
    'c3': {'C3Block'},
    'ce': {'CEBlock'},
    'ge': {'GEBlock'},
}
# Keys whose ``type`` names an mmcv op looked up by attribute, not a registry.
_MMCV_OP_KEYS = ('roi_layer', 'nms')

# The experiment table (DESIGN, README "Configs"), written out: every one
# must exist, and the configs named like experiments are exactly these.
REQUIRED = sorted(f'{stem}.py' for stem in """
    faster_rcnn_r101_baseline faster_rcnn_r101_se faster_rcnn_r101_c3
    faster_rcnn_r101_ce faster_rcnn_r101_ge
    faster_rcnn_r101_baseline_voc0712 faster_rcnn_r101_se_voc0712
    faster_rcnn_r101_c3_voc0712 faster_rcnn_r101_ce_voc0712
    faster_rcnn_r101_ge_voc0712
    mask_rcnn_r101_baseline_coco mask_rcnn_r101_se_coco mask_rcnn_r101_c3_coco
    mask_rcnn_r101_ce_coco mask_rcnn_r101_ge_coco
    deeplabv2_r101_baseline_voc12aug deeplabv2_r101_se_voc12aug
    deeplabv2_r101_c3_voc12aug deeplabv2_r101_ce_voc12aug
    deeplabv2_r101_ge_voc12aug
    """.split())

# The block settings each experiment states (config headers, the fragments in
# configs/_base_/blocks/, README): C3 on the 7x7 maps of the C4 RoI head and
# on DeepLab's 41x41 stage-4 maps with k = 8 and the paper's defaults; SE
# ratio 16; CE r = 4, groups of 16, 3 Newton-Schulz steps; GE-theta+ with a
# global gather over the same map sizes. Every block after conv3 of every
# stage-4 bottleneck.
_C4_BLOCKS = {
    'se': dict(type='SEBlock', ratio=16),
    'c3': dict(type='C3Block', grid_size=7, ratio=8),
    'ce': dict(type='CEBlock', ratio=4, group_size=16, ns_iters=3),
    'ge': dict(type='GEBlock', variant='theta+', extent='global',
               grid_size=7, ratio=16),
}
EXPECTED_BLOCK = {
    'faster_rcnn': _C4_BLOCKS,
    'mask_rcnn': _C4_BLOCKS,
    'deeplabv2': dict(
        _C4_BLOCKS,
        c3=dict(type='C3Block', grid_size=(41, 41), ratio=8),
        ge=dict(type='GEBlock', variant='theta+', extent='global',
                grid_size=(41, 41), ratio=16)),
}


def _id(path: Path) -> str:
    return str(path.relative_to(CONFIG_DIR))


@functools.lru_cache(maxsize=None)
def _load_once(path: Path) -> Config:
    return Config.fromfile(str(path))


def _load(path: Path) -> Config:
    """A fresh copy of the parsed config (each file is parsed once)."""
    return copy.deepcopy(_load_once(path))


def _scope(cfg: Config) -> str:
    scope = cfg.get('default_scope')
    assert scope, 'config sets no default_scope (inherit an upstream runtime)'
    return scope


def _shrinker(scope: str):
    """``tests/_shrink_<scope>.py``, or a failure that says what is missing."""
    name = f'tests._shrink_{scope}'
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name != name:
            raise
        pytest.fail(f'no shrinker for default_scope={scope!r}: add '
                    f'tests/_shrink_{scope}.py exporting shrink_config(cfg) '
                    'and fake_batch(cfg)')
    missing = [f for f in ('shrink_config', 'fake_batch')
               if not callable(getattr(module, f, None))]
    if missing:
        pytest.fail(f'tests/_shrink_{scope}.py does not export {missing}')
    return module


def iter_types(node, key=None, path='model'):
    """Yield ``(path, key, type)`` for every ``type`` in a config tree."""
    if isinstance(node, dict):
        if isinstance(node.get('type'), str):
            yield path, key, node['type']
        for k, v in node.items():
            yield from iter_types(v, k, f'{path}.{k}')
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from iter_types(v, key, f'{path}[{i}]')


def resolves(scope: str, key, type_name: str) -> bool:
    """Whether ``type_name`` is found where its builder will look."""
    if key in _MMCV_OP_KEYS:
        import mmcv.ops
        return hasattr(mmcv.ops, type_name)
    for root in (MODELS, TASK_UTILS, WEIGHT_INITIALIZERS):
        with root.switch_scope_and_registry(scope) as registry:
            if registry.get(type_name) is not None:
                return True
    return False


def unresolved_types(cfg: Config):
    scope = _scope(cfg)
    return [(path, t) for path, key, t in iter_types(cfg.model)
            if not resolves(scope, key, t)]


def stage4_plugin_types(model: dict) -> set:
    """Block types plugged into stage 4: the C4 RoI shared head's plugins, or
    the backbone's plugins whose ``stages`` mask enables the last stage."""
    shared = (model.get('roi_head') or {}).get('shared_head')
    if shared is not None:
        assert shared.get('stage', 3) == 3, 'the shared head is not stage 4'
        plugins = shared.get('plugins') or []
        return {p['cfg']['type'] for p in plugins
                if p.get('stages') is None or p['stages'][-1]}
    plugins = model['backbone'].get('plugins') or []
    return {p['cfg']['type'] for p in plugins
            if p.get('stages') is None or p['stages'][-1]}


def test_glob_finds_the_experiment_configs():
    names = {p.name for p in CONFIGS}
    missing = [n for n in REQUIRED if n not in names]
    assert not missing, f'missing configs: {missing}'
    # the architecture tests below run on exactly the experiment table
    experiments = sorted(p.name for p in CONFIGS if _EXPERIMENT.match(p.stem))
    assert experiments == REQUIRED


@pytest.mark.parametrize(
    'path', [p for p in CONFIGS if _EXPERIMENT.match(p.stem)], ids=_id)
def test_config_keeps_the_stated_block_settings(path):
    """The block, its options, its position and its stages are the ones the
    config header and the README state (a changed grid_size, variant or
    ratio in a fragment fails here)."""
    cfg = _load(path)
    model_name, block = _EXPERIMENT.match(path.stem).group(1, 2)
    model = cfg.model
    shared = (model.get('roi_head') or {}).get('shared_head')
    host = shared if shared is not None else model.backbone
    plugins = host.get('plugins') or []
    if shared is not None:  # C4: no plugins in the backbone (stages 1-3)
        assert not model.backbone.get('plugins')
    if block == 'baseline':
        assert plugins == []
        return
    assert len(plugins) == 1, plugins
    plugin = plugins[0]
    assert plugin['position'] == 'after_conv3'
    assert tuple(plugin['stages']) == (False, False, False, True)
    assert dict(plugin['cfg']) == EXPECTED_BLOCK[model_name][block]


@pytest.mark.parametrize('path', CONFIGS, ids=_id)
def test_config_loads_and_every_type_resolves(path):
    cfg = _load(path)
    assert 'mmc3' in cfg.custom_imports['imports']
    assert cfg.custom_imports.get('allow_failed_imports') is False
    assert not unresolved_types(cfg), unresolved_types(cfg)


def test_a_scope_without_shrinker_fails_with_a_clear_message():
    with pytest.raises(pytest.fail.Exception,
                       match=r"no shrinker for default_scope='nosuchscope'"
                       r'.*tests/_shrink_nosuchscope.py'):
        _shrinker('nosuchscope')


def test_type_check_catches_an_unknown_type():
    cfg = _load(CONFIG_DIR / 'faster_rcnn_r101_c3.py')
    cfg.model.roi_head.shared_head.plugins[0].cfg.type = 'C3Blok'
    cfg.model.rpn_head.anchor_generator.type = 'NoSuchAnchors'
    bad = {t for _, t in unresolved_types(cfg)}
    assert bad == {'C3Blok', 'NoSuchAnchors'}


@pytest.mark.parametrize(
    'path', [p for p in CONFIGS if _EXPERIMENT.match(p.stem)], ids=_id)
def test_config_keeps_the_real_architecture(path):
    cfg = _load(path)
    block = _EXPERIMENT.match(path.stem).group(2)
    model = cfg.model
    assert model.backbone.depth == 101
    assert model.backbone.frozen_stages == 3
    assert stage4_plugin_types(model) == _BLOCK_TYPES[block]
    shared = (model.get('roi_head') or {}).get('shared_head')
    if shared is not None:  # C4: the backbone stops after stage 3
        assert shared.type == 'PluginResLayer'
        assert shared.depth == 101
        assert model.backbone.num_stages == 3
        assert shared.init_cfg['type'] == 'Pretrained'
        assert shared.init_cfg['checkpoint'] == \
            model.backbone.init_cfg['checkpoint']
        positions = {p['position'] for p in shared.get('plugins') or []}
        assert positions <= {'after_conv3'}


@pytest.mark.parametrize('path', CONFIGS, ids=_id)
def test_shrunk_model_trains_and_predicts(path):
    cfg = _load(path)
    scope = _scope(cfg)
    shrinker = _shrinker(scope)
    small = shrinker.shrink_config(cfg)
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(small.model)
        model.init_weights()
        model.train()
        optim = OptimWrapper(
            torch.optim.SGD(
                [p for p in model.parameters() if p.requires_grad], lr=1e-3))
        log_vars = model.train_step(shrinker.fake_batch(small), optim)
        assert 'loss' in log_vars
        assert math.isfinite(float(log_vars['loss']))
        model.eval()
        data = shrinker.fake_batch(small)
        with torch.no_grad():
            preds = model.test_step(data)
    assert len(preds) == len(data['data_samples'])
    for pred in preds:  # detection / segmentation / classification output
        assert any(key in pred for key in ('pred_instances', 'pred_sem_seg',
                                           'pred_score')), pred.keys()


@pytest.mark.parametrize('path', sorted((CONFIG_DIR / 'quickstart').glob(
    '*.py')), ids=_id)
def test_quickstart_data_follows_one_variable(path, monkeypatch, tmp_path):
    """Every dataset path of a quickstart config sits under
    $MMC3_QUICKSTART_DATA (what tools/quickstart.sh sets to
    $QUICKSTART_OUT/data), and under work_dirs/quickstart/data without it."""
    from mmc3.utils.data_paths import _dataset_paths
    for root, env in ((str(tmp_path / 'elsewhere'), True),
                      ('work_dirs/quickstart/data', False)):
        if env:
            monkeypatch.setenv('MMC3_QUICKSTART_DATA', root)
        else:
            monkeypatch.delenv('MMC3_QUICKSTART_DATA', raising=False)
        cfg = Config.fromfile(str(path))
        paths = [p for loader in ('train_dataloader', 'val_dataloader',
                                  'test_dataloader')
                 for p, _ in _dataset_paths(cfg[loader]['dataset'], loader)]
        assert paths and all(p.startswith(root + '/') for p in paths), paths


def test_quickstart_script_points_the_configs_at_its_data():
    script = (CONFIG_DIR.parent / 'tools' / 'quickstart.sh').read_text()
    assert 'DATA=$OUT/data\nexport MMC3_QUICKSTART_DATA=$DATA' in script
