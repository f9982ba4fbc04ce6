"""configs/deeplabv2_r101_*_voc12aug.py: the recipe, and one CPU step each."""
import copy
import functools
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from tests._shrink_mmseg import fake_batch, shrink_config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', 'deeplabv2_*.py')))
# which block each config puts in stage 4 (None: the baseline)
BLOCK_OF = {
    'baseline': None,
    'se': 'SEBlock',
    'c3': 'C3Block',
    'ce': 'CEBlock',
    'ge': 'GEBlock',
}


@functools.lru_cache(maxsize=None)
def _load(path):
    return Config.fromfile(path)


def _config(path):
    """``Config.fromfile(path)``, parsed once per session (a few seconds)."""
    return copy.deepcopy(_load(path))


def _variant(path):
    return osp.basename(path)[len('deeplabv2_r101_'):-len('_voc12aug.py')]


@pytest.fixture(scope='module', autouse=True)
def _mmseg_scope():
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=True)


def test_the_five_configs_exist():
    names = {osp.basename(p) for p in CONFIGS}
    assert names == {f'deeplabv2_r101_{v}_voc12aug.py' for v in BLOCK_OF}


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_recipe(path):
    cfg = _config(path)
    assert cfg.custom_imports == dict(imports=['mmc3'],
                                      allow_failed_imports=False)
    backbone, head = cfg.model.backbone, cfg.model.decode_head
    assert backbone.type == 'ChainedPluginResNetV1c' and backbone.depth == 101
    assert backbone.strides == (1, 2, 1, 1)
    assert backbone.dilations == (1, 1, 2, 4)
    assert backbone.frozen_stages == 3 and backbone.norm_eval
    assert backbone.norm_cfg == dict(type='BN', requires_grad=False)
    assert head.type == 'DeepLabV2Head' and head.in_channels == 2048
    assert head.dilations == (6, 12, 18, 24) and head.num_classes == 21
    assert cfg.model.get('auxiliary_head') is None
    # 321x321 crops, random scale 0.5-1.5, flip
    assert cfg.crop_size == (321, 321)
    assert cfg.model.data_preprocessor.size == (321, 321)
    for dataset in cfg.train_dataloader.dataset.datasets:
        steps = {t.type: t for t in dataset.pipeline}
        assert steps['RandomResize'].ratio_range == (0.5, 1.5)
        assert steps['RandomCrop'].crop_size == (321, 321)
        assert steps['RandomFlip'].prob == 0.5
        assert 'PhotoMetricDistortion' not in steps
    assert [d.ann_file for d in cfg.train_dataloader.dataset.datasets] == [
        'ImageSets/Segmentation/train.txt', 'ImageSets/Segmentation/aug.txt'
    ]
    assert cfg.test_dataloader.dataset.ann_file == (
        'ImageSets/Segmentation/val.txt')
    # 8 GPUs x 1 image, lr and length rescaled from batch 10 / 2.5e-4 / 20k
    assert cfg.train_dataloader.batch_size * 8 == 8
    optimizer = cfg.optim_wrapper.optimizer
    assert optimizer.type == 'SGD' and optimizer.momentum == 0.9
    assert optimizer.weight_decay == 5e-4
    assert optimizer.lr == pytest.approx(2.5e-4 * 8 / 10)
    assert cfg.train_cfg.max_iters * 8 == 20000 * 10
    # --auto-scale-lr on 5 GPUs x 2 images gives the recipe's 2.5e-4
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=8)
    assert optimizer.lr * (5 * 2) / cfg.auto_scale_lr.base_batch_size == \
        pytest.approx(2.5e-4)
    [poly] = cfg.param_scheduler
    assert poly.type == 'PolyLR' and poly.power == 0.9
    assert poly.eta_min == 0 and 'end' not in poly
    # mIoU and mean accuracy on VOC 2012 val, scored by 321x321 windows
    for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
        assert evaluator.type == 'IoUMetric'
        assert evaluator.iou_metrics == ['mIoU']
    assert cfg.model.test_cfg == dict(mode='slide', crop_size=(321, 321),
                                      stride=(214, 214))
    # no absolute paths
    assert not osp.isabs(cfg.train_dataloader.dataset.datasets[0].data_root)


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_blocks_sit_in_stage4_after_conv3(path):
    cfg = _config(path)
    expected = BLOCK_OF[_variant(path)]
    plugins = cfg.model.backbone.get('plugins')
    if expected is None:
        assert not plugins
        return
    assert [p.cfg.type for p in plugins] == [expected]
    assert plugins[0].stages == (False, False, False, True)
    assert plugins[0].position == 'after_conv3'
    for key in ('grid_size', ):
        size = plugins[0].cfg.get(key)
        if size is not None:
            # the stage-4 map of a 321x321 crop (or window): never resized
            assert size in (41, (41, 41)), f'{key}={size}'


