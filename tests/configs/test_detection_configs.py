"""Whole detectors: the project's C4 configs and an unmodified upstream config.

- Exactly stage 4 (the RoI shared head, with its blocks), the RPN and the RoI
  heads train; stem and stages 1-3 are frozen and get no gradient.
- Configuration mistakes reach the user with a message naming the cause.
- Blocks plug into an mmdet config taken as is from the installed wheel.
"""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmengine.registry import DefaultScope
from torch.nn.modules.batchnorm import _BatchNorm

import mmc3  # noqa: F401
from mmdet.registry import MODELS
from tests._shrink_mmdet import fake_batch, shrink_config

CONFIG_DIR = Path(__file__).resolve().parents[2] / 'configs'
BLOCKS = {
    'baseline': None,
    'se': 'SEBlock',
    'c3': 'C3Block',
    'ce': 'CEBlock',
    'ge': 'GEBlock',
}
# ResNet's own norm layers in a bottleneck (not those inside plugins)
HOST_NORMS = ('bn1', 'bn2', 'bn3', 'downsample.1')


def build(cfg: Config):
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def one_loss_step(model, cfg: Config) -> dict:
    """Forward the loss on a fake batch and backpropagate (no update)."""
    model.train()
    data = model.data_preprocessor(fake_batch(cfg), training=True)
    losses = model(**data, mode='loss')
    loss, log_vars = model.parse_losses(losses)
    loss.backward()
    return log_vars


def is_host_norm(name: str) -> bool:
    """A parameter of the shared head's own (frozen) BNs."""
    if not name.startswith('roi_head.shared_head.'):
        return False
    module = name.rsplit('.', 1)[0]
    return module.endswith(HOST_NORMS)


@pytest.mark.parametrize('block', list(BLOCKS))
def test_exactly_stage4_rpn_and_heads_train(block):
    cfg = shrink_config(
        Config.fromfile(str(CONFIG_DIR / f'faster_rcnn_r101_{block}.py')))
    model = build(cfg)
    one_loss_step(model, cfg)

    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    expected = {
        n for n, _ in model.named_parameters()
        if n.startswith(('rpn_head.', 'roi_head.')) and not is_host_norm(n)
    }
    assert trained == expected
    assert any(n.startswith('roi_head.shared_head.layer4.0.conv1')
               for n in trained)
    for name, p in model.named_parameters():
        if name in expected:
            assert p.grad is not None, f'{name} got no gradient'
            assert torch.isfinite(p.grad).all(), name
            assert p.grad.abs().sum() > 0, f'{name} got a zero gradient'
        else:
            assert p.grad is None, f'frozen {name} got a gradient'

    block_type = BLOCKS[block]
    blocks = [n for n, m in model.named_modules()
              if type(m).__name__ == block_type]
    if block_type is None:
        assert not blocks
    else:  # one per bottleneck of stage 4, all inside the RoI head
        assert len(blocks) == 3
        assert all(n.startswith('roi_head.shared_head.layer4.')
                   for n in blocks)
        block_params = {n for n in trained if '_block.' in n}
        assert block_params
        assert all(n.startswith(tuple(blocks)) for n in block_params)


@pytest.mark.parametrize('name', [
    'faster_rcnn_r101_c3.py', 'faster_rcnn_r101_ce_voc0712.py',
    'mask_rcnn_r101_se_coco.py'
])
def test_frozen_parts_stay_frozen_during_training(name):
    """norm_eval and frozen_stages survive model.train() and a step."""
    cfg = shrink_config(Config.fromfile(str(CONFIG_DIR / name)))
    model = build(cfg)
    norms = {n: m for n, m in model.named_modules()
             if isinstance(m, _BatchNorm)}
    stats = {n: m.running_mean.clone() for n, m in norms.items()}
    frozen = {n: p.detach().clone() for n, p in model.named_parameters()
              if not p.requires_grad}
    model.train()
    optim = OptimWrapper(torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad], lr=0.1))
    model.train_step(fake_batch(cfg), optim)
    assert not any(m.training for m in norms.values())
    for n, m in norms.items():
        torch.testing.assert_close(m.running_mean, stats[n], msg=n)
    params = dict(model.named_parameters())
    for n, old in frozen.items():
        torch.testing.assert_close(params[n].detach(), old, msg=n)
    assert all(not p.requires_grad
               for p in model.backbone.parameters())


@pytest.mark.parametrize('block', list(BLOCKS))
@pytest.mark.parametrize('kind', ['coco', 'voc0712', 'mask'])
def test_recipes_batches_and_weights(block, kind):
    """8 GPUs x 2 images = the recipes' batch 16 at lr 0.02; the CE paper's
    Mask R-CNN schedule; caffe R-101 weights known to mmengine's model zoo
    for the backbone and the stage-4 head."""
    from mmengine.runner.checkpoint import get_external_models
    name = {
        'coco': f'faster_rcnn_r101_{block}.py',
        'voc0712': f'faster_rcnn_r101_{block}_voc0712.py',
        'mask': f'mask_rcnn_r101_{block}_coco.py',
    }[kind]
    cfg = Config.fromfile(str(CONFIG_DIR / name))
    assert cfg.train_dataloader.batch_size * 8 == 16
    assert cfg.optim_wrapper.optimizer.lr == 0.02
    assert cfg.auto_scale_lr.base_batch_size == 16
    zoo = get_external_models()
    for init in (cfg.model.backbone.init_cfg,
                 cfg.model.roi_head.shared_head.init_cfg):
        assert init.checkpoint == 'open-mmlab://detectron2/resnet101_caffe'
        assert init.checkpoint[len('open-mmlab://'):] in zoo
    steps = [s for s in cfg.param_scheduler if s.type == 'MultiStepLR']
    assert len(steps) == 1
    if kind == 'mask':
        assert cfg.train_cfg.max_epochs == 24
        assert steps[0].by_epoch and steps[0].milestones == [16, 22]
    elif kind == 'coco':
        assert cfg.train_cfg.max_epochs == 12
        assert steps[0].milestones == [8, 11]
    else:
        assert cfg.train_cfg.max_iters == 18000
        assert steps[0].milestones == [12000, 16000]


