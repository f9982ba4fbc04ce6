"""Bad input to the tools gets a clear message, not a traceback."""
import os.path as osp
import sys

from ._run import ROOT, TOOLS, free_port, run

QUICKSTART = osp.join(ROOT, 'configs', 'quickstart',
                      'faster_rcnn_r50w16_baseline_voc0712_synthetic.py')


def test_missing_config(tmp_path):
    code, out = run([sys.executable, osp.join(TOOLS, 'train.py'),
                     'configs/nope.py'], cwd=tmp_path, check=False)
    assert code == 2
    assert 'config file not found: configs/nope.py' in out


def test_unknown_launcher(tmp_path):
    code, out = run([sys.executable, osp.join(TOOLS, 'train.py'), QUICKSTART,
                     '--launcher', 'k8s'], cwd=tmp_path, check=False)
    assert code == 2
    assert "invalid choice: 'k8s'" in out


def test_missing_dataset_path_is_named(tmp_path):
    missing = str(tmp_path / 'no_such_data') + '/'
    code, out = run([sys.executable, osp.join(TOOLS, 'train.py'), QUICKSTART,
                     '--cfg-options',
                     f'train_dataloader.dataset.datasets.0.data_root={missing}'],
                    cwd=tmp_path, check=False)
    assert code == 2
    assert f'dataset path does not exist: {missing}' in out
    assert 'Traceback' not in out


def test_dist_train_missing_dataset_fails_fast(tmp_path):
    """Both torchrun workers stop with the message instead of hanging."""
    code, out = run(['bash', osp.join(TOOLS, 'dist_train.sh'), QUICKSTART, '2'],
                    cwd=tmp_path, check=False, timeout=300, PORT=free_port())
    assert code != 0
    assert 'dataset path does not exist: work_dirs/quickstart/data' in out


def test_missing_checkpoint(tmp_path):
    code, out = run([sys.executable, osp.join(TOOLS, 'test.py'), QUICKSTART,
                     str(tmp_path / 'none.pth')], cwd=tmp_path, check=False)
    assert code == 2
    assert f'checkpoint file not found: {tmp_path / "none.pth"}' in out
