"""Faults and recovery, end to end through the real tools.

- ``--resume`` continues exactly: N iterations in one run, and N/2 + a kill
  (SIGKILL) + ``--resume`` for the rest, give the same weights and the same
  logged losses (CPU, fixed seed, deterministic settings).
- A run killed while writing a checkpoint leaves ``last_checkpoint`` naming
  a complete file, and ``--resume`` works.
- Killing one rank of a 2-process job ends the job with a non-zero exit
  instead of leaving the other rank waiting.

The kills come from a small hook module imported by the configs
(``custom_imports``), switched on by environment variables.
"""
import glob
import json
import os
import os.path as osp
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ._run import TOOLS, coco_quickstart_config, free_port, generate, run

ITERS = 4

KILLER = '''
import os
import signal

from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class KillAtIter(Hook):
    """SIGKILL this process before iteration MMC3_TEST_KILL_AT (1-based) on
    rank MMC3_TEST_KILL_RANK (default 0)."""

    priority = 'HIGHEST'

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        at = os.environ.get('MMC3_TEST_KILL_AT')
        rank = int(os.environ.get('MMC3_TEST_KILL_RANK', '0'))
        if at and runner.iter + 1 == int(at) and runner.rank == rank:
            os.kill(os.getpid(), signal.SIGKILL)


_put = LocalBackend.put


def _put_then_die(self, obj, filepath):
    """With MMC3_TEST_KILL_WRITE=1: write half of a checkpoint, then die."""
    if os.environ.get('MMC3_TEST_KILL_WRITE') == '1' and '.pth' in str(
            filepath):
        with open(filepath, 'wb') as f:
            f.write(obj[:len(obj) // 2])
            f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return _put(self, obj, filepath)


LocalBackend.put = _put_then_die
'''


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """Generated COCO data, the killer module and a tiny config."""
    root = tmp_path_factory.mktemp('faults')
    data = root / 'data'
    generate(data, '--formats', 'coco', '--num-train', 4, '--num-val', 2,
             '--size', 96, 80, '--seed', 1)
    (root / 'mmc3_test_killer.py').write_text(KILLER)
    data_root = data / 'coco'
    cfg = root / 'tiny.py'
    cfg.write_text(coco_quickstart_config(data_root) + f'''
custom_imports = dict(imports=['mmc3', 'mmc3_test_killer'],
                      allow_failed_imports=False)
val_dataloader = None
val_evaluator = None
val_cfg = None
test_dataloader = None
test_evaluator = None
test_cfg = None
train_cfg = dict(max_iters={ITERS}, val_interval=1000)
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval={ITERS // 2}, by_epoch=False))
custom_hooks = [dict(type='KillAtIter')]
randomness = dict(seed=0, deterministic=True)
''')
    return root, str(cfg)


def _train(setup, work, *extra, check=True, **env):
    root, cfg = setup
    return run([sys.executable, osp.join(TOOLS, 'train.py'), cfg,
                '--work-dir', str(work), *extra], cwd=root, check=check,
               PYTHONPATH=str(root), **env)


def _losses(work) -> dict:
    """iteration -> the scalars logged for it (last run wins), from the
    LocalVisBackend's scalars.json files (full float precision)."""
    found = {}
    for path in sorted(glob.glob(osp.join(str(work), '*', 'vis_data',
                                          'scalars.json'))):
        with open(path) as f:
            for line in f:
                record = json.loads(line)
                if 'loss' in record:
                    found[record['iter']] = {
                        k: v for k, v in record.items()
                        if k.startswith('loss') or k == 'lr'}
    return found


def _weights(path) -> dict:
    return torch.load(path, map_location='cpu',
                      weights_only=False)['state_dict']


@pytest.fixture(scope='module')
def straight(setup):
    """The uninterrupted run: ITERS iterations in one go."""
    work = Path(setup[0]) / 'straight'
    _train(setup, work)
    return work


