"""Loading mmengine checkpoints safely on torch >= 2.6.

torch >= 2.6 calls ``torch.load`` with ``weights_only=True`` by default: the
unpickler only rebuilds an allow-list of types, so a checkpoint cannot run
code while it is read. mmengine 0.10.7 calls ``torch.load`` without the
argument, and its own training checkpoints hold more than tensors: the
message hub (``HistoryBuffer`` objects holding numpy arrays, numpy scalars)
and the dataset meta. ``tools/test.py CFG CKPT``, ``--resume`` and
``load_from`` then fail with ``Weights only load failed``.

This module keeps ``weights_only=True`` and adds exactly the types those
checkpoints need to torch's allow-list (:func:`register_checkpoint_safe_globals`,
applied when :mod:`mmc3.utils` is imported). Any other global in a pickle,
e.g. ``os.system`` smuggled in through ``__reduce__``, is still refused.

For trusted legacy checkpoints that need more, the opt-out is explicit:
:func:`trust_checkpoints` (the tools' ``--trust-checkpoint`` flag), or the
environment variable ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` that torch itself
reads. Both run arbitrary pickled code: only use them on files you trust.
"""
import importlib
import inspect
import os
import pickle
from typing import Any, List, Tuple

import torch

#: Environment variable read by ``torch.load`` (torch >= 2.6): when true,
#: a ``torch.load`` call that does not pass ``weights_only`` unpickles
#: anything.
TORCH_TRUST_ENV = 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'

# (module, attribute) of every global an mmengine 0.10.7 training checkpoint
# references beyond torch's default allow-list. Found by training with
# mmdet/mmseg/mmpretrain configs and listing the pickles' globals with
# ``torch.serialization.get_unsafe_globals_in_checkpoint``. numpy moved its
# core to ``numpy._core`` in 2.0: both spellings are listed, the missing one
# is skipped.
_MMENGINE_CHECKPOINT_GLOBALS: Tuple[Tuple[str, str], ...] = (
    # MessageHub.log_scalars: {name: HistoryBuffer}
    ('mmengine.logging.history_buffer', 'HistoryBuffer'),
    # (its ``statistics_methods`` are pickled as ``getattr(HistoryBuffer,
    # 'min')``: see _history_buffer_getattr, allowed under getattr's name)
    # HistoryBuffer stores numpy arrays; runtime info holds numpy scalars.
    ('numpy', 'ndarray'),
    ('numpy', 'dtype'),
    ('numpy.core.multiarray', '_reconstruct'),
    ('numpy.core.multiarray', 'scalar'),
    ('numpy._core.multiarray', '_reconstruct'),
    ('numpy._core.multiarray', 'scalar'),
)
# numpy >= 1.25 pickles a dtype by its class (numpy.dtypes.Float64DType, ...).
_NUMPY_DTYPES = ('bool', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16',
                 'uint32', 'uint64', 'float16', 'float32', 'float64')


def mmengine_checkpoint_safe_globals() -> List[Any]:
    """The objects :func:`register_checkpoint_safe_globals` allow-lists.

    Returns:
        list: classes and functions importable in this environment; names
        that do not exist in the installed numpy are skipped.
    """
    found = []
    for module_name, attr in _MMENGINE_CHECKPOINT_GLOBALS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        obj = getattr(module, attr, None)
        if obj is not None and obj not in found:
            found.append(obj)
    import numpy as np
    for name in _NUMPY_DTYPES:
        dtype_cls = type(np.dtype(name))
        if dtype_cls is not np.dtype and dtype_cls not in found:
            found.append(dtype_cls)
    return found


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """``getattr`` as a checkpoint may call it: HistoryBuffer statistics only.

    A ``HistoryBuffer`` pickles its statistics methods as
    ``getattr(HistoryBuffer, 'min')``, so ``builtins.getattr`` must resolve.
    The real ``getattr`` must not be allow-listed: with it a pickle reaches
    any function's ``__globals__`` and ``builtins.exec`` and, by replacing a
    module global that an allow-listed rebuild function calls, runs code
    under ``weights_only=True``. This stand-in is registered under
    getattr's name and only returns plain functions of ``HistoryBuffer``
    whose names are public (``min``, ``max``, ``current``, ``mean`` and
    registered statistics).
    """
    from mmengine.logging.history_buffer import HistoryBuffer
    if (obj is HistoryBuffer and isinstance(name, str)
            and not name.startswith('_')):
        value = inspect.getattr_static(HistoryBuffer, name, None)
        if inspect.isfunction(value):
            return value
    raise pickle.UnpicklingError(
        f'checkpoint asks for getattr({obj!r}, {name!r}); only public '
        'HistoryBuffer methods are allowed when loading with '
        'weights_only=True (use --trust-checkpoint for trusted files)')


def register_checkpoint_safe_globals() -> List[Any]:
    """Allow-list the types mmengine's checkpoints need, keep weights_only.

    Idempotent. Affects every later ``torch.load`` in this process that uses
    ``weights_only=True`` (torch's default), including mmengine's
    ``load_checkpoint``, ``Runner.resume`` and ``load_from``.

    Returns:
        list: the objects that were allow-listed.
    """
    safe = mmengine_checkpoint_safe_globals()
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is not None:  # torch < 2.4 has no allow-list (and no default)
        # (object, name) pairs need torch >= 2.5
        add(safe + [(_history_buffer_getattr, 'builtins.getattr')])
    return safe


def trust_checkpoints(trust: bool = True) -> None:
    """Opt out of safe loading for trusted legacy checkpoints.

    Sets (or clears) ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` in this process, so
    ``torch.load`` calls that do not pass ``weights_only`` unpickle anything.
    A malicious file can then run code: use only on files you trust.

    Args:
        trust (bool): ``True`` to trust every checkpoint loaded afterwards,
            ``False`` to restore safe loading. Defaults to True.
    """
    if trust:
        os.environ[TORCH_TRUST_ENV] = '1'
    else:
        os.environ.pop(TORCH_TRUST_ENV, None)
