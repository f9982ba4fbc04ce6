"""Print the quickstart table: variant, metric, train time, parameters.

    python tools/misc/quickstart_table.py [--out table.md] \\
        NAME CONFIG METRIC TEST_WORK_DIR TRAIN_SECONDS [NAME CONFIG ...]

The metric is read from the JSON that mmengine's logger writes for a test
run (``TEST_WORK_DIR/<timestamp>/<timestamp>.json``, the newest run); the
parameter count from the model the config builds (no weights loaded).
"""
import argparse
import glob
import json
import os.path as osp
import sys
from typing import Optional


def read_metric(test_work_dir: str, metric: str) -> Optional[float]:
    """The ``metric`` value of the newest test run in ``test_work_dir``."""
    runs = sorted(glob.glob(osp.join(test_work_dir, '*', '*.json')))
    decoder = json.JSONDecoder()
    for path in reversed(runs):
        with open(path) as f:
            for line in f:
                # Under a multi-process test every rank may append the same
                # record to the file (mmseg's visualizer exists on each rank),
                # leaving a line with trailing bytes: read the first object.
                try:
                    record, _ = decoder.raw_decode(line.strip())
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict) and metric in record:
                    return float(record[metric])
    return None


def count_parameters(config: str) -> int:
    import mmc3  # noqa: F401  (registers the hosts and blocks)
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    cfg = Config.fromfile(config)
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    model = MODELS.build(cfg.model)
    return sum(p.numel() for p in model.parameters())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', help='also write the table to this file')
    parser.add_argument('rows', nargs='+',
                        help='NAME CONFIG METRIC TEST_WORK_DIR TRAIN_SECONDS, '
                        'repeated')
    args = parser.parse_args(argv)
    if len(args.rows) % 5:
        parser.error('rows come in fives: NAME CONFIG METRIC TEST_WORK_DIR '
                     f'TRAIN_SECONDS, got {len(args.rows)} values')
    lines = ['| variant | metric | value | train time | params |',
             '| --- | --- | --- | --- | --- |']
    for i in range(0, len(args.rows), 5):
        name, config, metric, test_dir, seconds = args.rows[i:i + 5]
        value = read_metric(test_dir, metric)
        shown = 'n/a' if value is None else f'{value:.4f}'
        params = count_parameters(config)
        lines.append(f'| {name} | {metric} | {shown} | {int(seconds)} s | '
                     f'{params / 1e6:.3f} M |')
    table = '\n'.join(lines)
    print(table)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(table + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
