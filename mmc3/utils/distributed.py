"""Launcher handling shared by ``tools/train.py`` and ``tools/test.py``.

With CUDA, mmengine's Runner initialises the process group itself (``nccl``,
one process per GPU) and nothing here changes that. Without CUDA, mmengine
0.10.7 cannot: ``init_dist('pytorch')`` calls ``torch.cuda.set_device``, the
default backend is ``nccl`` and the default DDP wrapper passes
``device_ids=[LOCAL_RANK]``. But the Runner skips ``init_dist`` when a
process group already exists and honours ``model_wrapper_cfg``. So on a
CPU-only host :func:`prepare_distributed` reads the launcher's environment
(torchrun, SLURM or Open MPI), initialises a ``gloo`` group and sets
``model_wrapper_cfg`` to a CPU DDP before the Runner is built: the same
scripts then run real multi-process data parallel training on the CPU.

Every run ends the same way, whatever the backend (:func:`finish_distributed`):
all ranks meet at a barrier, the process group is destroyed, then the process
exits. Without it a rank that finishes first tears down its connections at
interpreter exit while a peer still uses them, and the peer can die with
SIGABRT after the metrics were printed.
"""
import os
import subprocess
from typing import Dict, Mapping, Optional

import torch
import torch.distributed as torch_dist

#: Launchers accepted by the tools (mmengine's set).
LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')
DEFAULT_PORT = '29500'


def check_launcher(launcher: str) -> str:
    """Return ``launcher`` if mmengine knows it, else raise ``ValueError``."""
    if launcher not in LAUNCHERS:
        raise ValueError(f'launcher must be one of {", ".join(LAUNCHERS)}, '
                         f'got {launcher!r}')
    return launcher


def _require(environ: Mapping[str, str], launcher: str, *names: str) -> None:
    missing = [name for name in names if name not in environ]
    if missing:
        hint = {
            'pytorch': 'start the processes with torchrun '
                       '(tools/dist_train.sh, tools/dist_test.sh)',
            'slurm': 'start the processes with srun '
                     '(tools/slurm_train.sh, tools/slurm_test.sh)',
            'mpi': 'start the processes with mpirun (Open MPI) and set '
                   'MASTER_ADDR',
        }[launcher]
        raise ValueError(f'--launcher {launcher}: environment variable(s) '
                         f'{", ".join(missing)} not set; {hint}')


def _first_slurm_host(nodelist: str) -> str:
    """The first host name of a SLURM node list (``node[1-4]`` -> ``node1``)."""
    out = subprocess.check_output(['scontrol', 'show', 'hostname', nodelist],
                                  text=True)
    return out.split()[0]


def dist_env_from_launcher(launcher: str,
                           environ: Optional[Mapping[str, str]] = None
                           ) -> Dict[str, str]:
    """The torch ``env://`` variables for a process started by ``launcher``.

    Args:
        launcher (str): ``'pytorch'`` (torchrun), ``'slurm'`` (srun) or
            ``'mpi'`` (Open MPI's mpirun).
        environ (Mapping[str, str], optional): the environment to read.
            Defaults to ``os.environ``.

    Returns:
        dict: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
        ``MASTER_PORT``. SLURM's master is the first host of
        ``SLURM_NODELIST`` unless ``MASTER_ADDR`` is set; its port is
        ``MASTER_PORT``, else ``PORT``, else 29500 (as mmengine).
    """
    environ = os.environ if environ is None else environ
    check_launcher(launcher)
    if launcher == 'pytorch':
        _require(environ, launcher, 'RANK', 'WORLD_SIZE', 'MASTER_ADDR',
                 'MASTER_PORT')
        return dict(
            RANK=environ['RANK'],
            WORLD_SIZE=environ['WORLD_SIZE'],
            LOCAL_RANK=environ.get('LOCAL_RANK', environ['RANK']),
            MASTER_ADDR=environ['MASTER_ADDR'],
            MASTER_PORT=environ['MASTER_PORT'])
    if launcher == 'slurm':
        _require(environ, launcher, 'SLURM_PROCID', 'SLURM_NTASKS')
        if 'MASTER_ADDR' in environ:
            addr = environ['MASTER_ADDR']
        else:
            _require(environ, launcher, 'SLURM_NODELIST')
            addr = _first_slurm_host(environ['SLURM_NODELIST'])
        return dict(
            RANK=environ['SLURM_PROCID'],
            WORLD_SIZE=environ['SLURM_NTASKS'],
            LOCAL_RANK=environ.get('SLURM_LOCALID', '0'),
            MASTER_ADDR=addr,
            MASTER_PORT=environ.get('MASTER_PORT',
                                    environ.get('PORT', DEFAULT_PORT)))
    if launcher == 'mpi':
        _require(environ, launcher, 'OMPI_COMM_WORLD_RANK',
                 'OMPI_COMM_WORLD_SIZE', 'MASTER_ADDR')
        return dict(
            RANK=environ['OMPI_COMM_WORLD_RANK'],
            WORLD_SIZE=environ['OMPI_COMM_WORLD_SIZE'],
            LOCAL_RANK=environ.get('OMPI_COMM_WORLD_LOCAL_RANK', '0'),
            MASTER_ADDR=environ['MASTER_ADDR'],
            MASTER_PORT=environ.get('MASTER_PORT', DEFAULT_PORT))
    raise ValueError(f'launcher {launcher!r} starts no processes')


