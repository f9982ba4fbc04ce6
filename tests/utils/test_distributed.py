"""Launcher handling: env derivation, CPU gloo set-up, the CUDA hand-off."""
import os
import socket
import stat

import pytest
import torch
import torch.distributed as torch_dist
from mmengine.config import Config

from mmc3.utils import (check_launcher, cpu_wrapper_cfg,
                        dist_env_from_launcher, prepare_distributed)


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return str(s.getsockname()[1])


def test_check_launcher_names_the_choices():
    assert check_launcher('slurm') == 'slurm'
    with pytest.raises(ValueError, match=r"none, pytorch, slurm, mpi, got 'k8s'"):
        check_launcher('k8s')


def test_pytorch_env_from_torchrun_variables():
    env = dist_env_from_launcher('pytorch', dict(
        RANK='3', WORLD_SIZE='4', LOCAL_RANK='1', MASTER_ADDR='10.0.0.2',
        MASTER_PORT='29123'))
    assert env == dict(RANK='3', WORLD_SIZE='4', LOCAL_RANK='1',
                       MASTER_ADDR='10.0.0.2', MASTER_PORT='29123')


def test_pytorch_env_missing_names_variable_and_launcher():
    with pytest.raises(ValueError, match='RANK, WORLD_SIZE.*torchrun'):
        dist_env_from_launcher('pytorch', dict(MASTER_ADDR='x',
                                               MASTER_PORT='1'))


def test_slurm_env_resolves_master_with_scontrol(tmp_path, monkeypatch):
    fake = tmp_path / 'scontrol'
    fake.write_text('#!/bin/sh\n[ "$1 $2 $3" = "show hostname node[3-4]" ] '
                    '&& printf "node3\\nnode4\\n"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv('PATH', f'{tmp_path}{os.pathsep}{os.environ["PATH"]}')
    env = dist_env_from_launcher('slurm', dict(
        SLURM_PROCID='5', SLURM_NTASKS='8', SLURM_LOCALID='1',
        SLURM_NODELIST='node[3-4]', PORT='29777'))
    assert env == dict(RANK='5', WORLD_SIZE='8', LOCAL_RANK='1',
                       MASTER_ADDR='node3', MASTER_PORT='29777')


def test_mpi_env_needs_master_addr():
    base = dict(OMPI_COMM_WORLD_RANK='1', OMPI_COMM_WORLD_SIZE='2',
                OMPI_COMM_WORLD_LOCAL_RANK='1')
    with pytest.raises(ValueError, match='MASTER_ADDR'):
        dist_env_from_launcher('mpi', base)
    env = dist_env_from_launcher('mpi', dict(base, MASTER_ADDR='h'))
    assert env['RANK'] == '1' and env['MASTER_PORT'] == '29500'


def test_cpu_wrapper_keeps_config_options():
    cfg = Config(dict(find_unused_parameters=True))
    assert cpu_wrapper_cfg(cfg) == dict(
        type='MMDistributedDataParallel', broadcast_buffers=False,
        find_unused_parameters=True, device_ids=None)
    cfg = Config(dict(model_wrapper_cfg=dict(
        type='MMDistributedDataParallel', broadcast_buffers=True,
        device_ids=[0])))
    assert cpu_wrapper_cfg(cfg)['device_ids'] is None
    assert cpu_wrapper_cfg(cfg)['broadcast_buffers'] is True


def test_launcher_none_changes_nothing_but_launcher():
    cfg = Config(dict(env_cfg=dict(dist_cfg=dict(backend='nccl'))))
    assert prepare_distributed(cfg, 'none') is None
    assert cfg.launcher == 'none'
    assert 'model_wrapper_cfg' not in cfg
    assert cfg.env_cfg.dist_cfg.backend == 'nccl'


def test_cuda_host_leaves_the_group_to_mmengine(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    cfg = Config(dict(env_cfg=dict(dist_cfg=dict(backend='nccl'))))
    assert prepare_distributed(cfg, 'pytorch') is None
    assert not torch_dist.is_initialized()
    assert 'model_wrapper_cfg' not in cfg


def test_cpu_host_initialises_gloo(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    for key, value in dict(RANK='0', WORLD_SIZE='1', LOCAL_RANK='0',
                           MASTER_ADDR='127.0.0.1',
                           MASTER_PORT=_free_port()).items():
        monkeypatch.setenv(key, value)
    cfg = Config(dict(env_cfg=dict(dist_cfg=dict(backend='nccl'))))
    try:
        assert prepare_distributed(cfg, 'pytorch') == 'gloo'
        assert torch_dist.is_initialized()
        assert torch_dist.get_backend() == 'gloo'
        assert cfg.model_wrapper_cfg['device_ids'] is None
        assert cfg.env_cfg.dist_cfg.backend == 'gloo'
        from mmengine.dist import get_dist_info
        assert get_dist_info() == (0, 1)
    finally:
        if torch_dist.is_initialized():
            torch_dist.destroy_process_group()
