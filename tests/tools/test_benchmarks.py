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
    # the bottleneck is the reference of every ratio
    assert float(rows[1][4]) == 1.0
    # the C3 block's parameters do not depend on the channels (7x7, k=8)
    assert rows[3][2] == '1,286'


def test_benchmark_message_passing_reports_error_and_speed():
    out = run_script('benchmark_message_passing.py', '--shapes', '4x512x49',
                     '--repeat', '1', '--threads', '1', '--modes', 'fwd')
    assert re.search(r'4x512x49', out), out
    numbers = re.findall(r'\d\.\d+e-0\d', out)
    assert numbers, f'no relative error printed:\n{out}'
    assert all(float(n) < 1e-4 for n in numbers), out
