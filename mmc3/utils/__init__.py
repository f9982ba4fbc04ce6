"""Helpers for the tools: launchers on CPU-only hosts, safe checkpoint loading,
dataset path checks, checks of ResNet ``plugins`` entries, exact resuming and
atomic checkpoints.

Importing this package allow-lists the types mmengine's training checkpoints
need for ``torch.load(weights_only=True)`` (see :mod:`mmc3.utils.checkpoint`).
"""
from .checkpoint import (TORCH_TRUST_ENV, mmengine_checkpoint_safe_globals,
                         register_checkpoint_safe_globals, trust_checkpoints)
from .data_paths import check_dataset_paths
from .distributed import (LAUNCHERS, check_launcher, cpu_wrapper_cfg,
                          dist_env_from_launcher, finish_distributed,
                          prepare_distributed)
from .plugins import check_config_plugins, check_plugins
from .resume import (AtomicCheckpointRunner, MainProcessLoggerHook,
                     RandomStateHook, get_random_state, set_random_state)

register_checkpoint_safe_globals()

__all__ = [
    'AtomicCheckpointRunner', 'LAUNCHERS', 'MainProcessLoggerHook',
    'RandomStateHook',
    'get_random_state', 'set_random_state', 'TORCH_TRUST_ENV', 'check_config_plugins',
    'check_dataset_paths', 'check_launcher', 'check_plugins',
    'cpu_wrapper_cfg', 'dist_env_from_launcher', 'finish_distributed',
    'mmengine_checkpoint_safe_globals',
    'prepare_distributed', 'register_checkpoint_safe_globals',
    'trust_checkpoints'
]
