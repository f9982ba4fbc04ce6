"""End to end: DeepLab-v2 + C3 trained and evaluated by the real launchers.

Generates a tiny Pascal VOC 2012 segmentation set, trains a shrunk
``configs/deeplabv2_r101_c3_voc12aug.py`` for a few iterations with
``tools/dist_train.sh CFG 2`` (two CPU processes, real DDP over gloo), then
scores the checkpoint with ``tools/dist_test.sh`` and checks that mIoU and
mean accuracy are reported as percentages.
"""
import glob
import math
import os
import os.path as osp
import re
import socket
import subprocess
import sys

import torch
from mmengine.config import Config

from tests._shrink_mmseg import CROP, shrink_config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(ROOT, 'configs', 'deeplabv2_r101_c3_voc12aug.py')
IMAGE_WH = (96, 80)
MAX_ITERS = 6
_NUMBER = r'(nan|-?\d+(?:\.\d+)?)'
_HELPER_KEYS = ('tta_model', 'tta_pipeline', 'img_ratios', 'dataset_train',
                'dataset_aug', 'train_pipeline', 'test_pipeline', 'c3_block',
                'c3_stage4_plugins', 'data_preprocessor', 'norm_cfg',
                'optimizer', 'crop_size', 'max_iters', 'data_root',
                'dataset_type')


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _run(cmd, cwd, timeout=600):
    env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1',
               PYTHON=sys.executable, PORT=str(_free_port()))
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        first_error = proc.stdout.find('Traceback')
        raise AssertionError(
            f'{cmd} exited {proc.returncode}:\n'
            f'{proc.stdout[max(first_error, 0):][:6000]}\n...\n'
            f'{proc.stdout[-2000:]}')
    return proc.stdout


def _tiny_config(data_root: str, work_dir: str) -> Config:
    """The C3 config shrunk, pointed at ``data_root``, a few iterations."""
    cfg = shrink_config(Config.fromfile(CONFIG))
    # the generated images' long side plays the role of VOC's 500 pixels
    long_side = max(IMAGE_WH)
    train_pipeline = []
    for step in cfg.train_dataloader.dataset.datasets[0].pipeline:
        step = dict(step)
        if step['type'] == 'RandomResize':
            step['scale'] = (long_side, long_side)
        if step['type'] == 'RandomCrop':
            step['crop_size'] = CROP
        train_pipeline.append(step)
    for dataset in cfg.train_dataloader.dataset.datasets:
        dataset.data_root = data_root
        dataset.pipeline = train_pipeline
    cfg.train_dataloader.update(batch_size=2, num_workers=0,
                                persistent_workers=False)
    cfg.test_dataloader.update(num_workers=0, persistent_workers=False)
    cfg.test_dataloader.dataset.data_root = data_root
    # no validation while training: the test run below scores the checkpoint
    cfg.val_dataloader = cfg.val_evaluator = cfg.val_cfg = None
    cfg.train_cfg.update(max_iters=MAX_ITERS, val_interval=MAX_ITERS)
    cfg.default_hooks.checkpoint.interval = MAX_ITERS
    cfg.default_hooks.logger.interval = 1
    cfg.work_dir = work_dir
    # drop the helper variables of the base files (pipelines, TTA, block
    # fragments): mmengine pretty-prints the config several times per run
    # (log, dump, checkpoint meta) and that formatting dominates a tiny run
    for key in _HELPER_KEYS:
        cfg.pop(key, None)
    return cfg


def test_deeplabv2_c3_trains_and_reports_miou(tmp_path):
    data = tmp_path / 'data'
    _run([sys.executable, 'tools/misc/generate_synthetic_data.py', '--out',
          str(data), '--formats', 'voc', '--voc-years', '2012',
          '--num-train', '8', '--num-val', '3', '--size',
          str(IMAGE_WH[0]), str(IMAGE_WH[1]), '--seed', '0'], cwd=ROOT)
    data_root = str(data / 'VOCdevkit' / 'VOC2012')
    assert osp.isfile(osp.join(data_root, 'ImageSets', 'Segmentation',
                               'aug.txt'))

    work_dir = str(tmp_path / 'work')
    config = str(tmp_path / 'deeplabv2_tiny_c3.py')
    _tiny_config(data_root, work_dir).dump(config)

    train_log = _run(['bash', 'tools/dist_train.sh', config, '2',
                      '--work-dir', work_dir], cwd=ROOT)
    checkpoint = osp.join(work_dir, f'iter_{MAX_ITERS}.pth')
    assert osp.isfile(checkpoint), train_log[-3000:]
    losses = [float(v) for v in re.findall(r'\bloss: ' + _NUMBER, train_log)]
    # one logged loss per iteration (logger interval 1), every one finite
    assert len(losses) == MAX_ITERS, train_log[-3000:]
    assert all(math.isfinite(v) for v in losses), losses
    # two ranks really ran (mmengine's runtime report)
    assert 'Distributed training: True' in train_log, train_log[-3000:]
    assert re.search(r'GPU number: 2\b', train_log), train_log[-3000:]

    test_log = _run(['bash', 'tools/dist_test.sh', config, checkpoint,
                     '2', '--work-dir', work_dir], cwd=ROOT)
    metrics = {}
    for name in ('aAcc', 'mIoU', 'mAcc'):
        found = re.findall(name + r':\s*' + _NUMBER, test_log)
        assert found, f'{name} not reported:\n{test_log[-3000:]}'
        metrics[name] = float(found[-1])
    for name, value in metrics.items():
        assert math.isfinite(value) and 0.0 <= value <= 100.0, \
            f'{name} = {value}'


