"""tools/misc/collect_results.py and tools/analysis_tools/analyze_logs.py
as subprocesses on work dirs written in mmengine's layout."""
import csv
import json
import os.path as osp
import sys

import pytest

from tests.tools._run import ROOT, run

COLLECT = osp.join(ROOT, 'tools', 'misc', 'collect_results.py')
ANALYZE = osp.join(ROOT, 'tools', 'analysis_tools', 'analyze_logs.py')


def work_dir(root, config, train=(), test=None, stamp='20260101_000000'):
    """A work dir as tools/train.py + tools/test.py leave it: the dumped
    config, the training scalar log, the test result."""
    wd = root / config
    (wd / stamp / 'vis_data').mkdir(parents=True)
    (wd / f'{config}.py').write_text('# dumped config\n')
    log = wd / stamp / 'vis_data' / f'{stamp}.json'
    log.write_text(''.join(json.dumps(r) + '\n' for r in train))
    if test is not None:
        t = wd / 'test' / '20260102_000000'
        t.mkdir(parents=True)
        (t / '20260102_000000.json').write_text(json.dumps(test))
    return wd, log


def train_log(losses, times, val=None):
    records = [dict(lr=0.02, data_time=0.01, loss=l, time=t, iter=i * 50,
                    step=i * 50)
               for i, (l, t) in enumerate(zip(losses, times), 1)]
    if val:
        records.append(dict(val, step=len(records) * 50))
    return records


@pytest.fixture
def runs(tmp_path):
    base, base_log = work_dir(
        tmp_path, 'faster_rcnn_r101_baseline',
        train_log([1.0, 0.8], [0.5, 0.7]),
        test={'coco/bbox_mAP': 0.339, 'coco/bbox_mAP_50': 0.55,
              'data_time': 0.1, 'time': 0.2})
    c3, c3_log = work_dir(
        tmp_path, 'faster_rcnn_r101_c3', train_log([1.1, 0.7], [0.6, 0.6]),
        test={'coco/bbox_mAP': 0.35, 'time': 0.2})
    # ImageNet: no test run, the last validation step counts
    cls, _ = work_dir(tmp_path, 'resnet50_c3_in1k',
                      train_log([6.9, 3.0], [0.3, 0.3],
                                val={'accuracy/top1': 77.0}))
    return dict(dirs=[base, c3, cls], logs=[base_log, c3_log])


def test_results_beside_the_papers(runs, tmp_path):
    out = tmp_path / 'results.csv'
    _, text = run([sys.executable, COLLECT, *map(str, runs['dirs']),
                   '--out', str(out)], cwd=ROOT)
    assert ('| faster_rcnn_r101_baseline | coco/bbox_mAP | 33.90 | 33.90 | '
            '0.00 | - | - |') in text
    # ours 35.0 vs the paper's 34.8; gains 1.1 (ours) and 0.9 (paper)
    assert ('| faster_rcnn_r101_c3 | coco/bbox_mAP | 35.00 | 34.80 | 0.20 | '
            '1.10 | 0.90 |') in text
    # ImageNet's top-1 error 23.19 is an accuracy of 76.81
    assert '| resnet50_c3_in1k | accuracy/top1 | 77.00 | 76.81 | 0.19 |' \
        in text
    with open(out) as f:
        rows = {r['config']: r for r in csv.DictReader(f)}
    assert float(rows['faster_rcnn_r101_c3']['our gain']) == \
        pytest.approx(1.1)
    run([sys.executable, COLLECT, str(runs['dirs'][1]), '--out',
         str(tmp_path / 'r.json')], cwd=ROOT)
    row, = json.loads((tmp_path / 'r.json').read_text())
    assert row['paper'] == 34.8 and row['our gain'] is None


def test_a_work_dir_without_results_is_named(tmp_path):
    empty, _ = work_dir(tmp_path, 'resnet20_c3_cifar100', train_log([1], [1]))
    code, text = run([sys.executable, COLLECT, str(empty)], cwd=ROOT,
                     check=False)
    assert code == 1 and f'{empty}: no test result' in text


def test_plot_curve_overlays_logs(runs, tmp_path):
    from PIL import Image
    png = tmp_path / 'curves.png'
    _, text = run([sys.executable, ANALYZE, 'plot_curve',
                   *map(str, runs['logs']), '--keys', 'loss', 'lr',
                   '--legend', 'baseline', 'c3', '--out', str(png)],
                  cwd=ROOT)
    with Image.open(png) as img:
        assert img.format == 'PNG' and min(img.size) >= 300
    code, text = run([sys.executable, ANALYZE, 'plot_curve',
                      str(runs['logs'][0]), '--keys', 'coco/bbox_mAP'],
                     cwd=ROOT, check=False)
    assert code == 1
    assert (f"{runs['logs'][0]} has no key 'coco/bbox_mAP'; it has: "
            'data_time, loss, lr, time') in text


def test_cal_train_time(runs):
    _, text = run([sys.executable, ANALYZE, 'cal_train_time',
                   str(runs['logs'][0])], cwd=ROOT)
    assert 'slowest logged iter: 100, 0.7000 s/iter' in text
    assert 'fastest logged iter: 50, 0.5000 s/iter' in text
    assert 'average iter time: 0.6000 s/iter (2 logged iterations)' in text
    code, text = run([sys.executable, ANALYZE, 'cal_train_time',
                      'missing.json'], cwd=ROOT, check=False)
    assert code == 2 and 'log not found: missing.json' in text
