"""Resuming that continues exactly, checkpoints that are never half-written,
and one complete test-metrics file per run.

Three gaps of mmengine 0.10.7 that the tools close (``tools/train.py``; the
last also ``tools/test.py``):

- **Random state.** ``Runner.resume`` re-seeds every generator with the
  config's seed, and the iteration-based loop then replays the skipped
  batches through the data pipeline. So after ``--resume`` the random
  augmentations, the RoI samplers and dropout draw other numbers than the
  uninterrupted run would have: the losses and weights drift apart.
  :class:`RandomStateHook` saves each rank's Python, NumPy and torch (CPU and
  CUDA) generator states whenever the ``CheckpointHook`` saves, in a small
  file per rank beside the checkpoint (``random_state/iter_N_rank_R.pth``;
  ``epoch_N_rank_R.pth`` for epoch-based loops), and restores them on
  resume at the point the uninterrupted run had reached: after the skipped
  batches of an iteration-based loop, before the first epoch of an
  epoch-based one. With a fixed seed and deterministic kernels, N iterations
  in one run and N/2 + resume + N/2 then give the same weights and the same
  losses. The files load with ``weights_only=True`` (tensors, NumPy arrays,
  tuples of ints).
- **Atomic checkpoints.** mmengine writes a checkpoint straight to its final
  name. A run killed during that write leaves a truncated file there, and if
  ``last_checkpoint`` already named that file (a run restarted in the same
  work_dir), ``--resume`` then fails on it. :class:`AtomicCheckpointRunner`
  writes to ``NAME.part`` and renames it to ``NAME`` when complete (an atomic
  ``os.replace`` on a local file system), so the final name only ever holds
  a complete checkpoint.
- **Test metrics written by every rank.** mmengine's ``LoggerHook`` dumps
  the test metrics to ``<timestamp>/<timestamp>.json`` on every rank, and
  the ranks share that path: their records differ (each its own times), so
  when a longer one is overwritten by a shorter the file ends with the
  longer's tail and is no JSON (seen with ``tools/dist_test.sh CFG 2``).
  :class:`MainProcessLoggerHook` writes it on the main process only, and
  :class:`AtomicCheckpointRunner` uses it wherever a config asks for
  mmengine's ``LoggerHook``.
"""
import os
import os.path as osp
import random
from typing import Any, Dict, Optional

import numpy as np
import torch
from mmengine.dist import is_main_process, master_only
from mmengine.hooks import CheckpointHook, Hook, LoggerHook
from mmengine.registry import HOOKS
from mmengine.runner import Runner

RANDOM_STATE_DIR = 'random_state'


