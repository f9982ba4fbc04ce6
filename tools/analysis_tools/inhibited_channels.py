"""Inhibited channels and BN bias signs (seed 004, Table 6 and Fig. 1): the
ratio of BN biases beta <= 0 (over all BN channels and per layer, from the
weights) and the ratio of inhibited channels: channels whose BN output,
passed through a ReLU, has a mean over the test images and positions of at
most --threshold (default 1e-2; BN outputs are of unit scale where gamma
is). The ReLU is applied to every BN's output as if one followed it, exact
for a ResNet's BN-ReLU pairs and a proxy for the BNs before a residual sum;
--layers restricts the measure to chosen BNs.

Works for any mmpretrain, mmdet or mmseg config (no labels needed).

    python tools/analysis_tools/inhibited_channels.py \\
        configs/quickstart/resnet20_baseline_digits.py \\
        configs/quickstart/resnet20_c3_digits.py \\
        --checkpoint work_dirs/quickstart/cls_baseline/iter_400.pth \\
        --checkpoint work_dirs/quickstart/cls_c3/iter_400.pth \\
        --label baseline --label c3 --out-dir work_dirs/analysis/inhibited

Writes inhibited.json ({model: beta_nonpositive, inhibited, each with
'all' and per-layer ratios}) and inhibited.png (per-layer ratios, models
overlaid).
"""
import _analysis as common


def main(argv=None):
    p = common.parser(__doc__.split('\n\n')[0], 'inhibited')
    p.add_argument('--threshold', type=float, default=1e-2,
                   help='a channel is inhibited when its mean ReLU(BN) '
                   'output is at most this (default 1e-2)')
    p.add_argument('--layers', nargs='+',
                   help='BN layers to measure (default: every affine BN)')
    args = common.parse(p, argv)
    if args.threshold < 0:
        p.error(f'--threshold must be >= 0, got {args.threshold}')

    from mmc3.analysis import InhibitedChannels, bn_bias_ratio
    from mmc3.analysis.runs import preprocess, run_all

    entries = common.models(args)
    recorders = {}
    for entry in entries:
        try:
            recorders[entry.label] = InhibitedChannels(
                entry.model, args.layers, args.threshold)
            bn_bias_ratio(entry.model, args.layers)
        except ValueError as err:
            common.fail(f'[{entry.label}] {err}')
    raw = common.data(args, entries[0])
    results = {}
    for entry in entries:
        model, rec = entry.model, recorders[entry.label]
        beta = bn_bias_ratio(model, args.layers)
        batches = preprocess(model, raw)
        with rec:
            run_all(model, batches)
        inhibited = rec.result()
        results[entry.label] = dict(beta_nonpositive=beta,
                                    inhibited=inhibited)
        print(f'[{entry.label}] beta <= 0: {100 * beta["all"]:.1f}% of '
              f'{beta["channels"]} BN channels; inhibited (mean ReLU(BN) <= '
              f'{args.threshold:g}): {100 * inhibited["all"]:.1f}%',
              flush=True)
    common.write_json(args, 'inhibited.json', dict(
        common.meta(args, entries, raw), threshold=args.threshold,
        results=results))

    plt = common.pyplot()
    fig, axes = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for entry in entries:
        r = results[entry.label]
        for ax, key in zip(axes, ('beta_nonpositive', 'inhibited')):
            layers = r[key]['layers']
            ax.plot(range(len(layers)), [100 * v for v in layers.values()],
                    marker='.', label=f'{entry.label} '
                    f'(all: {100 * r[key]["all"]:.1f}%)')
    axes[0].set_ylabel('BN beta <= 0 (%)')
    axes[1].set_ylabel(f'inhibited, mean <= {args.threshold:g} (%)')
    axes[1].set_xlabel('BN layer (in order of definition)')
    from matplotlib.ticker import MaxNLocator
    axes[1].xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes:
        ax.legend(fontsize=7)
    common.save_figure(args, fig, 'inhibited.png')


if __name__ == '__main__':
    main()
