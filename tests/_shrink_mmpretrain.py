"""Shrink an mmpretrain config to a CPU-sized classifier and fake a batch.

Used by the config tests (every ``configs/*.py`` whose ``default_scope`` is
``mmpretrain``): ``shrink_config`` keeps the architecture kind (host type,
block kind, plugins, their positions and stage masks) and shrinks the
widths and depths: CIFAR ResNets to depth 20, Wide-ResNets to WRN-16-2,
ImageNet ResNets/ResNeXts to 8 base channels (ResNet-101 to 50),
MobileNetV2 to width 0.25, ImageNet images to 64x64 (C3 grids larger than
the maps they then see are resized, as documented). ``fake_batch`` builds
what a dataloader hands to ``model.train_step``.
"""
import copy

import torch

IMAGENET_SIZE = 64
CIFAR_SIZE = 32
_NUM_IMAGES = 2


def _is_cifar(backbone: dict) -> bool:
    return str(backbone.get('type', '')).startswith('Cifar')


def shrink_config(cfg):
    """Return a copy of ``cfg`` with a tiny, download-free classifier."""
    from mmc3.testing import drop_pretrained
    small = copy.deepcopy(cfg)
    drop_pretrained(small.model)
    backbone = small.model.backbone
    head = small.model.head
    kind = backbone.get('type')
    if kind == 'CifarResNet':
        backbone['depth'] = 20
    elif kind == 'CifarWideResNet':
        backbone.update(depth=16, widen_factor=2)
        head['in_channels'] = 64 * 2
    elif kind in ('PluginResNet', 'PluginResNeXt'):
        depth = min(backbone.get('depth', 50), 50)
        backbone.update(depth=depth, stem_channels=8, base_channels=8)
        expansion = 1 if depth < 50 else 4
        head['in_channels'] = 8 * 8 * expansion
        if kind == 'PluginResNeXt':  # keep 4 groups, narrow them
            backbone['width_per_group'] = 2
    elif kind == 'PluginMobileNetV2':
        backbone['widen_factor'] = 0.25
    else:
        raise ValueError(f'no shrinking rule for backbone {kind!r}')
    small.model.backbone = backbone
    return small


def image_size(cfg) -> int:
    return CIFAR_SIZE if _is_cifar(cfg.model.backbone) else IMAGENET_SIZE


def fake_batch(cfg) -> dict:
    """Random uint8-range images and labels, as a dataloader yields them."""
    from mmpretrain.structures import DataSample
    size = image_size(cfg)
    num_classes = cfg.model.head.num_classes
    gen = torch.Generator().manual_seed(0)
    inputs = [torch.randint(0, 256, (3, size, size), generator=gen,
                            dtype=torch.uint8) for _ in range(_NUM_IMAGES)]
    samples = [DataSample().set_gt_label(i % num_classes)
               for i in range(_NUM_IMAGES)]
    return dict(inputs=inputs, data_samples=samples)
