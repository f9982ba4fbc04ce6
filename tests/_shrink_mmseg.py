"""Shrink an mmseg config to a CPU-sized model and fake a batch for it.

Used by the config tests (every ``configs/*.py`` whose model is an mmseg
segmentor): ``shrink_config`` keeps the architecture (stages, strides,
dilations, plugins and their positions, head type) and shrinks the widths,
the depth, the crop and the block grids; ``fake_batch`` builds the input that a
dataloader would hand to ``model.train_step`` / ``model.val_step``.
"""
import copy
import math
from typing import Tuple

import torch

BASE_CHANNELS = 8
CROP = (64, 64)
_NUM_IMAGES = 2
# keys of plugin cfgs that hold the spatial size a block expects
_SIZE_KEYS = ('grid_size', )


def _stage_channels(backbone: dict, stage: int) -> int:
    """Output channels of ResNet ``stage`` (0-based) after shrinking."""
    expansion = 4 if backbone.get('depth', 50) >= 50 else 1
    return BASE_CHANNELS * 2**stage * expansion


def _stage4_size(backbone: dict, crop: Tuple[int, int]) -> Tuple[int, int]:
    """Spatial size of the last stage's output for a ``crop`` input."""
    strides = backbone.get('strides', (1, 2, 2, 2))
    size = []
    for length in crop:
        length = math.ceil(length / 2)  # stem conv, stride 2
        length = math.ceil(length / 2)  # max pooling, stride 2
        for stride in strides:
            length = math.ceil(length / stride)
        size.append(length)
    return tuple(size)


def _shrink_head(head: dict, backbone: dict) -> None:
    out_indices = tuple(backbone.get('out_indices', (0, 1, 2, 3)))
    in_index = head.get('in_index', -1)
    if isinstance(in_index, int):
        head['in_channels'] = _stage_channels(backbone,
                                              out_indices[in_index])
    else:
        head['in_channels'] = [
            _stage_channels(backbone, out_indices[i]) for i in in_index
        ]
    if 'channels' in head:
        head['channels'] = 16
    head['init_cfg'] = None


def shrink_config(cfg):
    """Return a copy of ``cfg`` with a tiny, download-free segmentor.

    ``base_channels=8`` (heads' ``in_channels`` to match), ResNet-101/152
    cut to 50 (same stages, fewer stage-3 blocks), no pretrained or
    initialisation checkpoints, a 64x64 crop and sliding window, and every
    plugin's ``grid_size`` set to the shrunk stage-4 size (so
    a block that expects the training map size still gets it).
    """
    cfg = copy.deepcopy(cfg)
    model = cfg.model
    model['pretrained'] = None
    backbone = model.backbone
    if backbone.get('depth', 50) > 50:
        backbone['depth'] = 50  # deeper ResNets only repeat stage-3 blocks
    backbone.update(
        base_channels=BASE_CHANNELS,
        stem_channels=BASE_CHANNELS,
        init_cfg=None,
        pretrained=None)
    grid = _stage4_size(backbone, CROP)
    for plugin in backbone.get('plugins') or []:
        for key in _SIZE_KEYS:
            if plugin['cfg'].get(key) is not None:
                plugin['cfg'][key] = grid
    heads = [model.decode_head]
    if model.get('auxiliary_head'):
        aux = model.auxiliary_head
        heads += aux if isinstance(aux, list) else [aux]
    for head in heads:
        _shrink_head(head, backbone)

    preprocessor = model.get('data_preprocessor') or cfg.get(
        'data_preprocessor')
    if preprocessor is not None:
        preprocessor['size'] = CROP
        if preprocessor.get('test_cfg') and 'size' in preprocessor.test_cfg:
            preprocessor.test_cfg['size'] = CROP
    test_cfg = model.get('test_cfg') or {}
    if test_cfg.get('mode') == 'slide':
        test_cfg['crop_size'] = CROP
        test_cfg['stride'] = tuple(2 * c // 3 for c in CROP)
    return cfg


def fake_batch(cfg) -> dict:
    """A batch as the dataloader yields it: two uint8 ``(3, H, W)`` images
    (slightly smaller than the crop, so padding is exercised) with
    ``SegDataSample``s holding a ``gt_sem_seg`` (some pixels ignored) and
    the metainfo the segmentor needs."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    num_classes = cfg.model.decode_head.num_classes
    ignore = cfg.model.decode_head.get('ignore_index', 255)
    height, width = CROP[0] - 3, CROP[1] - 1
    inputs, samples = [], []
    for _ in range(_NUM_IMAGES):
        inputs.append(torch.randint(0, 256, (3, height, width),
                                    dtype=torch.uint8))
        label = torch.randint(0, num_classes, (1, height, width))
        label[:, :2, :] = ignore
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(data=label)
        sample.set_metainfo(
            dict(img_shape=(height, width), ori_shape=(height, width),
                 pad_shape=(height, width), scale_factor=(1.0, 1.0),
                 flip=False, flip_direction=None,
                 img_path='fake.jpg', seg_map_path='fake.png',
                 reduce_zero_label=False))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)
