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
