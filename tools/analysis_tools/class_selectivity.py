"""Class selectivity index (Morcos et al., ICLR 2018; seed 003 Fig. 2) of
every channel at the output of each block of a stage, histograms per block
with the models overlaid. mmpretrain classifiers (needs labels).

SI = (mu_max - mu_rest) / (mu_max + mu_rest), mu_c the class-conditional mean
of a channel's spatially averaged activation, mu_rest the mean over the other
classes (0 where the denominator is 0). The seed measures the blocks of
ResNet-50's fourth stage; the default here is every block of the model's
last stage (--blocks to choose others). Outputs of ResNet blocks are after
the ReLU, so SI is in [0, 1]; MobileNetV2's blocks end in a linear
bottleneck, where SI can leave that range (the tool warns and records
negative_activations in the JSON).

    python tools/analysis_tools/class_selectivity.py \\
        configs/quickstart/resnet20_baseline_digits.py \\
        configs/quickstart/resnet20_c3_digits.py \\
        --checkpoint work_dirs/quickstart/cls_baseline/iter_400.pth \\
        --checkpoint work_dirs/quickstart/cls_c3/iter_400.pth \\
        --label baseline --label c3 --out-dir work_dirs/analysis/selectivity

Writes selectivity.json ({model: {block: mean, median, si per channel}})
and selectivity.png (one histogram per block).
"""
import _analysis as common


def main(argv=None):
    p = common.parser(__doc__.split('\n\n')[0], 'selectivity')
    p.add_argument('--blocks', nargs='+',
                   help='modules whose outputs are measured (default: the '
                   'blocks of the last stage)')
    p.add_argument('--bins', type=int, default=20,
                   help='histogram bins on [0, 1] (default 20)')
    args = common.parse(p, argv)

    import torch

    from mmc3.analysis import class_selectivity
    from mmc3.analysis.points import collect, resolve_module, stage_blocks
    from mmc3.analysis.runs import labels, preprocess, run_all

    entries = common.models(args)
    raw = common.data(args, entries[0])
    results, blocks_of = {}, {}
    for entry in entries:
        model = entry.model
        try:
            blocks = args.blocks or stage_blocks(model)
            for name in blocks:
                resolve_module(model, name)
        except ValueError as err:
            common.fail(f'[{entry.label}] {err}')
        blocks_of[entry.label] = blocks
        batches = preprocess(model, raw)
        try:
            y = torch.cat([labels(b) for b in batches])
        except ValueError as err:
            common.fail(f'[{entry.label}] {err}')
        num_classes = getattr(getattr(model, 'head', None), 'num_classes',
                              None) or int(y.max()) + 1
        acts = collect(model, blocks, lambda x: x.mean(dim=(2, 3)),
                       lambda: run_all(model, batches))
        results[entry.label] = {}
        for name in blocks:
            values = torch.cat(acts[name])
            negative = bool((values < 0).any())
            if negative:
                print(f'[{entry.label}] warning: {name} has negative mean '
                      'activations (no ReLU at its output, e.g. a '
                      'MobileNetV2 linear bottleneck): SI leaves [0, 1] '
                      'there; '
                      'pass --blocks with post-ReLU layers', flush=True)
            si = class_selectivity(values, y, num_classes)
            results[entry.label][name] = dict(
                mean=float(si.mean()), median=float(si.median()),
                negative_activations=negative,
                si=[round(float(v), 6) for v in si])
            print(f'[{entry.label}] {name}: mean SI {si.mean():.4f}, '
                  f'median {si.median():.4f} over {len(si)} channels',
                  flush=True)
    common.write_json(args, 'selectivity.json', dict(
        common.meta(args, entries, raw), blocks=blocks_of,
        selectivity=results))

    plt = common.pyplot()
    count = max(len(b) for b in blocks_of.values())
    fig, axes = plt.subplots(1, count, figsize=(3.2 * count, 3),
                             squeeze=False)
    edges = [i / args.bins for i in range(args.bins + 1)]
    for j in range(count):
        ax = axes[0][j]
        for entry in entries:
            blocks = blocks_of[entry.label]
            if j < len(blocks):
                ax.hist(results[entry.label][blocks[j]]['si'], bins=edges,
                        alpha=0.5, label=entry.label)
                ax.set_title(blocks[j], fontsize=8)
        ax.set_xlabel('class selectivity index')
        ax.set_ylabel('channels')
        ax.legend(fontsize=7)
    common.save_figure(args, fig, 'selectivity.png')


if __name__ == '__main__':
    main()
