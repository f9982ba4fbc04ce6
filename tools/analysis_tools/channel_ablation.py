"""Cumulative channel ablation (Morcos et al., ICLR 2018; seed 004 Fig. 1c,
Fig. 7): zero a growing random fraction of one layer's channels (the same
channels for every image, the fraction growing along one random order),
top-1 against the ablated fraction, averaged over --runs random orders (the
seed averages 5), models overlaid. mmpretrain classifiers (needs labels).

The layer is a point: a module name (its output) or NAME:input. Default:
the last stage's output: for the ResNets the features the head pools, where
ablating every channel leaves the head's bias alone (MobileNetV2 has its
1x1 conv2 after the last stage: --point backbone.conv2 for its pooled
features); the seed's VGG ablates its third layer: pass --point to
choose.

    python tools/analysis_tools/channel_ablation.py \\
        configs/quickstart/resnet20_baseline_digits.py \\
        configs/quickstart/resnet20_c3_digits.py \\
        --checkpoint work_dirs/quickstart/cls_baseline/iter_400.pth \\
        --checkpoint work_dirs/quickstart/cls_c3/iter_400.pth \\
        --label baseline --label c3 --out-dir work_dirs/analysis/ablation

Writes ablation.json ({model: fractions, mean and std top-1, each run}) and
ablation.png (mean with a band of one standard deviation).
"""
import _analysis as common


def main(argv=None):
    p = common.parser(__doc__.split('\n\n')[0], 'ablation')
    p.add_argument('--point', help='layer to ablate (default: the last '
                   'stage\'s output)')
    p.add_argument('--runs', type=int, default=5,
                   help='random orders averaged (default 5, as the seed)')
    p.add_argument('--steps', type=int, default=10,
                   help='fractions 0, 1/steps, ..., 1 (default 10)')
    p.add_argument('--seed', type=int, default=0,
                   help='seed of the random orders (default 0)')
    args = common.parse(p, argv)
    if args.runs < 1 or args.steps < 1:
        p.error('--runs and --steps must be positive')

    import torch
    from mmengine.utils import ProgressBar

    from mmc3.analysis import (ChannelAblation, ablated_channels,
                               ablation_orders)
    from mmc3.analysis.points import collect, last_stage
    from mmc3.analysis.runs import accuracy, preprocess, run_all

    fractions = [i / args.steps for i in range(args.steps + 1)]
    entries = common.models(args)
    points = {}
    for entry in entries:
        try:
            point = args.point or last_stage(entry.model)
            ChannelAblation(entry.model, point)
        except ValueError as err:
            common.fail(f'[{entry.label}] {err}')
        points[entry.label] = point
    raw = common.data(args, entries[0])
    results = {}
    for entry in entries:
        model, point = entry.model, points[entry.label]
        batches = preprocess(model, raw)
        # the layer's width, from the first batch
        width = collect(model, [point], lambda x: torch.tensor(x.size(1)),
                        lambda: run_all(model, batches[:1]))[point][0]
        orders = ablation_orders(int(width), args.runs, args.seed)
        print(f'[{entry.label}] {point}: {int(width)} channels, '
              f'{args.runs} runs x {args.steps} fractions', flush=True)
        bar = ProgressBar(args.runs * args.steps)
        base = accuracy(model, batches)
        runs = []
        ablation = ChannelAblation(model, point)
        with ablation:
            for order in orders:
                curve = [base]
                for fraction in fractions[1:]:
                    ablation.channels = ablated_channels(order, fraction)
                    curve.append(accuracy(model, batches))
                    bar.update()
                runs.append(curve)
        print()
        table = torch.tensor(runs, dtype=torch.float64)
        results[entry.label] = dict(
            point=point, channels=int(width), mean=table.mean(0).tolist(),
            std=table.std(0, unbiased=False).tolist(), runs=runs)
        print(f'[{entry.label}] top-1 ' + ' '.join(
            f'{f:.1f}:{a:.1f}' for f, a in zip(fractions,
                                               results[entry.label]['mean'])),
            flush=True)
    common.write_json(args, 'ablation.json', dict(
        common.meta(args, entries, raw), fractions=fractions, runs=args.runs,
        seed=args.seed, top1=results))

    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.8))
    for entry in entries:
        r = results[entry.label]
        lo = [m - s for m, s in zip(r['mean'], r['std'])]
        hi = [m + s for m, s in zip(r['mean'], r['std'])]
        ax.plot(fractions, r['mean'], marker='o', markersize=3,
                label=f'{entry.label} ({r["point"]})')
        ax.fill_between(fractions, lo, hi, alpha=0.2)
    ax.set_xlabel('fraction of channels ablated')
    ax.set_ylabel('top-1 (%)')
    ax.set_title(f'cumulative channel ablation ({args.runs} random orders)')
    ax.legend(fontsize=7)
    common.save_figure(args, fig, 'ablation.png')


if __name__ == '__main__':
    main()
