"""Helpers shared by the tests and the benchmarks (as ``mmdet.testing``):
config surgery that keeps a model offline and synthetic detection batches.

Nothing here imports a codebase at module level: ``import mmc3.testing``
needs torch only; :func:`det_fake_batch` imports mmdet when called.
"""
from typing import Any, Sequence, Tuple


def drop_pretrained(node: Any) -> None:
    """Set every ``Pretrained`` ``init_cfg`` (and every ``pretrained``) in a
    config tree to None, in place, so that building needs no download."""
    if isinstance(node, dict):
        init = node.get('init_cfg')
        inits = init if isinstance(init, (list, tuple)) else [init]
        if any(isinstance(i, dict) and i.get('type') == 'Pretrained'
               for i in inits):
            node['init_cfg'] = None
        if node.get('pretrained') is not None:
            node['pretrained'] = None
        for value in node.values():
            drop_pretrained(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            drop_pretrained(value)


def set_block_key(node: Any, block_type: str, key: str, value: Any) -> int:
    """Set ``key=value`` in every dict of ``type=block_type`` in a config
    tree, in place; return how many were changed."""
    count = 0
    if isinstance(node, dict):
        if node.get('type') == block_type:
            node[key] = value
            count += 1
        for child in node.values():
            count += set_block_key(child, block_type, key, value)
    elif isinstance(node, (list, tuple)):
        for child in node:
            count += set_block_key(child, block_type, key, value)
    return count


def det_fake_batch(image_shapes: Sequence[Tuple[int, int]], num_classes: int,
                   num_boxes: int = 3, with_mask: bool = False,
                   min_box: int = 16, seed: int = 0) -> dict:
    """A detection batch for ``model.train_step``: random uint8 images of
    the given ``(h, w)`` shapes, ``num_boxes`` random boxes per image (at
    least ``min_box`` pixels a side, inside the image) with random labels,
    and box-shaped masks when ``with_mask``. Deterministic for a ``seed``.

    Returns:
        dict: ``inputs`` (list of ``(3, h, w)`` uint8 tensors) and
        ``data_samples`` (mmdet ``DetDataSample``).
    """
    import numpy as np
    import torch
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData

    gen = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for idx, (h, w) in enumerate(image_shapes):
        inputs.append(
            torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=gen))
        sample = DetDataSample(
            metainfo=dict(img_id=idx, img_shape=(h, w), ori_shape=(h, w),
                          scale_factor=(1.0, 1.0), flip=False))
        x1 = torch.randint(0, w // 2, (num_boxes, ), generator=gen).float()
        y1 = torch.randint(0, h // 2, (num_boxes, ), generator=gen).float()
        bw = torch.randint(min_box, w // 2, (num_boxes, ),
                           generator=gen).float()
        bh = torch.randint(min_box, h // 2, (num_boxes, ),
                           generator=gen).float()
        boxes = torch.stack([x1, y1, x1 + bw, y1 + bh], dim=1)
        gt = InstanceData(
            bboxes=boxes,
            labels=torch.randint(0, num_classes, (num_boxes, ),
                                 generator=gen))
        if with_mask:
            masks = np.zeros((num_boxes, h, w), dtype=np.uint8)
            for k, (a, b, c, d) in enumerate(boxes.long().tolist()):
                masks[k, b:d, a:c] = 1
            gt.masks = BitmapMasks(masks, h, w)
        sample.gt_instances = gt
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)
