"""End to end: dist_train.sh (2 CPU processes, gloo) -> test.py -> --resume.

A shrunk quickstart C3 detector (configs/quickstart/) trains for two
iterations on generated COCO data with the real torchrun launcher; its
checkpoint is evaluated by tools/test.py (upstream CocoMetric) and training
then resumes from it.
"""
import os.path as osp
import re
import sys

from ._run import TOOLS, coco_quickstart_config, free_port, generate, run


def _coco_config(tmp_path, data_root) -> str:
    """The quickstart C3 config on the generated COCO split, 2 iterations."""
    text = coco_quickstart_config(data_root) + '''
val_dataloader = dict(
    batch_size=1,
    dataset=dict(
        _delete_=True, type='CocoDataset', data_root=data_root,
        metainfo=metainfo, ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'), test_mode=True,
        pipeline=_base_.test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(
    _delete_=True, type='CocoMetric', metric='bbox',
    ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
train_cfg = dict(max_iters=2, val_interval=1000)
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=2, by_epoch=False))
'''
    path = tmp_path / 'tiny_c3_coco.py'
    path.write_text(text)
    return str(path)


def test_dist_train_then_test_then_resume(tmp_path):
    data = tmp_path / 'data'
    generate(data, '--formats', 'coco', '--num-train', 4, '--num-val', 2,
             '--size', 96, 80, '--seed', 1)
    cfg = _coco_config(tmp_path, data / 'coco')
    work = tmp_path / 'work'

    _, out = run(['bash', osp.join(TOOLS, 'dist_train.sh'), cfg, '2',
                  '--work-dir', str(work)], cwd=tmp_path, PORT=free_port())
    assert 'Distributed training: True' in out
    assert re.search(r"dist_cfg.*'backend': 'gloo'", out), out[-3000:]
    assert 'Iter(train) [2/2]' in out
    ckpt = work / 'iter_2.pth'
    assert ckpt.is_file()

    _, out = run([sys.executable, osp.join(TOOLS, 'test.py'), cfg, str(ckpt),
                  '--work-dir', str(tmp_path / 'test'),
                  '--out', str(tmp_path / 'preds.pkl')], cwd=tmp_path)
    assert 'Load checkpoint from' in out
    assert re.search(r'coco/bbox_mAP: (-?\d+\.\d+)', out), out[-3000:]
    assert (tmp_path / 'preds.pkl').is_file()

    _, out = run([sys.executable, osp.join(TOOLS, 'train.py'), cfg,
                  '--work-dir', str(work), '--resume', str(ckpt),
                  '--cfg-options', 'train_cfg.max_iters=3'], cwd=tmp_path)
    assert re.search(r'resumed epoch: \d+, iter: 2', out), out[-3000:]
    assert 'Iter(train) [3/3]' in out
    assert 'Iter(train) [1/3]' not in out
    assert (work / 'iter_3.pth').is_file()
