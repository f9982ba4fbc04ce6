"""Safe checkpoint loading: mmengine's checkpoints load, malicious pickles do not."""
import os
import pickle

import numpy as np
import pytest
import torch

from mmc3.utils import (TORCH_TRUST_ENV, register_checkpoint_safe_globals,
                        trust_checkpoints)


class _RunsShell:
    """An object whose unpickling would run a shell command."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}', )


def _mmengine_like_checkpoint():
    """What mmengine's Runner.save_checkpoint writes, built with its own types."""
    from mmengine.logging import MessageHub
    hub = MessageHub.get_instance('mmc3_test_checkpoint')
    hub.update_scalar('train/loss', 1.5)
    hub.update_scalar('train/loss', np.float64(1.25))
    hub.update_info('iter', 7)
    hub.update_info('dataset_meta', dict(classes=('car', 'person', 'dog')))
    model = torch.nn.Linear(3, 2)
    optim = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3)).sum().backward()
    optim.step()
    return dict(
        meta=dict(epoch=0, iter=7, seed=np.int64(3),
                  message_hub=hub.state_dict()),
        state_dict=model.state_dict(),
        optimizer=optim.state_dict())


@pytest.fixture(autouse=True)
def _safe_default(monkeypatch):
    monkeypatch.delenv(TORCH_TRUST_ENV, raising=False)
    monkeypatch.delenv('TORCH_FORCE_WEIGHTS_ONLY_LOAD', raising=False)
    yield


def test_mmengine_checkpoint_loads_with_weights_only(tmp_path):
    path = tmp_path / 'iter_7.pth'
    torch.save(_mmengine_like_checkpoint(), path)
    register_checkpoint_safe_globals()
    from mmengine.runner import load_checkpoint
    from mmengine.runner.checkpoint import _load_checkpoint
    ckpt = _load_checkpoint(str(path), map_location='cpu')
    buffer = ckpt['meta']['message_hub']['log_scalars']['train/loss']
    assert buffer.current() == pytest.approx(1.25)
    assert ckpt['meta']['iter'] == 7
    model = torch.nn.Linear(3, 2)
    load_checkpoint(model, str(path), map_location='cpu')
    torch.testing.assert_close(model.weight, ckpt['state_dict']['weight'])


def test_checkpoint_needs_the_allow_list(tmp_path):
    """Without mmc3's allow-list, torch refuses the same file (so the test above
    really exercises it)."""
    path = tmp_path / 'iter_7.pth'
    torch.save(_mmengine_like_checkpoint(), path)
    saved = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        with pytest.raises(pickle.UnpicklingError, match='Weights only'):
            torch.load(path)
    finally:
        torch.serialization.add_safe_globals(saved)
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in unsafe
    from mmc3.utils.checkpoint import mmengine_checkpoint_safe_globals
    allowed = {f'{o.__module__}.{o.__qualname__}'
               for o in mmengine_checkpoint_safe_globals()}
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in allowed
    assert 'posix.system' not in allowed and 'os.system' not in allowed


@pytest.mark.parametrize('via', ['torch.load', 'mmengine'])
def test_malicious_checkpoint_is_refused(tmp_path, via):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save(dict(state_dict={}, meta=dict(payload=_RunsShell(str(marker)))),
               path)
    register_checkpoint_safe_globals()
    with pytest.raises(pickle.UnpicklingError, match='system'):
        if via == 'torch.load':
            torch.load(path)
        else:
            from mmengine.runner.checkpoint import _load_checkpoint
            _load_checkpoint(str(path), map_location='cpu')
    assert not marker.exists()


def test_trust_opt_out_loads_legacy_pickles(tmp_path):
    """The explicit opt-out restores full unpickling (and its danger)."""
    marker = tmp_path / 'ran'
    path = tmp_path / 'legacy.pth'
    torch.save(dict(payload=_RunsShell(str(marker))), path)
    trust_checkpoints()
    try:
        torch.load(path)
    finally:
        trust_checkpoints(False)
    assert marker.exists()
    assert TORCH_TRUST_ENV not in os.environ


