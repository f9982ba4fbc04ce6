"""Running the tools as subprocesses from the tests."""
import os
import os.path as osp
import socket
import subprocess
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOLS = osp.join(ROOT, 'tools')


def free_port() -> str:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return str(s.getsockname()[1])


def run(cmd, cwd, timeout=600, check=True, **env_overrides):
    """Run ``cmd`` with this interpreter as PYTHON; return (returncode, output)."""
    env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1',
               PYTHON=sys.executable, **env_overrides)
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)
    if check:
        assert proc.returncode == 0, (f'{cmd} exited {proc.returncode}:\n'
                                      f'{proc.stdout[-6000:]}')
    return proc.returncode, proc.stdout


def generate(out, *args):
    return run([sys.executable,
                osp.join(TOOLS, 'misc', 'generate_synthetic_data.py'),
                '--out', str(out), *map(str, args)], cwd=ROOT)[1]


QUICKSTART_C3 = osp.join(ROOT, 'configs', 'quickstart',
                         'faster_rcnn_r50w16_c3_voc0712_synthetic.py')


def coco_quickstart_config(data_root) -> str:
    """Config text: the quickstart C3 detector trained on the generated COCO
    split in ``data_root`` (3 classes, batch 1). Tests append what they
    change (loaders, schedule, hooks)."""
    return f'''
_base_ = [{QUICKSTART_C3!r}]
data_root = {str(data_root) + '/'!r}
metainfo = dict(classes=('car', 'person', 'dog'))
model = dict(roi_head=dict(bbox_head=dict(num_classes=3)))
train_dataloader = dict(
    batch_size=1,
    dataset=dict(
        _delete_=True, type='CocoDataset', data_root=data_root,
        metainfo=metainfo, ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=8),
        pipeline=_base_.train_pipeline))
'''