def test_unknown_block_type_in_a_config_names_it():
    cfg = shrink_config(
        Config.fromfile(str(CONFIG_DIR / 'faster_rcnn_r101_c3.py')))
    cfg.model.roi_head.shared_head.plugins[0].cfg.type = 'C3Blok'
    with pytest.raises(KeyError) as info:
        build(cfg)
    message = str(info.value)
    assert "'C3Blok'" in message
    assert "custom_imports=dict(imports=['mmc3']" in message


@pytest.mark.parametrize('option,error,match', [
    (dict(grid_size=0), ValueError, r'C3Block: grid_size'),
    (dict(ratio='eight'), TypeError, r'C3Block: ratio'),
    (dict(no_such_option=True), TypeError, r'no_such_option'),
])
def test_a_wrong_block_option_surfaces_the_block_error(option, error, match):
    cfg = shrink_config(
        Config.fromfile(str(CONFIG_DIR / 'faster_rcnn_r101_c3.py')))
    cfg.model.roi_head.shared_head.plugins[0].cfg.update(option)
    with pytest.raises(error, match=match):
        build(cfg)


# --- an unmodified upstream config --------------------------------------

UPSTREAM = 'faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
# What a user puts in their own config (README): blocks after conv3 of every
# bottleneck of backbone stage 4. Stage 4 of an FPN backbone sees maps of any
# size, so the fixed-size blocks are configured for that: C3 resizes to its
# grid and back, GE uses the parameter-free global gather.
USER_BLOCKS = {
    'SEBlock': dict(type='SEBlock'),
    'C3Block': dict(type='C3Block', grid_size=7),
    'CEBlock': dict(type='CEBlock'),
    'GEBlock': dict(type='GEBlock', variant='theta-', extent='global'),
}


def upstream_config_path() -> Path:
    import mmdet
    path = Path(mmdet.__file__).parent / '.mim' / 'configs' / UPSTREAM
    assert path.is_file(), f'{path} is not in the installed mmdet wheel'
    return path


def check_backbone_blocks(model, block_type: str) -> None:
    names = [n for n, m in model.named_modules()
             if type(m).__name__ == block_type]
    assert len(names) == 3  # R-50 stage 4 has 3 bottlenecks
    assert all(n.startswith('backbone.layer4.') for n in names)
    # Connected to the loss: every block parameter has a finite gradient.
    # (Not necessarily non-zero: mmdet's ResNet zero-initialises the BN
    # before after_conv3, so a gate sees an all-zero input at step 0.)
    for n in names:
        for pname, p in model.get_submodule(n).named_parameters():
            assert p.grad is not None, f'{n}.{pname} got no gradient'
            assert torch.isfinite(p.grad).all(), f'{n}.{pname}'


@pytest.mark.parametrize('block_type', list(USER_BLOCKS))
def test_blocks_plug_into_an_unmodified_upstream_config(block_type):
    """The wheel's config file as is, plus custom_imports and backbone
    plugins merged in."""
    cfg = Config.fromfile(str(upstream_config_path()))
    assert 'plugins' not in cfg.model.backbone
    cfg.merge_from_dict(
        dict(
            custom_imports=dict(imports=['mmc3'], allow_failed_imports=False),
            model=dict(
                backbone=dict(plugins=[
                    dict(
                        cfg=USER_BLOCKS[block_type],
                        stages=(False, False, False, True),
                        position='after_conv3')
                ]))))
    cfg = shrink_config(cfg)
    model = build(cfg)
    log_vars = one_loss_step(model, cfg)
    assert torch.isfinite(torch.tensor(float(log_vars['loss'])))
    check_backbone_blocks(model, block_type)


def readme_snippet() -> str:
    """The config snippet under the README's "Adding a block" heading."""
    readme = Path(__file__).resolve().parents[2] / 'README.md'
    text = readme.read_text()
    section = text[text.index('## Adding a block to any mmdet'):]
    start = section.index('```python\n') + len('```python\n')
    return section[start:section.index('```', start)]


def test_readme_snippet_builds_and_trains(tmp_path):
    """The user-facing snippet, written to a file and loaded like any
    config (custom_imports processed by Config.fromfile)."""
    path = tmp_path / 'my_faster_rcnn_c3.py'
    path.write_text(readme_snippet())
    cfg = shrink_config(Config.fromfile(str(path)))
    model = build(cfg)
    one_loss_step(model, cfg)
    check_backbone_blocks(model, 'C3Block')
