"""The benchmark scripts run as a user runs them and print their tables.

Tiny settings (a few RoIs, one repeat): these tests check that the scripts
work and report what they measured, never how fast anything is.
"""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_script(script: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(ROOT / 'tools' / 'analysis_tools' / script),
         *args],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def table_rows(text: str) -> list:
    """Data rows of the markdown tables in ``text`` as lists of cells."""
    rows = []
    for line in text.splitlines():
        if line.startswith('|') and not set(line) <= set('|-: '):
            rows.append([c.strip() for c in line.strip('|').split('|')])
    return rows


def test_benchmark_blocks_prints_block_and_bottleneck_rows():
    out = run_script('benchmark_blocks.py', '--shapes', 'roi7', '--rois', '2',
                     '--blocks', 'se', 'c3', 'ge:theta-:global',
                     '--repeats', '1', '--warmup', '0', '--threads', '1')
    rows = table_rows(out)
    modules = [r[1] for r in rows[1:]]
    assert modules[0].startswith('bottleneck'), out
    assert modules[1:] == ['se', 'c3', 'ge:theta-:global'], out
    for row in rows[1:]:
        assert row[0] == '2x2048x7x7'
        assert float(row[3]) > 0  # latency was measured
    # the time ratio is the median of the per-pair ratios, within its
    # printed min-max
    for row in rows[2:]:
        med, lo, hi = map(float, re.match(
            r'([\d.]+) \[([\d.]+)-([\d.]+)\]', row[4]).groups())
        assert lo <= med <= hi
    # the bottleneck is the reference of the memory ratios: each is the
    # block's value over the bottleneck's, up to the printed rounding
    # (values to 0.05, ratios to 0.0005)
    ref = rows[1]
    assert float(ref[4]) == 1.0
    for row in rows[2:]:
        for value, reference, printed in ((5, 5, 6), (7, 7, 8)):
            if row[value] == 'n/a' or ref[reference] == 'n/a':
                continue
            a, b = float(row[value]), float(ref[reference])
            if b <= 0.1:  # too small a reference for the printed digits
                continue
            slack = 0.0005 + 0.05 / b + a * 0.05 / (b * (b - 0.05))
            assert abs(float(row[printed]) - a / b) <= slack, (row, ref)
    # the floor and the distance to it: time / floor, to the printed digits
    # (ms and floor printed to 0.05, the ratio to 0.05: a floor printed as
    # f lies in [f - 0.05, f + 0.05], so ms / floor may be off by up to
    # 0.05 / f + ms 0.05 / (f (f - 0.05)); e.g. 2.9 / 0.3 printed 11.7)
    for row in rows[1:]:
        ms, floor, times = float(row[3]), float(row[9]), float(row[10])
        assert floor > 0
        if floor <= 0.1:  # too small for the printed digits
            continue
        slack = 0.05 + (0.05 + ms * 0.05 / (floor - 0.05)) / floor
        assert abs(times - ms / floor) <= slack, row
    assert re.search(r'memory bandwidth [\d.]+ GB/s .*sgemm \d+ GFLOP/s',
                     out), out
    # the C3 block's parameters do not depend on the channels (7x7, k=8)
    assert rows[3][2] == '1,286'


def test_benchmark_ratio_is_block_over_reference():
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'benchmark_blocks', ROOT / 'tools' / 'analysis_tools' /
        'benchmark_blocks.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.ratio(3.0, 2.0) == '1.500'
    assert module.ratio(1.0, 4.0) == '0.250'
    assert module.ratio(None, 2.0) == module.ratio(1.0, 0.0) == 'n/a'


def test_benchmark_message_passing_reports_error_and_speed():
    out = run_script('benchmark_message_passing.py', '--shapes', '4x512x49',
                     '--repeat', '1', '--threads', '1', '--modes', 'fwd')
    assert re.search(r'4x512x49', out), out
    numbers = re.findall(r'\d\.\d+e-0\d', out)
    assert numbers, f'no relative error printed:\n{out}'
    assert all(float(n) < 1e-4 for n in numbers), out


def _revision_rows(out: str) -> dict:
    """block -> (median ratio, min, max, largest difference) of
    ``benchmark_revisions.py``'s table."""
    found = {}
    for row in table_rows(out)[1:]:
        med, lo, hi = map(float, re.match(
            r'([\d.]+) \[([\d.]+)-([\d.]+)\]', row[4]).groups())
        found[row[1]] = (med, lo, hi, float(row[5]))
    return found


def test_benchmark_revisions_against_this_checkout_is_identical():
    """The other revision is this very checkout: both compute the same
    blocks (difference 0), and each ratio lies within its min-max."""
    out = run_script('benchmark_revisions.py', str(ROOT), '--shapes', 'roi7',
                     '--rois', '2', '--blocks', 'se', 'ce', '--rounds', '2',
                     '--warmup', '0', '--threads', '1')
    rows = _revision_rows(out)
    assert sorted(rows) == ['ce', 'se'], out
    for med, lo, hi, diff in rows.values():
        assert lo <= med <= hi and diff == 0.0, out


def test_benchmark_revisions_runs_the_other_revisions_code(tmp_path):
    """A copy of the blocks whose SE doubles its output: SE differs by
    half its output (|y - 2y| / |2y|), CE not at all, so the other
    revision's own code ran, not this checkout's."""
    import shutil
    blocks = tmp_path / 'mmc3' / 'models' / 'blocks'
    shutil.copytree(ROOT / 'mmc3' / 'models' / 'blocks', blocks,
                    ignore=shutil.ignore_patterns('__pycache__'))
    source = (blocks / 'squeeze_excite.py').read_text()
    line = '        return scale_channels(x, self.gate(s), link)\n'
    assert line in source
    (blocks / 'squeeze_excite.py').write_text(
        source.replace(line, '        return 2 * scale_channels('
                       'x, self.gate(s), link)\n'))
    out = run_script('benchmark_revisions.py', str(tmp_path), '--shapes',
                     'roi7', '--rois', '2', '--blocks', 'se', 'ce',
                     '--rounds', '1', '--warmup', '0', '--threads', '1')
    rows = _revision_rows(out)
    assert abs(rows['se'][3] - 0.5) < 1e-3, out
    assert rows['ce'][3] == 0.0, out


def test_benchmark_revisions_refuses_a_folder_without_mmc3(tmp_path):
    proc = subprocess.run(
        [sys.executable,
         str(ROOT / 'tools' / 'analysis_tools' / 'benchmark_revisions.py'),
         str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
        timeout=600)
    assert proc.returncode == 2
    assert 'holds no mmc3 checkout' in proc.stderr
