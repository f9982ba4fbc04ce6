"""Channel diversity d_l at named points of one or more models (C3 paper,
seed 002, "Measure Diversity"): the mean absolute Pearson correlation between
the channel maps of each image, averaged over the test images. Lower is more
diverse.

Default points, found by structure in each model: the stem output (the first
stage's input), every stage's output, and every C3 block's input and output,
so a baseline is measured at the same stem and stage points as a C3 model.
--points replaces them (a module name, or NAME:input for its input); every
point must exist in every model.

Works for any mmpretrain, mmdet or mmseg config (no labels needed).

    python tools/analysis_tools/channel_diversity.py \\
        configs/quickstart/resnet20_baseline_digits.py \\
        configs/quickstart/resnet20_c3_digits.py \\
        --checkpoint work_dirs/quickstart/cls_baseline/iter_400.pth \\
        --checkpoint work_dirs/quickstart/cls_c3/iter_400.pth \\
        --label baseline --label c3 --out-dir work_dirs/analysis/diversity

Writes diversity.json ({model: {point: mean, std, n}}) and diversity.png
(one group of bars per point, models side by side).
"""
import _analysis as common


def ordered_union(lists):
    """Points of all models: the longest list's order, others' extras
    appended where they first appear."""
    out = []
    for points in sorted(lists, key=len, reverse=True):
        for p in points:
            if p not in out:
                out.append(p)
    return out


def main(argv=None):
    p = common.parser(__doc__.split('\n\n')[0], 'diversity')
    p.add_argument('--points', nargs='+',
                   help='points to measure (default: stem, stages, C3 '
                   'blocks\' inputs and outputs)')
    args = common.parse(p, argv)

    from mmc3.analysis import default_diversity_points, diversity_at
    from mmc3.analysis.points import point_label, resolve_module, split_point
    from mmc3.analysis.runs import preprocess, run_all

    entries = common.models(args)
    raw = common.data(args, entries[0])
    results, orders, labels = {}, [], {}
    for entry in entries:
        model = entry.model
        points = args.points or default_diversity_points(model)
        if not points:
            common.fail(f'[{entry.label}] no stage or C3 block found: give '
                        '--points')
        try:
            for point in points:
                resolve_module(model, split_point(point)[0])
        except ValueError as err:
            common.fail(f'[{entry.label}] {err}')
        batches = preprocess(model, raw)
        # {point: values} in forward order
        values = diversity_at(model, points, lambda: run_all(model, batches))
        orders.append(list(values))
        results[entry.label] = {
            q: dict(mean=float(v.mean()), std=float(v.std(unbiased=False)),
                    n=int(v.numel()))
            for q, v in values.items() if v.numel()}
        for q in points:
            labels.setdefault(q, point_label(q, model))
        print(f'[{entry.label}] ' + ', '.join(
            f'{labels[q]}={r["mean"]:.4f}'
            for q, r in results[entry.label].items()), flush=True)
    points = ordered_union(orders)
    common.write_json(args, 'diversity.json', dict(
        common.meta(args, entries, raw),
        points=points, labels=labels, diversity=results))

    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(points) + 2), 4.5))
    width = 0.8 / len(entries)
    for i, entry in enumerate(entries):
        xs = [j + (i - (len(entries) - 1) / 2) * width
              for j, q in enumerate(points) if q in results[entry.label]]
        ys = [results[entry.label][q]['mean'] for q in points
              if q in results[entry.label]]
        es = [results[entry.label][q]['std'] for q in points
              if q in results[entry.label]]
        ax.bar(xs, ys, width, yerr=es, capsize=2, label=entry.label)
    ax.set_xticks(range(len(points)))
    ax.set_xticklabels([labels[q] for q in points], rotation=35, ha='right',
                       fontsize=8)
    ax.set_ylabel('diversity score d_l (lower = more diverse)')
    ax.set_title('channel diversity per point (mean, std over images)')
    ax.legend()
    common.save_figure(args, fig, 'diversity.png')


if __name__ == '__main__':
    main()
