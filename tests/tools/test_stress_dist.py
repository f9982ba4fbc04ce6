"""tools/misc/stress_dist.py: one real round, and what counts as unclean."""
import importlib.util
import json
import sys

import pytest

from ._run import ROOT, TOOLS, free_port, run


def _module():
    spec = importlib.util.spec_from_file_location(
        'stress_dist', f'{TOOLS}/misc/stress_dist.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('code,log,reason', [
    (0, 'Iter(test) [4/4] mIoU: 12.3\n', ''),
    (1, 'ChildFailedError', 'exit code 1'),
    (0, 'Signal 6 (SIGABRT) received by PID 42', "log says 'Signal 6'"),
    (0, 'rank 0 got SIGABRT', "log says 'SIGABRT'"),
    (0, "terminate called after throwing an instance of 'gloo::IoException'",
     "log says 'terminate called'"),
    (0, 'exitcode  : -6 (pid: 17)', "log says 'exitcode  : -6'"),
])
def test_unclean_reason(code, log, reason):
    got = _module().unclean_reason(code, log)
    assert (got == '') if not reason else (reason in got), got


def test_one_round_trains_tests_and_reports(tmp_path):
    out = tmp_path / 'stress'
    _, printed = run([sys.executable, f'{TOOLS}/misc/stress_dist.py',
                      '--rounds', '1', '--iters', '1', '--num-images', '2',
                      '--out', str(out)], cwd=ROOT, PORT=free_port())
    assert '[stress] round 1/1: train clean' in printed
    assert '1 of 1 rounds ended cleanly' in printed
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['clean_rounds'] == 1 and summary['rounds'] == 1
    assert summary['details'][0]['test'] == 'clean'
    assert not (out / 'round_001').exists()  # clean rounds leave no work dir


def test_bad_arguments_are_named(tmp_path):
    code, printed = run([sys.executable, f'{TOOLS}/misc/stress_dist.py',
                         '--rounds', '0'], cwd=tmp_path, check=False)
    assert code == 2 and '--rounds must be >= 1, got 0' in printed