def _getattr_exploit(marker: str) -> bytes:
    """A weights-only pickle that runs ``touch marker`` if ``getattr`` is the
    real builtin: it fetches ``torch._utils``' globals and ``builtins.exec``
    through getattr, points ``torch._utils.torch.nn.Parameter`` at exec (via
    HistoryBuffer objects, whose state the unpickler may set) and calls the
    allow-listed ``_rebuild_parameter(code, {}, None)``."""

    def glob(module, name):
        return b'c' + module.encode() + b'\n' + name.encode() + b'\n'

    def text(value):
        data = value.encode()
        return b'X' + len(data).to_bytes(4, 'little') + data

    getattr_ = glob('builtins', 'getattr')
    buffer = glob('mmengine.logging.history_buffer', 'HistoryBuffer') + b')R'
    exec_ = (getattr_ + getattr_ + getattr_ + text('__self__') + b'\x86R' +
             text('exec') + b'\x86R')
    fake_parameter = buffer + b'}' + text('Parameter') + exec_ + b'sb'
    fake_torch = buffer + b'}' + text('nn') + fake_parameter + b'sb'
    code = f"import os; os.system('touch {marker}')"
    return (b'\x80\x02' + getattr_ + glob('torch._utils', '_rebuild_parameter')
            + text('__globals__') + b'\x86R' + text('torch') + fake_torch +
            b's' + glob('torch._utils', '_rebuild_parameter') + text(code) +
            b'}N\x87R.')


def test_getattr_chain_cannot_run_code(tmp_path):
    """HistoryBuffer needs ``getattr`` by name; the real builtin would let a
    crafted checkpoint run code under weights_only=True (checked in a child
    process: a successful exploit rewires torch)."""
    import subprocess
    import sys
    import zipfile
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    with zipfile.ZipFile(path, 'w') as archive:
        archive.writestr('evil/data.pkl', _getattr_exploit(str(marker)))
        archive.writestr('evil/byteorder', 'little')
        archive.writestr('evil/version', '3\n')
    script = ('import pickle, torch, mmc3.utils\n'
              'try:\n'
              f'    torch.load({str(path)!r})\n'
              'except pickle.UnpicklingError as e:\n'
              '    print("refused:", e)\n')
    proc = subprocess.run([sys.executable, '-c', script],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=300)
    assert not marker.exists(), proc.stdout[-3000:]
    assert 'refused:' in proc.stdout, proc.stdout[-3000:]
    assert "getattr(<function _rebuild_parameter" in proc.stdout


def test_history_buffer_getattr_allows_only_its_statistics():
    from mmengine.logging.history_buffer import HistoryBuffer

    from mmc3.utils.checkpoint import _history_buffer_getattr
    assert _history_buffer_getattr(HistoryBuffer, 'min') is HistoryBuffer.min
    for obj, name in ((HistoryBuffer, '__init__'), (HistoryBuffer, '_data'),
                      (os, 'system'), (torch.load, '__globals__')):
        with pytest.raises(pickle.UnpicklingError, match='only public'):
            _history_buffer_getattr(obj, name)


# --------------------------------------------------------------------------
# The allow-list itself: exactly these globals, and nothing that runs code
# --------------------------------------------------------------------------
# Every global mmc3 adds to torch's weights_only allow-list, spelled out. A
# change to the list must change this test (and be argued in review).
PINNED_SAFE_GLOBALS = (
    'mmengine.logging.history_buffer:HistoryBuffer',
    'numpy:ndarray',
    'numpy:dtype',
    'numpy.core.multiarray:_reconstruct',
    'numpy.core.multiarray:scalar',
    'numpy._core.multiarray:_reconstruct',
    'numpy._core.multiarray:scalar',
) + tuple(f'numpy.dtypes:{name}' for name in (
    'BoolDType', 'Int8DType', 'Int16DType', 'Int32DType', 'Int64DType',
    'UInt8DType', 'UInt16DType', 'UInt32DType', 'UInt64DType',
    'Float16DType', 'Float32DType', 'Float64DType'))


def _resolve(spec: str):
    """The object named ``module:attr``, or None where it does not exist."""
    import importlib
    module, attr = spec.split(':')
    try:
        return getattr(importlib.import_module(module), attr, None)
    except ImportError:
        return None