def cpu_wrapper_cfg(cfg) -> dict:
    """``model_wrapper_cfg`` for CPU DDP: the config's own, ``device_ids=None``.

    Without a ``model_wrapper_cfg`` in the config this mirrors mmengine's
    default wrapper (``MMDistributedDataParallel``, ``broadcast_buffers=False``,
    the config's ``find_unused_parameters``) minus the CUDA device.
    """
    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    if not wrapper:
        wrapper = dict(
            type='MMDistributedDataParallel',
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper.setdefault('type', 'MMDistributedDataParallel')
    if wrapper['type'] in ('MMDistributedDataParallel',
                           'DistributedDataParallel'):
        wrapper['device_ids'] = None
    return wrapper


def prepare_distributed(cfg, launcher: str) -> Optional[str]:
    """Get ``cfg`` and the process group ready for ``Runner.from_cfg``.

    Sets ``cfg.launcher``. With ``launcher='none'`` or with CUDA available,
    nothing else happens: the Runner initialises the group (``nccl``). On a
    host without CUDA it initialises a ``gloo`` group from the launcher's
    environment and sets ``cfg.model_wrapper_cfg`` (``device_ids=None``) and
    ``cfg.env_cfg.dist_cfg.backend = 'gloo'``.

    Args:
        cfg (mmengine.Config): the experiment config, changed in place.
        launcher (str): one of :data:`LAUNCHERS`.

    Returns:
        str or None: ``'gloo'`` if this call initialised the process group,
        else None.
    """
    cfg.launcher = check_launcher(launcher)
    if launcher == 'none' or torch.cuda.is_available():
        return None
    if not torch_dist.is_available():
        raise RuntimeError('this torch build has no torch.distributed')
    env = dist_env_from_launcher(launcher)
    os.environ.update(env)  # mmengine reads LOCAL_RANK etc. from here
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(
            backend='gloo',
            init_method='env://',
            rank=int(env['RANK']),
            world_size=int(env['WORLD_SIZE']))
    cfg.model_wrapper_cfg = cpu_wrapper_cfg(cfg)
    env_cfg = cfg.get('env_cfg') or {}
    dist_cfg = dict(env_cfg.get('dist_cfg') or {})
    dist_cfg['backend'] = 'gloo'
    env_cfg['dist_cfg'] = dist_cfg
    cfg.env_cfg = env_cfg
    return 'gloo'


def finish_distributed() -> bool:
    """End a distributed run cleanly: barrier, destroy the group, return.

    Call it once the work of the run is done (after ``Runner.train()`` or
    ``Runner.test()``) on every rank, before the process exits. All ranks
    wait for each other at a barrier, so none closes its connections while a
    peer may still use them; then the default process group is destroyed.
    Not called when a rank fails: the failing rank exits non-zero and the
    launcher (torchrun, srun) ends the others.

    Returns:
        bool: True if a process group was ended, False if there was none.
    """
    if not (torch_dist.is_available() and torch_dist.is_initialized()):
        return False
    torch_dist.barrier()
    torch_dist.destroy_process_group()
    return True
