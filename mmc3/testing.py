"""Helpers shared by the tests and the benchmarks (as ``mmdet.testing``):
config surgery that keeps a model offline, synthetic detection batches and
the machine's memory bandwidth and sgemm rate.

Nothing here imports a codebase at module level: ``import mmc3.testing``
needs torch only; :func:`det_fake_batch` imports mmdet when called.
"""
import statistics
import time
from typing import Any, Dict, Sequence, Tuple


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


def machine_rates(repeats: int = 5) -> Dict[str, float]:
    """The CPU's memory bandwidth and float32 matrix-product rate, measured
    now (benchmarks print them beside their timings, from the same run).

    Returns:
        dict: ``bandwidth`` in GB/s (copy of a 256 MiB float32 tensor into
        another, counting the read and the write) and ``sgemm`` in GFLOP/s
        (a 2048 x 2048 x 2048 product, 2 flops per multiply-add); medians
        of ``repeats`` after one untimed run.
    """
    import torch
    a = torch.randn(1 << 26)
    b = torch.empty_like(a)
    m1, m2 = torch.randn(2048, 2048), torch.randn(2048, 2048)

    def median_time(fn) -> float:
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    copy = median_time(lambda: b.copy_(a))
    gemm = median_time(lambda: torch.mm(m1, m2))
    return dict(bandwidth=2 * a.numel() * 4 / copy / 1e9,
                sgemm=2 * 2048**3 / gemm / 1e9)


#: glibc ``mallopt`` parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory() -> bool:
    """Make glibc's allocator keep and reuse freed memory, as PyTorch's
    CUDA caching allocator does on a GPU, instead of returning every large
    block to the system and taking it back page by page.

    By default glibc serves blocks above a dynamic threshold (at most
    32 MiB) with ``mmap`` and unmaps them when freed, so every new tensor of
    that size is faulted in page by page on first touch. On some virtual
    machines that costs more than the arithmetic of the block being timed
    (seen here: a fresh 51 MiB output took 13 ms to fill against 3.4 ms for
    a reused one), and the threshold moves with what ran before, so
    timings depend on the process's history. After this call freed blocks
    stay in the process (its resident memory does not shrink) and are
    served again from the heap. Trimming is disabled outright
    (``M_TRIM_THRESHOLD = -1``, mallopt(3)): with the largest finite
    threshold (2 GiB) a detector iteration whose freed memory coalesced
    into more than 2 GiB at the heap's top still handed it back, and the
    next iteration faulted 1-2.5 GiB in again. Call it before the first
    large allocation;
    it affects the whole process.

    Returns:
        bool: Whether glibc accepted both settings (False elsewhere).
    """
    import ctypes
    try:
        libc = ctypes.CDLL('libc.so.6')
        big = ctypes.c_int(2**30)  # 1 GiB: the largest threshold glibc takes
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, big)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(-1)))
    except (OSError, AttributeError):
        return False


def add_allocator_argument(parser) -> None:
    """The benchmarks' ``--allocator`` flag (see :func:`use_allocator`)."""
    parser.add_argument(
        '--allocator', choices=('system', 'cached'), default='system',
        help="'system': glibc as configured (large tensors mmapped and "
        "faulted in page by page); 'cached': freed memory kept and reused, "
        'as the CUDA caching allocator does on a GPU '
        '(mmc3.testing.keep_freed_memory)')


def use_allocator(choice: str) -> None:
    """Apply an ``--allocator`` choice; 'cached' without glibc exits."""
    if choice == 'cached' and not keep_freed_memory():
        raise SystemExit('--allocator cached needs glibc')