QUICKSTART_SEG = osp.join(ROOT, 'configs', 'quickstart',
                          'deeplabv2_r50w8_c3_voc12_synthetic.py')


def _quickstart_training_options() -> list:
    """The --cfg-options tools/quickstart.sh passes to dist_train.sh."""
    with open(osp.join(ROOT, 'tools', 'quickstart.sh')) as f:
        script = f.read()
    line = re.search(r'--cfg-options ([^\\\n]+)', script).group(1)
    return line.split()


def test_quickstart_segmenter_repeats_itself_and_trains_without_validation(
        tmp_path):
    """The quickstart's DeepLab-v2 + C3 config, trained twice by
    tools/dist_train.sh (2 CPU processes) with the quickstart's options:
    the two runs end with identical weights and score the same mIoU, and
    training runs no validation loop (the quickstart evaluates once, with
    dist_test.sh)."""
    data = tmp_path / 'data'
    _run([sys.executable, 'tools/misc/generate_synthetic_data.py', '--out',
          str(data), '--formats', 'voc', '--voc-years', '2012',
          '--num-train', '4', '--num-val', '2', '--size', '160', '128',
          '--seed', '0'], cwd=ROOT)
    data_root = str(data / 'VOCdevkit' / 'VOC2012')
    options = [f'train_dataloader.dataset.datasets.0.data_root={data_root}',
               f'test_dataloader.dataset.data_root={data_root}',
               'train_cfg.max_iters=4', 'default_hooks.checkpoint.interval=4',
               'default_hooks.logger.interval=1']
    training = _quickstart_training_options()
    assert training[:3] == ['val_dataloader=None', 'val_evaluator=None',
                            'val_cfg=None']
    results = []
    for run in ('a', 'b'):
        work = str(tmp_path / run)
        log = _run(['bash', 'tools/dist_train.sh', QUICKSTART_SEG, '2',
                    '--work-dir', work, '--cfg-options', *training[:3],
                    *options], cwd=ROOT)
        assert 'Iter(val)' not in log and 'Iter(train) [4/4]' in log
        checkpoint = osp.join(work, 'iter_4.pth')
        log = _run(['bash', 'tools/dist_test.sh', QUICKSTART_SEG, checkpoint,
                    '2', '--work-dir', osp.join(work, 'test'),
                    '--cfg-options', *options], cwd=ROOT)
        miou = re.findall(r'mIoU:\s*' + _NUMBER, log)
        assert miou, log[-3000:]
        weights = torch.load(checkpoint, map_location='cpu',
                             weights_only=False)['state_dict']
        results.append((float(miou[-1]), weights))
    (miou_a, a), (miou_b, b) = results
    assert miou_a == miou_b
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the same real work dir through the results table and the log tools
    work = str(tmp_path / 'a')
    table = _run([sys.executable, 'tools/misc/collect_results.py', work],
                 cwd=ROOT)
    assert (f'| deeplabv2_r50w8_c3_voc12_synthetic | mIoU | {miou_a:.2f} | '
            '- | - | - | - |') in table
    train_log, = glob.glob(osp.join(work, '2*', 'vis_data', '2*.json'))
    png = str(tmp_path / 'curves.png')
    _run([sys.executable, 'tools/analysis_tools/analyze_logs.py',
          'plot_curve', train_log, '--keys', 'loss', 'lr', '--out', png],
         cwd=ROOT)
    assert osp.getsize(png) > 10000
    times = _run([sys.executable, 'tools/analysis_tools/analyze_logs.py',
                  'cal_train_time', train_log], cwd=ROOT)
    assert '(4 logged iterations)' in times
