"""Smoke test of tools/analysis_tools/benchmark_detector.py (worker mode,
in-process, on shrunk copies of two detector configs)."""
import importlib.util
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from tests._shrink_mmdet import shrink_config

ROOT = Path(__file__).resolve().parents[3]
TOOL = ROOT / 'tools' / 'analysis_tools' / 'benchmark_detector.py'


@pytest.fixture(autouse=True)
def _restore_threads():
    """The worker sets torch's thread count; give it back afterwards."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def load_tool():
    spec = importlib.util.spec_from_file_location('benchmark_detector', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _small(tmp_path, name):
    small = shrink_config(
        Config.fromfile(str(ROOT / 'configs' / f'faster_rcnn_r101_{name}.py')))
    path = tmp_path / f'small_{name}.py'
    small.dump(str(path))
    return str(path)


@pytest.mark.parametrize('names,impl', [(('baseline', 'c3', 'se'), None),
                                        (('baseline', 'c3'), 'dense')])
def test_alternates_configs_and_profiles_the_blocks(names, impl, tmp_path,
                                                    capsys):
    """Every config runs its iterations in alternation, the table has one
    row per config with the median, spread and per-round ratio, and the
    profile attributes a share of the iteration to the blocks, forward and
    backward (none to the baseline)."""
    tool = load_tool()
    extra = ['--c3-message-impl', impl] if impl else []
    out = tool.main([_small(tmp_path, n) for n in names] + [
        '--size', '64', '--rois', '4', '--warmup', '0', '--iters', '2',
        '--profiles', '2', '--threads', '1'] + extra)
    text = capsys.readouterr().out
    assert out['threads'] == 1
    assert out['rates']['bandwidth'] > 0 and out['rates']['sgemm'] > 0
    assert 'memory bandwidth' in text and 'sgemm' in text
    # alternation: the round lines print one time per config
    rounds = [line for line in text.splitlines()
              if line.startswith('round ')]
    assert len(rounds) == 2
    assert all(len(line.split(': ')[1].split()) == len(names)
               for line in rounds)
    for name, r in zip(names, out['results']):
        assert len(r['times']) == 2 and min(r['times']) > 0
        assert len(r['faults']) == 2 and min(r['faults']) >= 0
        assert (r['block_params'] > 0) == (name != 'baseline')
        row = [line for line in text.splitlines()
               if line.startswith(f'| small_{name} |')]
        assert len(row) == 1
        # the last column: the median fresh memory per iteration, in MiB
        assert row[0].rstrip(' |').split('|')[-1].strip().isdigit()
        prof = r['profile']
        assert len(r['profiles']) == 2 and prof in r['profiles']
        if name == 'baseline':
            assert r['blocks'] == 0 and 'no blocks' in row[0]
            assert prof['forward'] == 0 and prof['backward'] == 0
        else:
            assert r['blocks'] > 0 and prof['ranges'] == r['blocks']
            assert prof['forward'] > 0 and prof['backward'] > 0
            assert prof['forward'] + prof['backward'] < prof['wall']
            assert '%) of ' in row[0]
        if name == 'c3':
            assert r['c3_message_impls'] == [impl or 'auto']
    assert out['results'][0]['times'] and '1.000x' in text


@pytest.mark.parametrize('count', [1, 2, 5])
def test_round_order_rotates_every_position(count):
    """Each round runs every config once, and over ``count`` rounds every
    config runs once in every position (no config always runs last)."""
    tool = load_tool()
    orders = [tool.round_order(count, i) for i in range(3 * count)]
    assert all(sorted(o) == list(range(count)) for o in orders)
    for pos in range(count):
        assert sorted(o[pos] for o in orders[:count]) == list(range(count))
    assert orders[count] == orders[0]


def test_run_follows_the_rotated_order(monkeypatch):
    """The timed rounds call the configs in the rotated order (A B C, B C A,
    C A B, ...), and each config's times stay its own."""
    tool = load_tool()
    calls = []

    class Fake:
        def __init__(self, config, args):
            self.name, self.times = config, []

        def step(self):
            calls.append(self.name)
            return float(len(calls))

        def info(self):
            return dict(name=self.name, times=self.times)

    monkeypatch.setattr(tool, 'Detector', Fake)
    args = tool.parse_args(['a', 'b', 'c', '--warmup', '1', '--iters', '4',
                            '--no-profile', '--threads', '1'])
    out = tool.run(args)
    timed = calls[3:]
    assert timed == list('abc' 'bca' 'cab' 'abc')
    for r in out['results']:
        assert r['times'] == [float(3 + i + 1) for i, n in enumerate(timed)
                              if n == r['name']]


