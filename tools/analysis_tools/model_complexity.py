"""Parameters and FLOPs of models built from configs, no data needed; with
``--seed-tables``, the seeds' parameter/FLOP tables with our counts beside.

    python tools/analysis_tools/model_complexity.py configs/resnet20_*.py
    python tools/analysis_tools/model_complexity.py --seed-tables
    python tools/analysis_tools/model_complexity.py --seed-tables \\
        --counter thop

Parameters are counted exactly. FLOPs are multiply-accumulates of one image
(32x32 for CIFAR hosts, 224x224 otherwise; ``--shape`` overrides) from
mmengine's FlopAnalyzer (default) or ``thop`` 0.0.22, the counter of the
released C3 code (``pip install --no-deps thop==0.0.22``; the README's
test command installs it). C3 blocks are counted with their dense message
(see ``mmc3.analysis.complexity``).

In ``--seed-tables`` a count "agrees" when it rounds to the seed's printed
value at the seed's printed precision (``0.28M``: within +-0.005M). A
disagreement is printed as one (``NO``) and sets exit status 0 still: the
seeds are what they are; ``--strict`` exits 1 on any disagreement.
"""
import argparse
import glob
import json
import os
import os.path as osp
import sys
from typing import Dict, List, Optional

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

from mmc3.analysis.complexity import (COUNTERS, build_model,  # noqa: E402
                                      count_flops, count_params, input_shape)
from mmc3.analysis.seed_tables import SEED_TABLES, agrees  # noqa: E402

CONFIG_DIR = osp.join(ROOT, 'configs')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Count parameters and FLOPs of config models; '
        '--seed-tables prints the seeds\' tables beside our counts.')
    parser.add_argument('configs', nargs='*',
                        help='config files or globs (quote globs)')
    parser.add_argument('--seed-tables', action='store_true',
                        help='print every params/FLOPs table of the seeds '
                        'with our counts (configs default to configs/)')
    parser.add_argument('--counter', choices=COUNTERS, default='mmengine',
                        help='FLOP counter (default: mmengine)')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input size (default: 32x32 CIFAR, else 224)')
    parser.add_argument('--no-flops', action='store_true',
                        help='count parameters only (fast)')
    parser.add_argument('--json', help='also write the counts to this file')
    parser.add_argument('--strict', action='store_true',
                        help='exit 1 if a seed count disagrees')
    return parser.parse_args(argv)


def _expand(patterns: List[str]) -> List[str]:
    paths: List[str] = []
    for pattern in patterns:
        found = sorted(glob.glob(pattern)) if glob.has_magic(pattern) \
            else [pattern]
        if not found:
            raise SystemExit(f'error: no config matches {pattern!r}')
        for path in found:
            if not osp.isfile(path):
                raise SystemExit(f'error: config {path!r} does not exist')
            paths.append(path)
    return paths


class Counter:
    """Counts per config file, each model built and counted once."""

    def __init__(self, counter: str, shape, flops: bool) -> None:
        self.counter, self.shape, self.flops = counter, shape, flops
        self.cache: Dict[str, dict] = {}

    def __call__(self, path: str) -> dict:
        if path not in self.cache:
            from mmengine.config import Config
            cfg = Config.fromfile(path)
            model = build_model(cfg)
            shape = (3, *self.shape) if self.shape else input_shape(cfg)
            result = dict(config=osp.splitext(osp.basename(path))[0],
                          params=count_params(model), shape=list(shape),
                          flops=None, counter=self.counter)
            if self.flops:
                result['flops'] = count_flops(model, shape, self.counter)
            self.cache[path] = result
        return self.cache[path]


def _fmt(value: Optional[float], unit: str) -> str:
    if value is None:
        return '-'
    scale = {'M': 1e6, 'G': 1e9}[unit]
    return f'{value / scale:.3f}{unit}'


def _unit(printed: Optional[str], default: str) -> str:
    return printed[-1] if printed else default


def _verdict(printed: Optional[str], value: Optional[float]) -> str:
    if printed is None or value is None:
        return ''
    return 'yes' if agrees(printed, value) else 'NO'


def print_counts(rows: List[dict]) -> None:
    print('| config | input | params | FLOPs |')
    print('|---|---|---:|---:|')
    for r in rows:
        flops = r['flops']
        unit = 'G' if flops and flops >= 1e9 else 'M'
        print(f"| {r['config']} | {r['shape'][1]}x{r['shape'][2]} | "
              f"{r['params']:,} | {_fmt(flops, unit)} |")


def print_seed_tables(counter: Counter, config_dir: str) -> int:
    """Print the seed tables; return the number of disagreements."""
    disagreements = 0
    table = None
    for row in SEED_TABLES:
        if row.params is None and row.flops is None:
            continue  # accuracy-only rows (ablations) have nothing to count
        if row.table != table:
            table = row.table
            print(f'\n### seed {table}\n')
            print('| row | config | params (seed) | params (ours) | agree '
                  f'| FLOPs (seed) | FLOPs (ours, {counter.counter}) '
                  '| agree |')
            print('|---|---|---:|---:|:-:|---:|---:|:-:|')
        path = osp.join(config_dir, row.config + '.py')
        if not osp.isfile(path):
            raise SystemExit(f'error: seed row {row.row!r} names config '
                             f'{row.config}.py, which does not exist')
        want_flops = counter.flops and row.flops is not None
        result = counter(path) if (want_flops or not counter.flops) \
            else counter(path)
        params, flops = result['params'], result['flops']
        verdicts = (_verdict(row.params, params),
                    _verdict(row.flops, flops))
        disagreements += verdicts.count('NO')
        print(f'| {row.row} | {row.config} | {row.params or "-"} | '
              f'{_fmt(params, _unit(row.params, "M")) if row.params else "-"}'
              f' | {verdicts[0]} | {row.flops or "-"} | '
              f'{_fmt(flops, _unit(row.flops, "M")) if row.flops else "-"}'
              f' | {verdicts[1]} |')
    print(f'\n{disagreements} disagreement(s) with the seeds at their '
          'printed precision.')
    return disagreements


def main(argv=None) -> int:
    args = parse_args(argv)
    counter = Counter(args.counter, args.shape, not args.no_flops)
    if args.counter == 'thop' and not args.no_flops:
        try:
            import thop  # noqa: F401
        except ImportError:
            print("error: --counter thop needs thop 0.0.22: pip install "
                  '--no-deps thop==0.0.22', file=sys.stderr)
            return 2
    status = 0
    if args.seed_tables:
        if args.configs:
            print('error: --seed-tables reads its configs from configs/; '
                  'give no config paths', file=sys.stderr)
            return 2
        if print_seed_tables(counter, CONFIG_DIR) and args.strict:
            status = 1
    else:
        if not args.configs:
            print('error: give config files or globs, or --seed-tables',
                  file=sys.stderr)
            return 2
        print_counts([counter(p) for p in _expand(args.configs)])
    if args.json:
        os.makedirs(osp.dirname(osp.abspath(args.json)), exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump(sorted(counter.cache.values(),
                             key=lambda r: r['config']), f, indent=1)
    return status


if __name__ == '__main__':
    sys.exit(main())
