"""tools/slurm_{train,test}.sh build mmdet's srun command (a fake srun records it)."""
import os
import os.path as osp
import stat
import sys

from ._run import TOOLS, run


def _fake_srun(tmp_path):
    srun = tmp_path / 'bin' / 'srun'
    srun.parent.mkdir()
    srun.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$SRUN_LOG"\n')
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    return dict(PATH=f'{srun.parent}{os.pathsep}{os.environ["PATH"]}',
                SRUN_LOG=str(tmp_path / 'srun_args'), GPUS='16',
                GPUS_PER_NODE='8', CPUS_PER_TASK='3',
                SRUN_ARGS='--quotatype=auto')


def test_slurm_train_command(tmp_path):
    env = _fake_srun(tmp_path)
    run(['bash', osp.join(TOOLS, 'slurm_train.sh'), 'part', 'job', 'cfg.py',
         'wd', '--amp'], cwd=tmp_path, **env)
    args = (tmp_path / 'srun_args').read_text().split('\n')
    for expected in ('-p', 'part', '--job-name=job', '--gres=gpu:8',
                     '--ntasks=16', '--ntasks-per-node=8',
                     '--cpus-per-task=3', '--quotatype=auto', sys.executable,
                     osp.join(TOOLS, 'train.py'), 'cfg.py', '--work-dir=wd',
                     '--launcher=slurm', '--amp'):
        assert expected in args, (expected, args)


def test_slurm_test_command(tmp_path):
    env = _fake_srun(tmp_path)
    run(['bash', osp.join(TOOLS, 'slurm_test.sh'), 'part', 'job', 'cfg.py',
         'ck.pth', '--out', 'r.pkl'], cwd=tmp_path, **env)
    args = (tmp_path / 'srun_args').read_text().split('\n')
    tail = args[args.index(osp.join(TOOLS, 'test.py')):]
    assert tail[:6] == [osp.join(TOOLS, 'test.py'), 'cfg.py', 'ck.pth',
                        '--launcher=slurm', '--out', 'r.pkl']
