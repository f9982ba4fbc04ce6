"""Training curves and training time from mmengine's scalar logs
(<work_dir>/<timestamp>/vis_data/<timestamp>.json), as mmdet's
analyze_logs.py, which its wheel does not ship.

    python tools/analysis_tools/analyze_logs.py plot_curve LOG.json ... \\
        --keys loss coco/bbox_mAP [--legend A B ...] [--out curves.png]
    python tools/analysis_tools/analyze_logs.py cal_train_time LOG.json ...

plot_curve draws one panel per key against the step (training scalars at
their iteration, validation metrics at the step they were computed), every
log overlaid with a legend (default: each log's work dir). A key that a log
does not have is an error naming the log and the keys it has.
cal_train_time prints, per log, the mean, spread, slowest and fastest
logged iteration time (the "time" scalar, seconds per iteration) and the
iterations logged.
"""
import argparse
import os.path as osp
import statistics
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)


def default_label(path):
    # <work_dir>/<timestamp>/vis_data/<timestamp>.json -> work_dir's name
    parts = osp.abspath(path).split(osp.sep)
    return parts[-4] if len(parts) >= 4 and parts[-2] == 'vis_data' \
        else osp.splitext(parts[-1])[0]


def plot_curve(args, logs):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    labels = args.legend or [default_label(p) for p in args.logs]
    if len(labels) != len(args.logs):
        print(f'error: {len(labels)} legend entries for {len(args.logs)} '
              'logs', file=sys.stderr)
        return 1
    for path, records in zip(args.logs, logs):
        have = sorted({k for r in records for k in r} - {'step', 'iter',
                                                         'epoch'})
        for key in args.keys:
            if not any(key in r for r in records):
                print(f'error: {path} has no key {key!r}; it has: '
                      f'{", ".join(have)}', file=sys.stderr)
                return 1
    fig, axes = plt.subplots(len(args.keys), 1,
                             figsize=(7, 2.8 * len(args.keys)),
                             squeeze=False)
    for ax, key in zip(axes[:, 0], args.keys):
        for label, records in zip(labels, logs):
            points = [(r.get('step', r.get('iter')), r[key]) for r in records
                      if key in r]
            ax.plot([s for s, _ in points], [v for _, v in points],
                    marker='.' if len(points) < 30 else None, label=label)
        ax.set_ylabel(key)
        ax.set_xlabel('step')
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f'wrote {args.out}')
    return 0


def cal_train_time(args, logs):
    for path, records in zip(args.logs, logs):
        times = [(r.get('iter', r.get('step')), r['time']) for r in records
                 if 'time' in r and 'loss' in r]
        if not times:
            print(f'error: {path} has no training iteration with a time',
                  file=sys.stderr)
            return 1
        values = [t for _, t in times]
        slow = max(times, key=lambda x: x[1])
        fast = min(times, key=lambda x: x[1])
        print(f'-----Analyze train time of {path}-----')
        print(f'slowest logged iter: {slow[0]}, {slow[1]:.4f} s/iter')
        print(f'fastest logged iter: {fast[0]}, {fast[1]:.4f} s/iter')
        print(f'time std over logged iters: {statistics.pstdev(values):.4f}')
        print(f'average iter time: {statistics.mean(values):.4f} s/iter '
              f'({len(values)} logged iterations)')
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest='task', required=True)
    curve = sub.add_parser('plot_curve', help='plot scalars against step')
    curve.add_argument('logs', nargs='+', help='scalar logs (.json)')
    curve.add_argument('--keys', nargs='+', default=['loss'],
                       help='scalars to plot (default: loss)')
    curve.add_argument('--legend', nargs='+', help='one name per log')
    curve.add_argument('--out', default='curves.png', help='PNG to write')
    time = sub.add_parser('cal_train_time', help='iteration time per log')
    time.add_argument('logs', nargs='+', help='scalar logs (.json)')
    args = p.parse_args(argv)
    for path in args.logs:
        if not osp.isfile(path):
            p.error(f'log not found: {path}')
    from mmc3.analysis.results import read_log
    try:
        logs = [read_log(path) for path in args.logs]
    except ValueError as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    return (plot_curve if args.task == 'plot_curve' else cal_train_time)(
        args, logs)


if __name__ == '__main__':
    sys.exit(main())