def get_random_state() -> Dict[str, Any]:
    """This process's generator states (Python, NumPy, torch CPU and CUDA)."""
    state = dict(python=random.getstate(), numpy=np.random.get_state(),
                 torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_random_state(state: Dict[str, Any]) -> None:
    """Restore what :func:`get_random_state` returned."""
    random.setstate(_as_python_state(state['python']))
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def _as_python_state(value: Any) -> tuple:
    """``random.setstate`` wants ``(version, tuple_of_ints, gauss)``."""
    version, internal, gauss = value
    return version, tuple(internal), gauss


class _RestoreAfter:
    """Iterator proxy: passes ``next`` through and restores a random state
    once ``skip`` items were taken (the batches the resumed loop skips)."""

    def __init__(self, iterator, skip: int, state: Dict[str, Any]) -> None:
        self._iterator = iterator
        self._skip = skip
        self._state = state
        if skip == 0:
            self._restore()

    def _restore(self) -> None:
        if self._state is not None:
            set_random_state(self._state)
            self._state = None

    def __iter__(self):
        return self

    def __next__(self):
        item = next(self._iterator)
        self._skip -= 1
        if self._skip == 0:
            self._restore()
        return item

    def __getattr__(self, name: str):
        return getattr(self._iterator, name)


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Save the generator states with every checkpoint, restore on resume.

    Works with mmengine's ``CheckpointHook`` (it saves when that hook saves)
    and with the iteration- and epoch-based train loops; see the module
    docstring. Added by ``tools/train.py`` unless the config lists it.

    Args:
        strict (bool): On resume, raise if the state file of this rank is
            missing (a checkpoint written without this hook). Defaults to
            False: warn and continue with mmengine's re-seeded generators.
    """

    # before CheckpointHook (VERY_LOW), so that the state of iteration N is
    # taken before anything else of that iteration's end can draw numbers
    priority = 'LOW'

    def __init__(self, strict: bool = False) -> None:
        if not isinstance(strict, bool):
            raise TypeError(f'RandomStateHook: strict must be a bool, got '
                            f'{type(strict).__name__} {strict!r}')
        self.strict = strict
        self._resume_state: Optional[Dict[str, Any]] = None

    # -- saving ---------------------------------------------------------
    @staticmethod
    def _checkpoint_hook(runner) -> Optional[CheckpointHook]:
        for hook in runner.hooks:
            if isinstance(hook, CheckpointHook):
                return hook
        return None

    def _path(self, runner, tag: str) -> str:
        hook = self._checkpoint_hook(runner)
        out_dir = getattr(hook, 'out_dir', None) or runner.work_dir
        return osp.join(out_dir, RANDOM_STATE_DIR,
                        f'{tag}_rank_{runner.rank}.pth')

    def _save(self, runner, tag: str) -> None:
        path = self._path(runner, tag)
        os.makedirs(osp.dirname(path), exist_ok=True)
        partial = path + '.part'
        torch.save(get_random_state(), partial)
        os.replace(partial, path)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        hook = self._checkpoint_hook(runner)
        if hook is None or hook.by_epoch:
            return
        if hook.every_n_train_iters(runner, hook.interval, hook.save_begin) \
                or (hook.save_last and hook.is_last_train_iter(runner)):
            self._save(runner, f'iter_{runner.iter + 1}')

    def after_train_epoch(self, runner) -> None:
        hook = self._checkpoint_hook(runner)
        if hook is None or not hook.by_epoch:
            return
        if hook.every_n_epochs(runner, hook.interval, hook.save_begin) or (
                hook.save_last and hook.is_last_train_epoch(runner)):
            self._save(runner, f'epoch_{runner.epoch + 1}')

    # -- restoring ------------------------------------------------------
    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # mmengine keeps resume=... as a private attribute; load_from alone
        # (fine-tuning) starts afresh
        if not getattr(runner, '_resume', False):
            return
        meta = checkpoint.get('meta', {})
        hook = self._checkpoint_hook(runner)
        by_epoch = hook is not None and hook.by_epoch
        tag = (f'epoch_{meta.get("epoch")}' if by_epoch else
               f'iter_{meta.get("iter")}')
        path = self._path(runner, tag)
        if not osp.isfile(path):
            message = (f'RandomStateHook: no random state {path} for this '
                       'checkpoint; the resumed run continues with re-seeded '
                       'generators and will not repeat the uninterrupted '
                       'run exactly')
            if self.strict:
                raise FileNotFoundError(message)
            runner.logger.warning(message)
            return
        self._resume_state = torch.load(path, weights_only=True)

    def before_train(self, runner) -> None:
        state, self._resume_state = self._resume_state, None
        if state is None:
            return
        loop = runner.train_loop
        iterator = getattr(loop, 'dataloader_iterator', None)
        if iterator is not None:  # iteration-based: after the skipped batches
            loop.dataloader_iterator = _RestoreAfter(iterator, loop.iter,
                                                     state)
        else:
            set_random_state(state)


@HOOKS.register_module()
class MainProcessLoggerHook(LoggerHook):
    """mmengine's ``LoggerHook`` whose test metrics file is written by the
    main process only (see the module docstring); every rank still logs
    them. Otherwise the same hook, options and outputs."""

    def after_test_epoch(self, runner, metrics=None) -> None:
        if is_main_process():
            return super().after_test_epoch(runner, metrics)
        _, log_str = runner.log_processor.get_log_after_epoch(
            runner, len(runner.test_dataloader), 'test', with_non_scalar=True)
        runner.logger.info(log_str)


def _is_upstream_logger(cfg: Any) -> bool:
    """Whether a ``default_hooks.logger`` entry names mmengine's own
    ``LoggerHook`` (by name, registry scope or class), not a subclass."""
    if not isinstance(cfg, dict):
        return False
    kind = cfg.get('type')
    return kind is LoggerHook or kind in ('LoggerHook', 'mmengine.LoggerHook')


class AtomicCheckpointRunner(Runner):
    """mmengine's ``Runner`` whose local checkpoints appear complete or not
    at all: written to ``NAME.part`` and renamed (see the module docstring).
    Remote ``out_dir`` (``s3://`` ...) are written as upstream does. Like
    upstream's, only the main process writes. Where the config asks for
    mmengine's ``LoggerHook`` (the default), it registers
    :class:`MainProcessLoggerHook` with the same options."""

    def register_default_hooks(self, hooks=None) -> None:
        hooks = dict(hooks or {})
        logger = hooks.get('logger', dict(type='LoggerHook'))
        if _is_upstream_logger(logger):
            hooks['logger'] = dict(logger, type=MainProcessLoggerHook)
        return super().register_default_hooks(hooks)

    @master_only
    def save_checkpoint(self, out_dir: str, filename: str, *args,
                        **kwargs) -> None:
        if '://' in str(out_dir):
            return super().save_checkpoint(out_dir, filename, *args,
                                           **kwargs)
        partial = filename + '.part'
        super().save_checkpoint(out_dir, partial, *args, **kwargs)
        os.replace(osp.join(out_dir, partial), osp.join(out_dir, filename))
