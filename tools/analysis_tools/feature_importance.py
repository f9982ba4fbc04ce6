"""Feature importance from gates (GE paper Sec. 4; seed 003 Fig. 3): for
every test image, zero a ratio of a gated block's output channels ordered by
the gate the block gave them for that image, least important first (dashed)
and most important first (solid), and plot top-1 against the ratio, one
panel per block. mmpretrain classifiers with gated blocks (SE, GE, CE: any
block with a `gate` submodule).

Blocks: by default every gated block inside the last stage that has any
(the seed shows stage 4 of ResNet-50), else every gated block; --blocks to
choose. A spatial gate (GE) becomes one score per channel by its mean over
positions (--gate-reduce max for its maximum). One block is ablated at a
time; the other blocks run unchanged.

    python tools/analysis_tools/feature_importance.py \\
        configs/quickstart/resnet20_se_digits.py \\
        --checkpoint work_dirs/quickstart/cls_se/iter_400.pth \\
        --label se --out-dir work_dirs/analysis/importance

Writes importance.json ({model: {block: {least: [top-1], most: [top-1]}}}
at the ratios) and importance.png.
"""
import _analysis as common


def default_blocks(model):
    from mmc3.analysis import gated_blocks
    from mmc3.analysis.points import stages
    gated = gated_blocks(model)
    for stage in reversed(stages(model)):
        inside = [g for g in gated if g.startswith(stage + '.')]
        if inside:
            return inside
    return gated


def main(argv=None):
    p = common.parser(__doc__.split('\n\n')[0], 'importance')
    p.add_argument('--blocks', nargs='+', help='gated blocks to ablate '
                   '(default: the gated blocks of the last stage with any)')
    p.add_argument('--steps', type=int, default=10,
                   help='ratios 0, 1/steps, ..., 1 (default 10)')
    p.add_argument('--gate-reduce', choices=('mean', 'max'), default='mean',
                   help='score of a channel from a spatial gate (default '
                   'mean)')
    args = common.parse(p, argv)
    if args.steps < 1:
        p.error('--steps must be positive')

    from mmengine.utils import ProgressBar

    from mmc3.analysis import GateDrop
    from mmc3.analysis.runs import accuracy, preprocess

    ratios = [i / args.steps for i in range(args.steps + 1)]
    entries = common.models(args)
    chosen = {}
    for entry in entries:
        blocks = args.blocks or default_blocks(entry.model)
        if not blocks:
            common.fail(f'[{entry.label}] {entry.config}: the model has no '
                        'gated block (SE, GE or CE with a gate submodule); '
                        'feature importance needs gates')
        try:
            for name in blocks:
                GateDrop(entry.model, name, 0.0, 'least', args.gate_reduce)
        except ValueError as err:
            common.fail(f'[{entry.label}] {err}')
        chosen[entry.label] = blocks
    raw = common.data(args, entries[0])
    results = {}
    for entry in entries:
        model, blocks = entry.model, chosen[entry.label]
        batches = preprocess(model, raw)
        base = accuracy(model, batches)
        print(f'[{entry.label}] top-1 {base:.2f}; {len(blocks)} blocks x '
              f'{args.steps} ratios x 2 orders', flush=True)
        bar = ProgressBar(len(blocks) * args.steps * 2)
        results[entry.label] = {}
        for name in blocks:
            curves = {}
            for order in ('least', 'most'):
                curve = [base]
                for ratio in ratios[1:]:
                    with GateDrop(model, name, ratio, order,
                                  args.gate_reduce):
                        curve.append(accuracy(model, batches))
                    bar.update()
                curves[order] = curve
            results[entry.label][name] = curves
        print()
    common.write_json(args, 'importance.json', dict(
        common.meta(args, entries, raw), ratios=ratios,
        gate_reduce=args.gate_reduce, blocks=chosen, top1=results))

    plt = common.pyplot()
    count = max(len(b) for b in chosen.values())
    fig, axes = plt.subplots(1, count, figsize=(3.2 * count, 3),
                             squeeze=False)
    colors = plt.rcParams['axes.prop_cycle'].by_key()['color']
    for j in range(count):
        ax = axes[0][j]
        for m, entry in enumerate(entries):
            blocks = chosen[entry.label]
            if j >= len(blocks):
                continue
            curves = results[entry.label][blocks[j]]
            color = colors[m % len(colors)]
            ax.plot(ratios, curves['least'], '--', color=color,
                    label=f'{entry.label} least first')
            ax.plot(ratios, curves['most'], '-', color=color,
                    label=f'{entry.label} most first')
            ax.set_title(blocks[j], fontsize=8)
        ax.set_xlabel('ratio of channels dropped')
        ax.set_ylabel('top-1 (%)')
        ax.legend(fontsize=6)
    common.save_figure(args, fig, 'importance.png')


if __name__ == '__main__':
    main()