def test_the_allow_list_is_exactly_the_pinned_set():
    """Registered in a fresh interpreter: what ``import mmc3.utils`` adds to
    torch's allow-list is the pinned set plus the HistoryBuffer-only getattr
    stand-in, nothing else (torch's own types, which torch registers when
    its distributed modules load, aside)."""
    import subprocess
    import sys
    script = (
        'import torch\n'
        'before = {id(o) for o in torch.serialization.get_safe_globals()}\n'
        'import mmc3.utils\n'
        'added = []\n'
        'for entry in torch.serialization.get_safe_globals():\n'
        '    if id(entry) in before: continue\n'
        # torch registers its own DTensor types when those modules load
        '    if getattr(entry, "__module__", "").startswith("torch."): continue\n'
        '    if isinstance(entry, tuple):\n'
        '        obj, name = entry\n'
        '        added.append(f"{obj.__module__}.{obj.__qualname__} as {name}")\n'
        '    else:\n'
        '        added.append(f"{entry.__module__}:{entry.__qualname__}:{id(entry)}")\n'
        'print("\\n".join(sorted(added)))\n')
    out = subprocess.run([sys.executable, '-c', script], check=True,
                         stdout=subprocess.PIPE, text=True).stdout.split('\n')
    aliases = [line for line in out if ' as ' in line]
    assert aliases == ['mmc3.utils.checkpoint._history_buffer_getattr as '
                       'builtins.getattr']
    # objects (by id) of the pinned names that exist in this numpy
    from mmc3.utils import mmengine_checkpoint_safe_globals
    expected = {_resolve(s) for s in PINNED_SAFE_GLOBALS} - {None}
    assert set(mmengine_checkpoint_safe_globals()) == expected
    assert len([line for line in out if line and ' as ' not in line]) == len(
        expected)


def _global(module: str, name: str) -> bytes:
    return b'c' + module.encode() + b'\n' + name.encode() + b'\n'


def _text(value: str) -> bytes:
    data = value.encode()
    return b'X' + len(data).to_bytes(4, 'little') + data


def _call(func: bytes, *args: bytes) -> bytes:
    """Pickle ops for ``func(*args)`` (protocol 2: MARK ... TUPLE REDUCE)."""
    return func + b'(' + b''.join(args) + b'tR'


def _payloads(marker: str):
    """Pickles that create ``marker`` when unpickled, through globals torch
    does not refuse on its own (only os/posix/nt/sys are blocked by torch
    itself): each is refused only because mmc3's allow-list lacks it."""
    touch = f"open({marker!r}, 'w').close()"
    import_os = _call(_global('builtins', '__import__'), _text('os'))
    return {
        'builtins.eval': _call(_global('builtins', 'eval'), _text(touch)),
        'builtins.exec': _call(_global('builtins', 'exec'), _text(touch)),
        'builtins.compile+exec': _call(
            _global('builtins', 'exec'),
            _call(_global('builtins', 'compile'), _text(touch), _text('x'),
                  _text('exec'))),
        'builtins.open': _call(_global('builtins', 'open'), _text(marker),
                               _text('w')),
        'subprocess.check_call': _call(
            _global('subprocess', 'check_call'),
            b'(' + _text('touch') + _text(marker) + b'l'),
        'operator.methodcaller(__import__)': _call(
            _call(_global('operator', 'methodcaller'), _text('system'),
                  _text(f'touch {marker}')), import_os),
        'operator.attrgetter(__import__)': _call(
            _call(_global('operator', 'attrgetter'), _text('system')),
            import_os),
        'importlib.import_module': _call(
            _global('importlib', 'import_module'), _text('os')),
        'functools.partial(eval)': _call(
            _call(_global('functools', 'partial'), _global('builtins', 'eval'),
                  _text(touch))),
        'pydoc.locate': _call(_global('pydoc', 'locate'),
                              _text('os.system')),
        'getattr(HistoryBuffer.__init__.__globals__)': _call(
            _global('builtins', 'getattr'),
            _call(_global('builtins', 'getattr'),
                  _global('mmengine.logging.history_buffer', 'HistoryBuffer'),
                  _text('__init__')), _text('__globals__')),
    }


@pytest.mark.parametrize('name', sorted(_payloads('m')))
def test_payloads_torch_does_not_block_are_refused(tmp_path, name):
    """Each payload names a global torch itself would allow once listed: the
    refusal is mmc3's list at work (adding e.g. ``builtins.eval`` to it makes
    this test fail)."""
    import zipfile
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    with zipfile.ZipFile(path, 'w') as archive:
        archive.writestr('evil/data.pkl',
                         b'\x80\x02' + _payloads(str(marker))[name] + b'.')
        archive.writestr('evil/byteorder', 'little')
        archive.writestr('evil/version', '3\n')
    register_checkpoint_safe_globals()
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)
    assert not marker.exists()
