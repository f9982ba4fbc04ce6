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


def test_test_py_names_a_missing_test_dataset(tmp_path):
    """tools/test.py checks the test dataloader's paths before building."""
    ckpt = tmp_path / 'model.pth'
    ckpt.write_bytes(b'not read: the path check comes first')
    missing = str(tmp_path / 'no_test_data') + '/'
    code, out = run([sys.executable, osp.join(TOOLS, 'test.py'), QUICKSTART,
                     str(ckpt), '--cfg-options',
                     f'test_dataloader.dataset.data_root={missing}'],
                    cwd=tmp_path, check=False)
    assert code == 2, out[-3000:]
    assert (f'dataset path does not exist: {missing} '
            '(test_dataloader.dataset.data_root)') in out
    assert 'Traceback' not in out


def test_bad_plugin_in_an_upstream_backbone_is_named(tmp_path):
    """An upstream mmdet ResNet gets the same check through the tools: the
    message names the host, the key, the value and the choices."""
    cfg = tmp_path / 'bad_plugin.py'
    cfg.write_text(
        f'_base_ = [{QUICKSTART!r}]\n'
        'model = dict(backbone=dict(plugins=[dict(\n'
        "    cfg=dict(type='SEBlock'), position='after_conv3',\n"
        '    stages=(False, False, False, True))]))\n')
    code, out = run([sys.executable, osp.join(TOOLS, 'train.py'), str(cfg)],
                    cwd=tmp_path, check=False)
    assert code == 2, out[-3000:]
    assert ('error: model.backbone (ResNet): plugins[0].stages must have 3 '
            'entries (one per stage), got 4') in out
    assert 'Traceback' not in out
