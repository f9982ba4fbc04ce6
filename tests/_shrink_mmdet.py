"""Shrink an mmdet two-stage detector config for CPU tests, and fake a batch.

The config-glob test (``tests/configs/test_every_config.py``) dispatches on a config's
``default_scope`` to ``tests/_shrink_<scope>.py``; every such module exports

- ``shrink_config(cfg) -> cfg``: a copy whose model builds and runs in about a
  second on a CPU without downloads, keeping the architecture's structure
  (hosts, plugin types and positions, frozen stages, norm_eval);
- ``fake_batch(cfg) -> dict``: a tiny synthetic ``dict(inputs=[...],
  data_samples=[...])`` for ``model.train_step`` / ``model.test_step``.

What shrinking does here: ResNet widths from ``base_channels=8`` (shared head
too) and at most 50 layers (stage 4 keeps its 3 bottlenecks), every
``Pretrained`` init dropped, necks/heads narrowed to match, few proposals
and sampled RoIs. Spatial sizes that blocks depend on (14x14 RoIAlign -> 7x7
stage-4 maps) are kept. Unknown model layouts raise instead of being
silently half-shrunk.
"""
import copy
from typing import Any, List, Optional

from mmc3.testing import det_fake_batch, drop_pretrained

BASE_CHANNELS = 8
NECK_CHANNELS = 16
HEAD_CHANNELS = 16
FC_CHANNELS = 32
NUM_PROPOSALS = 16
NUM_SAMPLED_ROIS = 16
NUM_RPN_SAMPLES = 32
IMAGE_SHAPES = ((96, 80), (80, 112))  # (h, w) of the two images, non-square
_BOTTLENECK_DEPTHS = (50, 101, 152)


def _shrink_depth(depth: int) -> int:
    """Deep bottleneck ResNets become ResNet-50 (same stage-4 block count)."""
    return 50 if depth in _BOTTLENECK_DEPTHS else depth


def _expansion(depth: int) -> int:
    return 4 if depth in _BOTTLENECK_DEPTHS else 1


def _shrink_backbone(backbone: dict) -> List[int]:
    """Shrink a ResNet backbone in place; return its output channels."""
    if 'ResNet' not in backbone.get('type', ''):
        raise NotImplementedError(
            f"_shrink_mmdet: no rule for backbone {backbone.get('type')!r}")
    depth = backbone['depth']
    backbone['depth'] = _shrink_depth(depth)
    backbone['base_channels'] = BASE_CHANNELS
    backbone.pop('stem_channels', None)
    num_stages = backbone.get('num_stages', 4)
    out_indices = backbone.get('out_indices', tuple(range(num_stages)))
    return [
        BASE_CHANNELS * 2**i * _expansion(depth) for i in out_indices
    ]


def _shrink_shared_head(head: dict) -> int:
    """Shrink a RoI shared head (one ResNet stage); return its width."""
    if head.get('type') == 'ResLayer':
        raise NotImplementedError(
            "_shrink_mmdet: mmdet's ResLayer shared head has a fixed width "
            '64; use PluginResLayer (base_channels) to shrink it')
    depth = head['depth']
    head['depth'] = _shrink_depth(depth)
    head['base_channels'] = BASE_CHANNELS
    return BASE_CHANNELS * 2**head.get('stage', 3) * _expansion(depth)


def _set_if_present(cfg: Optional[dict], key: str, value: Any) -> None:
    if cfg is not None and key in cfg:
        cfg[key] = value


def _shrink_train_test_cfg(model: dict) -> None:
    train_cfg = model.get('train_cfg') or {}
    test_cfg = model.get('test_cfg') or {}
    rpn = train_cfg.get('rpn')
    if rpn is not None and 'sampler' in rpn:
        rpn['sampler']['num'] = NUM_RPN_SAMPLES
    for proposal in (train_cfg.get('rpn_proposal'), test_cfg.get('rpn')):
        _set_if_present(proposal, 'nms_pre', 4 * NUM_PROPOSALS)
        _set_if_present(proposal, 'max_per_img', NUM_PROPOSALS)
        _set_if_present(proposal, 'max_num', NUM_PROPOSALS)
    rcnn = train_cfg.get('rcnn')
    for stage in (rcnn if isinstance(rcnn, (list, tuple)) else [rcnn]):
        if stage is not None and 'sampler' in stage:
            stage['sampler']['num'] = NUM_SAMPLED_ROIS
    _set_if_present(test_cfg.get('rcnn'), 'max_per_img', 10)


def shrink_config(cfg):
    """Return a shrunk deep copy of an mmdet two-stage detector config."""
    cfg = copy.deepcopy(cfg)
    model = cfg.model
    drop_pretrained(model)
    feats = _shrink_backbone(model['backbone'])

    neck = model.get('neck')
    if neck is not None:
        if neck.get('type') != 'FPN':
            raise NotImplementedError(
                f"_shrink_mmdet: no rule for neck {neck.get('type')!r}")
        neck['in_channels'] = feats
        neck['out_channels'] = NECK_CHANNELS
        roi_in = NECK_CHANNELS
    else:
        roi_in = feats[-1]

    rpn_head = model.get('rpn_head')
    roi_head = model.get('roi_head')
    if rpn_head is None or roi_head is None:
        raise NotImplementedError(
            '_shrink_mmdet: only two-stage detectors (rpn_head + roi_head) '
            f"are handled, got {model.get('type')!r}")
    rpn_head['in_channels'] = roi_in
    rpn_head['feat_channels'] = HEAD_CHANNELS

    head_in = roi_in
    if roi_head.get('shared_head') is not None:
        head_in = _shrink_shared_head(roi_head['shared_head'])
    roi_head['bbox_roi_extractor']['out_channels'] = roi_in
    bbox_head = roi_head['bbox_head']
    bbox_head['in_channels'] = head_in
    _set_if_present(bbox_head, 'fc_out_channels', FC_CHANNELS)
    _set_if_present(bbox_head, 'conv_out_channels', HEAD_CHANNELS)
    if roi_head.get('mask_head') is not None:
        mask_extractor = roi_head.get('mask_roi_extractor')
        if mask_extractor is not None:
            mask_extractor['out_channels'] = roi_in
            roi_head['mask_head']['in_channels'] = roi_in
        else:  # shares the bbox RoI features (after the shared head)
            roi_head['mask_head']['in_channels'] = head_in
        roi_head['mask_head']['conv_out_channels'] = HEAD_CHANNELS
    _shrink_train_test_cfg(model)
    return cfg


def _num_classes(cfg) -> int:
    return int(cfg.model['roi_head']['bbox_head']['num_classes'])


def _with_mask(cfg) -> bool:
    return cfg.model['roi_head'].get('mask_head') is not None


def fake_batch(cfg, num_boxes: int = 3) -> dict:
    """Two small uint8 images with random boxes (and box-shaped masks)."""
    return det_fake_batch(IMAGE_SHAPES, _num_classes(cfg), num_boxes,
                          with_mask=_with_mask(cfg))