def test_stage4_map_of_a_window_is_41():
    from mmseg.registry import MODELS
    cfg = _config(CONFIGS[0])
    backbone = cfg.model.backbone
    backbone.update(depth=50, base_channels=8, stem_channels=8, init_cfg=None)
    model = MODELS.build(backbone)
    model.eval()  # mmseg ResNet.train() returns None
    with torch.no_grad():
        [feat] = model(torch.zeros(1, 3, 321, 321))
    assert feat.shape[-2:] == (41, 41) == tuple(cfg.stage4_size)


def _build_shrunk(path):
    from mmseg.registry import MODELS
    cfg = shrink_config(_config(path))
    model = MODELS.build(cfg.model)
    model.init_weights()
    return cfg, model


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_shrunk_model_loss_and_predict_steps(path):
    cfg, model = _build_shrunk(path)
    model.train()
    batch = fake_batch(cfg)
    data = model.data_preprocessor(batch, True)
    assert data['inputs'].shape[-2:] == (64, 64)  # padded to the crop
    losses = model(**data, mode='loss')
    loss, _ = model.parse_losses(losses)
    assert torch.isfinite(loss)
    loss.backward()
    backbone = model.backbone
    for module in (backbone.stem, backbone.layer1, backbone.layer2,
                   backbone.layer3):
        assert not any(p.requires_grad for p in module.parameters())
    expected = BLOCK_OF[_variant(path)]
    blocks = [m for m in backbone.layer4.modules()
              if type(m).__name__ == expected]
    assert len(blocks) == (0 if expected is None else 3)
    for block in blocks:
        params = list(block.named_parameters())
        assert params and all(p.requires_grad for _, p in params)
        for name, p in params:
            assert p.grad is not None, f'{expected}.{name} got no gradient'
            assert torch.isfinite(p.grad).all()
    for name, p in model.decode_head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name

    model.eval()
    with torch.no_grad():
        results = model.val_step(fake_batch(cfg))
    assert len(results) == 2
    for result in results:
        assert result.pred_sem_seg.data.shape == (1, 61, 63)
        assert result.seg_logits.data.shape == (21, 61, 63)


def test_classifier_learning_rates():
    from mmengine.optim import build_optim_wrapper
    cfg, model = _build_shrunk(CONFIGS[0])
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    base_lr, base_wd = 2e-4, 5e-4
    group_of = {}
    for group in wrapper.optimizer.param_groups:
        for p in group['params']:
            group_of[p] = group
    trainable = [(n, p) for n, p in model.named_parameters()
                 if p.requires_grad]
    assert {n for n, _ in trainable} == {n for n, p in trainable
                                         if p in group_of}
    for name, p in trainable:
        group = group_of[p]
        if name.startswith('decode_head.') and name.endswith('.weight'):
            assert group['lr'] == pytest.approx(10 * base_lr), name
            assert group['weight_decay'] == pytest.approx(base_wd), name
        elif name.startswith('decode_head.'):
            assert group['lr'] == pytest.approx(20 * base_lr), name
            assert group['weight_decay'] == 0, name
        else:
            assert group['lr'] == pytest.approx(base_lr), name


def test_quickstart_fragment_is_small_and_download_free():
    from mmseg.registry import MODELS
    path = osp.join(ROOT, 'configs', '_base_',
                    'deeplabv2_quickstart_synthetic.py')
    cfg = _config(path)
    assert cfg.model.backbone.init_cfg is None
    assert cfg.model.decode_head.type == 'DeepLabV2Head'
    assert cfg.model.backbone.frozen_stages == 3
    [dataset] = cfg.train_dataloader.dataset.datasets
    assert not osp.isabs(dataset.data_root)
    assert cfg.test_dataloader.dataset.data_root == dataset.data_root
    model = MODELS.build(cfg.model)
    model.eval()
    with torch.no_grad():
        [feat] = model.backbone(torch.zeros(1, 3, *cfg.crop_size))
        scores = model.decode_head([feat])
    # a C3 variant of the quickstart uses grid_size=(16, 16)
    assert feat.shape[1:] == (cfg.model.decode_head.in_channels, 16, 16)
    assert tuple(cfg.stage4_size) == (16, 16)
    assert scores.shape == (1, 21, 16, 16)
