"""Our runs beside the papers: one row per work dir with the config, our
metric, the paper's number from the model index, the difference, and both
gains over the baseline config (the papers' claims are gains).

A work dir is what tools/train.py and tools/test.py wrote (test results are
preferred; else the last validation step of the training log); its config
is the .py mmengine dumped into it. Metrics are shown in the model index's
units (VOC / COCO AP in %, ImageNet errors as accuracy = 100 - error).
A gain needs the baseline config's work dir among the arguments.

    python tools/misc/collect_results.py work_dirs/*/ [--out results.csv]

Markdown to stdout; --out writes CSV or JSON (by the extension) as well.
"""
import argparse
import csv
import json
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

COLUMNS = ('config', 'metric', 'ours', 'paper', 'diff', 'our gain',
           'paper gain', 'source')


def fmt(value):
    return '-' if value is None else f'{value:.2f}'


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('work_dirs', nargs='+', help='run folders')
    p.add_argument('--out', help='also write the table as .csv or .json')
    p.add_argument('--index', default=ROOT,
                   help='folder holding model-index.yml (default: this '
                   'clone)')
    args = p.parse_args(argv)
    for d in args.work_dirs:
        if not osp.isdir(d):
            p.error(f'not a folder: {d}')
    if args.out and not args.out.endswith(('.csv', '.json')):
        p.error(f'--out must end in .csv or .json, got {args.out}')

    from mmc3.analysis.results import (METRICS, baseline_of, config_name,
                                       final_metrics, model_index, ours,
                                       paper_value)
    index = model_index(args.index)
    runs = {}
    for work_dir in args.work_dirs:
        try:
            metrics, source = final_metrics(work_dir)
        except ValueError as err:
            print(f'error: {err}', file=sys.stderr)
            return 1
        key = next((k for k in METRICS if k in metrics), None)
        if key is None:
            print(f'error: {source}: none of the metrics '
                  f'{", ".join(METRICS)} (found {", ".join(metrics)})',
                  file=sys.stderr)
            return 1
        name = config_name(work_dir)
        runs[name] = dict(metric=key, ours=ours(key, metrics[key]),
                          paper=paper_value(index.get(name), key),
                          source=osp.relpath(source))
    rows = []
    for name, run in runs.items():
        base = runs.get(baseline_of(name) or '')
        paper_base = paper_value(index.get(baseline_of(name) or ''),
                                 run['metric'])
        row = dict(config=name, metric=run['metric'], ours=run['ours'],
                   paper=run['paper'],
                   diff=None if run['paper'] is None
                   else run['ours'] - run['paper'],
                   **{'our gain': None if base is None
                      else run['ours'] - base['ours'],
                      'paper gain': None if run['paper'] is None
                      or paper_base is None
                      else run['paper'] - paper_base},
                   source=run['source'])
        rows.append(row)
    print('| ' + ' | '.join(COLUMNS) + ' |')
    print('|' + ' --- |' * len(COLUMNS))
    for row in rows:
        cells = [row['config'], row['metric']] + [
            fmt(row[c]) for c in COLUMNS[2:-1]] + [row['source']]
        print('| ' + ' | '.join(cells) + ' |')
    if args.out:
        if args.out.endswith('.json'):
            with open(args.out, 'w') as f:
                json.dump(rows, f, indent=2)
        else:
            with open(args.out, 'w', newline='') as f:
                writer = csv.DictWriter(f, fieldnames=COLUMNS)
                writer.writeheader()
                writer.writerows(rows)
        print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
