"""Summarise quickstart runs: one row per variant (metric, train time, params).

``tools/quickstart.sh`` writes, for every variant, the training and test logs
and a ``run.txt`` with its name, config, metric key and training seconds.
This script reads them and prints a Markdown table::

    python tools/misc/quickstart_table.py work_dirs/quickstart/faster_rcnn_*

The metric is the last value of ``METRIC_KEY: value`` printed by the test
run (mmengine's test summary, e.g. ``pascal_voc/mAP: 0.6120`` or ``mIoU:
71.2``); parameters are counted from the checkpoint's ``state_dict``
(normalisation statistics excluded), so the cost of a block shows next to
its gain.
"""
import argparse
import os.path as osp
import re
import sys
from typing import Dict, List, Optional

_BUFFERS = ('running_mean', 'running_var', 'num_batches_tracked')


def read_run(run_dir: str) -> Dict[str, str]:
    """``key=value`` lines of ``run_dir/run.txt``."""
    info = {}
    with open(osp.join(run_dir, 'run.txt')) as f:
        for line in f:
            if '=' in line:
                key, value = line.rstrip('\n').split('=', 1)
                info[key] = value
    return info


def last_metric(log_text: str, key: str) -> Optional[float]:
    """The last ``key: number`` in ``log_text``, or None."""
    found = re.findall(re.escape(key) + r':\s*(-?\d+(?:\.\d+)?|nan)',
                       log_text)
    return float(found[-1]) if found else None


def count_params(checkpoint: str) -> int:
    """Number of learnable values in a checkpoint's ``state_dict``."""
    import torch

    import mmc3.utils  # noqa: F401  (allow-lists mmengine checkpoint types)
    state = torch.load(checkpoint, map_location='cpu')
    state = state.get('state_dict', state)
    return sum(v.numel() for k, v in state.items()
               if hasattr(v, 'numel') and not k.endswith(_BUFFERS))


def row(run_dir: str) -> List[str]:
    info = read_run(run_dir)
    metric = None
    test_log = osp.join(run_dir, 'test.log')
    if osp.isfile(test_log):
        with open(test_log, errors='replace') as f:
            metric = last_metric(f.read(), info['metric'])
    checkpoint = info.get('checkpoint', '')
    params = (f'{count_params(checkpoint) / 1e6:.2f} M'
              if checkpoint and osp.isfile(checkpoint) else 'n/a')
    seconds = info.get('train_seconds')
    train = f'{int(seconds) // 60}m{int(seconds) % 60:02d}s' if seconds else \
        'n/a'
    return [
        info['name'], info['metric'],
        'not reported' if metric is None else f'{metric:.4f}', train, params,
        info['config']
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('run_dirs', nargs='+',
                        help='variant directories written by quickstart.sh')
    args = parser.parse_args(argv)
    header = ['variant', 'metric', 'value', 'train time', 'params', 'config']
    rows = [row(d) for d in args.run_dirs]
    widths = [max(len(r[i]) for r in rows + [header])
              for i in range(len(header))]
    for line in [header, ['-' * w for w in widths]] + rows:
        print('| ' + ' | '.join(c.ljust(w) for c, w in zip(line, widths)) +
              ' |')
    return 0


if __name__ == '__main__':
    sys.exit(main())
