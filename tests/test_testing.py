"""mmc3.testing: the helpers the tests and the benchmarks share."""
import os
from pathlib import Path

import torch

from mmc3.testing import det_fake_batch, drop_pretrained, set_block_key


def test_drop_pretrained_everywhere_in_a_tree():
    cfg = dict(backbone=dict(init_cfg=dict(type='Pretrained', checkpoint='x')),
               heads=[dict(pretrained='y.pth'),
                      dict(init_cfg=[dict(type='Kaiming'),
                                     dict(type='Pretrained')])],
               keep=dict(init_cfg=dict(type='Kaiming')))
    drop_pretrained(cfg)
    assert cfg['backbone']['init_cfg'] is None
    assert cfg['heads'][0]['pretrained'] is None
    assert cfg['heads'][1]['init_cfg'] is None
    assert cfg['keep']['init_cfg'] == dict(type='Kaiming')


def test_set_block_key_counts_what_it_set():
    cfg = dict(a=dict(type='C3Block'), b=[dict(type='C3Block'),
                                          dict(type='SEBlock')])
    assert set_block_key(cfg, 'C3Block', 'message_impl', 'dense') == 2
    assert cfg['b'][1] == dict(type='SEBlock')
    assert cfg['a']['message_impl'] == 'dense'


def test_det_fake_batch_boxes_fit_and_repeat():
    a = det_fake_batch([(40, 64), (64, 48)], num_classes=5, num_boxes=6,
                       with_mask=True, min_box=8)
    b = det_fake_batch([(40, 64), (64, 48)], num_classes=5, num_boxes=6,
                       with_mask=True, min_box=8)
    for img, sample, again in zip(a['inputs'], a['data_samples'],
                                  b['data_samples']):
        h, w = img.shape[1:]
        boxes = sample.gt_instances.bboxes
        assert img.dtype == torch.uint8 and sample.img_shape == (h, w)
        assert (boxes[:, 2:] - boxes[:, :2] >= 8).all()
        assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
        assert ((sample.gt_instances.labels >= 0) &
                (sample.gt_instances.labels < 5)).all()
        masks = sample.gt_instances.masks.to_ndarray()
        assert masks.shape == (6, h, w) and masks.any(axis=(1, 2)).all()
        assert torch.equal(boxes, again.gt_instances.bboxes)


def test_machine_rates_are_positive_numbers():
    from mmc3.testing import machine_rates
    rates = machine_rates(repeats=1)
    assert set(rates) == {'bandwidth', 'sgemm'}
    assert all(v > 0 for v in rates.values())


def _rss_after_free(keep: bool, count: int = 1,
                    floats: int = 1 << 24) -> tuple:
    """In a child (the settings last for the process): whether glibc took
    them, and how much of ``count`` freed tensors of ``floats`` float32
    each the process still holds."""
    import subprocess
    import sys
    code = (
        'import torch, mmc3.testing as t\n'
        f'ok = t.keep_freed_memory() if {keep} else True\n'
        'def rss():\n'
        '    return int([l for l in open("/proc/self/status")\n'
        '                if l.startswith("VmRSS")][0].split()[1])\n'
        'before = rss()\n'
        f'a = [torch.ones({floats}) for _ in range({count})]; del a\n'
        'print(ok, rss() - before)\n')
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, timeout=120, cwd=root,
                         env=dict(os.environ, PYTHONPATH=root))
    assert out.returncode == 0, out.stderr
    ok, held = out.stdout.split()
    return ok == 'True', int(held)


def test_keep_freed_memory_keeps_a_freed_large_tensor():
    """By default glibc unmaps a freed 64 MiB block at once (the memory
    leaves the process); after keep_freed_memory() it stays for reuse."""
    ok, held = _rss_after_free(keep=True)
    assert ok and held >= 48 * 1024  # KiB
    ok, held = _rss_after_free(keep=False)
    assert held < 16 * 1024


def test_keep_freed_memory_keeps_more_than_2_gib_freed_at_once():
    """Twelve 256 MiB tensors freed together coalesce into 3 GiB at the
    heap's top; glibc's largest finite trim threshold (2 GiB) would hand
    it back, so trimming must be off, not merely high."""
    ok, held = _rss_after_free(keep=True, count=12, floats=1 << 26)
    assert ok and held >= int(2.75 * 1024 * 1024)  # KiB