def test_kill_and_resume_continues_exactly(setup, straight, tmp_path):
    interrupted = tmp_path / 'interrupted'
    code, out = _train(setup, interrupted, check=False,
                       MMC3_TEST_KILL_AT=str(ITERS // 2 + 1))
    assert code != 0, out[-3000:]
    assert osp.isfile(interrupted / f'iter_{ITERS // 2}.pth')
    assert not osp.isfile(interrupted / f'iter_{ITERS}.pth')
    assert osp.isfile(interrupted / 'random_state' /
                      f'iter_{ITERS // 2}_rank_0.pth')
    _, out = _train(setup, interrupted, '--resume')
    assert re.search(rf'resumed epoch: \d+, iter: {ITERS // 2}\b', out), \
        out[-3000:]

    a = _weights(straight / f'iter_{ITERS}.pth')
    b = _weights(interrupted / f'iter_{ITERS}.pth')
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    losses_a, losses_b = _losses(straight), _losses(interrupted)
    assert sorted(losses_a) == list(range(1, ITERS + 1))
    assert losses_a == losses_b


def test_resume_without_the_random_state_differs(setup, straight, tmp_path):
    """The same resume with the state files removed (what mmengine alone
    does) does not repeat the run: the exactness above is the hook's."""
    import shutil
    interrupted = tmp_path / 'interrupted'
    _train(setup, interrupted, check=False,
           MMC3_TEST_KILL_AT=str(ITERS // 2 + 1))
    shutil.rmtree(interrupted / 'random_state')
    _, out = _train(setup, interrupted, '--resume')
    assert 'no random state' in out
    a = _losses(straight)
    b = _losses(interrupted)
    assert a[ITERS // 2] == b[ITERS // 2]
    assert any(a[i] != b[i] for i in range(ITERS // 2 + 1, ITERS + 1))


def test_kill_while_writing_a_checkpoint_keeps_resume_working(setup,
                                                              tmp_path):
    work = tmp_path / 'work'
    _train(setup, work, '--cfg-options', f'train_cfg.max_iters={ITERS // 2}')
    last = (work / 'last_checkpoint').read_text().strip()
    assert last.endswith(f'iter_{ITERS // 2}.pth')
    complete = osp.getsize(last)
    # the same run again in the same work_dir, killed halfway through
    # writing the checkpoint that last_checkpoint already names
    code, out = _train(setup, work, '--cfg-options',
                       f'train_cfg.max_iters={ITERS // 2}', check=False,
                       MMC3_TEST_KILL_WRITE='1')
    assert code != 0, out[-3000:]
    assert (work / 'last_checkpoint').read_text().strip() == last
    assert osp.getsize(last) == complete  # the named file is complete
    torch.load(last, map_location='cpu', weights_only=False)
    _, out = _train(setup, work, '--resume')
    assert re.search(rf'resumed epoch: \d+, iter: {ITERS // 2}\b', out), \
        out[-3000:]
    assert osp.isfile(work / f'iter_{ITERS}.pth')


def test_killing_one_rank_ends_the_job(setup, tmp_path):
    """Rank 1 dies at iteration 2: the launcher ends rank 0 and exits
    non-zero (bounded by the timeout: the job must not hang)."""
    root, cfg = setup
    start = time.time()
    proc = subprocess.run(
        ['bash', osp.join(TOOLS, 'dist_train.sh'), cfg, '2', '--work-dir',
         str(tmp_path / 'work')],
        cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=300,
        env=dict(os.environ, PYTHONUNBUFFERED='1',
                 OMP_NUM_THREADS='1', PYTHON=sys.executable,
                 PORT=free_port(), PYTHONPATH=str(root),
                 MMC3_TEST_KILL_AT='2', MMC3_TEST_KILL_RANK='1'))
    elapsed = time.time() - start
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert 'Signal 9 (SIGKILL)' in proc.stdout or 'exitcode  : -9' in \
        proc.stdout, proc.stdout[-3000:]
    assert f'Iter(train) [{ITERS}/{ITERS}]' not in proc.stdout
    print(f'job ended {elapsed:.1f} s after start')