def test_profiles_follow_the_rotated_order_and_report_the_median(
        monkeypatch, capsys):
    """``--profiles`` profiled iterations per config run after the timed
    ones in the rotated order; the table gives the median share, its
    min-max over the profiled iterations and the ratio it implies,
    ``1 / (1 - share)``."""
    tool = load_tool()
    calls = []
    shares = dict(a=[0.0, 0.0, 0.0], b=[0.08, 0.02, 0.05],
                  c=[0.10, 0.20, 0.30])

    class Fake:
        def __init__(self, config, args):
            self.name, self.config, self.times = config, config, []

        def step(self):
            return 1.0

        def info(self):
            return dict(config=self.config, times=self.times, faults=[],
                        params=1, block_params=int(self.name != 'a'),
                        blocks=int(self.name != 'a'))

    def fake_profile(det):
        calls.append(det.name)
        share = shares[det.name][calls.count(det.name) - 1]
        # wall 10 s, the share split 1:3 between forward and backward
        return dict(wall=10.0, forward=2.5 * share, backward=7.5 * share,
                    ranges=int(det.name != 'a'))

    monkeypatch.setattr(tool, 'Detector', Fake)
    monkeypatch.setattr(tool, 'profile_blocks', fake_profile)
    args = tool.parse_args(['a', 'b', 'c', '--warmup', '0', '--iters', '1',
                            '--profiles', '3', '--threads', '1'])
    out = tool.run(args)
    assert calls == list('abc' 'bca' 'cab')
    medians = [r['profile'] for r in out['results']]
    assert [tool.block_share(p) for p in medians] == pytest.approx(
        [0.0, 0.05, 0.20])
    tool.report(args, out)
    rows = {line.split('|')[1].strip(): line.split('|')
            for line in capsys.readouterr().out.splitlines()
            if line.startswith('| ') and line.split('|')[1].strip() in 'abc'}
    assert 'no blocks' in rows['a'][6]
    assert rows['b'][6].strip().startswith('5.0% (1.2% + 3.8%)')
    assert '3 iterations' in rows['b'][6]
    assert rows['b'][7].strip() == '[2.0-8.0]%'
    assert rows['b'][8].strip() == f'{1 / 0.95:.3f}x'
    assert rows['c'][7].strip() == '[10.0-30.0]%'
    assert rows['c'][8].strip() == '1.250x'


def test_median_profile_of_an_even_count_is_the_lower_middle():
    tool = load_tool()
    profs = [dict(wall=1.0, forward=0.0, backward=s) for s in (0.4, 0.1,
                                                               0.3, 0.2)]
    assert tool.median_profile(profs)['backward'] == 0.2
    assert tool.median_profile([]) is None


def test_argument_errors():
    tool = load_tool()
    assert tool.parse_args(['--no-profile']).profiles == 0
    assert tool.parse_args([]).profiles == 3
    for bad in (['--iters', '0'], ['--rois', '0'], ['--warmup', '-1'],
                ['--profiles', '-1']):
        with pytest.raises(SystemExit):
            tool.parse_args(bad)
    args = tool.parse_args([])
    assert args.rois == 512 and args.iters >= 10
    assert len(args.configs) == 5


def test_norms_take_the_batch_statistics_and_return_to_the_recipe(tmp_path):
    """Before timing, every BN holds the synthetic batch's statistics (not
    the identity a random model starts with) and is back in the recipe's
    mode (frozen BNs in eval), with its momentum restored."""
    from torch.nn.modules.batchnorm import _BatchNorm
    tool = load_tool()
    args = tool.parse_args([_small(tmp_path, 'c3'), '--size', '64',
                            '--rois', '4'])
    det = tool.Detector(args.configs[0], args)
    norms = [m for m in det.model.modules() if isinstance(m, _BatchNorm)]
    assert norms
    for m in norms:
        assert m.momentum == 0.1
        assert int(m.num_batches_tracked) == 1
        assert not torch.allclose(m.running_var, torch.ones_like(
            m.running_var))
    frozen = [m for m in norms if not m.weight.requires_grad]
    assert frozen and all(not m.training for m in frozen)


def test_counts_the_page_faults_of_fresh_memory():
    """The fault counter behind the "fresh memory" column sees newly
    mapped memory being touched.

    The memory is mapped here, not taken from ``torch.empty``: in a long
    test process glibc may serve even 64 MiB from heap pages that earlier
    tests already touched, which fault no more."""
    import mmap
    tool = load_tool()
    page = tool.os.sysconf('SC_PAGE_SIZE')
    pages = 2**26 // page  # 64 MiB
    fresh = mmap.mmap(-1, pages * page)
    try:
        before = tool._minor_faults()
        for i in range(0, pages * page, page):
            fresh[i] = 1
        # transparent huge pages fault once per 2 MiB: at least 32 here
        assert tool._minor_faults() - before >= 2**26 // 2**21
    finally:
        fresh.close()
    assert tool._fresh_mib([256, 2**20 // page * 300, 2**30]) == '300'
