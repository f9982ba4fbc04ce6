"""Class activation maps (Zhou et al., CVPR 2016; seed 000 Figs. 1-3) of
mmpretrain classifiers with a global-average-pooling neck and a linear head.

CAM is computed exactly from the head's weights: M_c = sum_k w_ck A_k with A
the backbone's last output and c the predicted class (--class-of gt: the
ground-truth class). The JSON records, per image, the largest difference
between mean(M_c) + b_c and the model's logit, which is zero up to float32
rounding because the two are the same sum.

    python tools/analysis_tools/class_activation_maps.py \\
        configs/quickstart/resnet20_baseline_digits.py \\
        configs/quickstart/resnet20_c3_digits.py \\
        --checkpoint work_dirs/quickstart/cls_baseline/iter_400.pth \\
        --checkpoint work_dirs/quickstart/cls_c3/iter_400.pth \\
        --label baseline --label c3 --out-dir work_dirs/analysis/cam

Writes cam.json, cam.png (a row per image, --num-show images spread evenly
over the data: the input, then each model's CAM
over it, Figs. 1-2) and cam_topk.png (per image and model, the maps
w_ck A_k of the --topk channels with the largest contribution
w_ck mean(A_k) to the class score, Fig. 3). Images are shown with their
channels reversed (mmcv loads BGR).
"""
import _analysis as common


def overlay(ax, image, cam, title=None):
    """``image`` (H, W, 3) uint8 with ``cam`` (h, w) upsampled over it."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    h, w = image.shape[:2]
    up = F.interpolate(torch.as_tensor(cam)[None, None].float(), size=(h, w),
                       mode='bilinear', align_corners=False)[0, 0].numpy()
    span = up.max() - up.min()
    up = (up - up.min()) / span if span > 0 else np.zeros_like(up)
    ax.imshow(image)
    ax.imshow(up, cmap='jet', alpha=0.5, vmin=0, vmax=1)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=8)


def main(argv=None):
    p = common.parser(__doc__.split('\n\n')[0], 'cam')
    p.add_argument('--num-show', type=int, default=8,
                   help='images drawn (default 8)')
    p.add_argument('--topk', type=int, default=6,
                   help='channels per image in cam_topk.png (default 6, as '
                   'seed 000 Fig. 3)')
    p.add_argument('--class-of', choices=('pred', 'gt'), default='pred',
                   help='map the predicted class (default) or the '
                   'ground-truth class')
    args = common.parse(p, argv)
    if args.num_show < 1 or args.topk < 1:
        p.error('--num-show and --topk must be positive')

    import torch

    from mmc3.analysis import class_activation_maps, linear_head, top_channels
    from mmc3.analysis.cam import last_features
    from mmc3.analysis.runs import labels, logits, preprocess

    entries = common.models(args)
    for entry in entries:
        try:
            linear_head(entry.model)
        except ValueError as err:
            common.fail(f'[{entry.label}] {err}')
    raw = common.data(args, entries[0])
    # images drawn: spread evenly over the data (test sets are often sorted
    # by class)
    total = sum(len(item['inputs']) for item in raw)
    picks = sorted({i * total // args.num_show
                    for i in range(min(args.num_show, total))})
    shown = {}
    numbers = {}
    for entry in entries:
        model = entry.model
        fc = linear_head(model)
        batches = preprocess(model, raw)
        rows, residual, correct, count = [], 0.0, 0, 0
        row_of = {index: row for row, index in enumerate(picks)}
        with torch.no_grad():
            for batch in batches:
                feats = last_features(model, batch.inputs)
                # the model's own forward: CAM must explain its logits
                scores = logits(model, batch)
                gt = labels(batch)
                pred = scores.argmax(1).cpu()
                cls = pred if args.class_of == 'pred' else gt
                cam = class_activation_maps(feats, fc.weight, cls)
                # mean(M_c) + b_c is the logit of class c
                logit = scores.gather(1, cls[:, None].to(scores.device))[:, 0]
                bias = fc.bias[cls] if fc.bias is not None else 0.0
                residual = max(residual, float(
                    (cam.mean(dim=(1, 2)) + bias - logit).abs().max()))
                index, maps = top_channels(feats, fc.weight, cls, args.topk)
                for i in range(len(gt)):
                    row = row_of.get(count + i)
                    if row is None:
                        continue
                    shown.setdefault(row, {})['image'] = \
                        batch.images[i].flip(0).permute(1, 2, 0).numpy()
                    shown[row][entry.label] = dict(
                        cam=cam[i].cpu().numpy(), maps=maps[i].cpu(),
                        index=index[i].tolist(), cls=int(cls[i]),
                        gt=int(gt[i]))
                    rows.append(dict(image=count + i, gt=int(gt[i]),
                                     pred=int(pred[i]),
                                     top_channels=index[i].tolist()))
                correct += int((pred == gt).sum())
                count += len(gt)
        numbers[entry.label] = dict(
            top1=100.0 * correct / count, images=count,
            max_logit_residual=residual, shown=rows,
            feature_shape=list(feats.shape[1:]))
        print(f'[{entry.label}] top-1 {numbers[entry.label]["top1"]:.2f} on '
              f'{count} images; |mean(CAM) + b - logit| <= {residual:.2e}',
              flush=True)
    common.write_json(args, 'cam.json', dict(
        common.meta(args, entries, raw), class_of=args.class_of,
        topk=args.topk,
        cam=numbers))

    plt = common.pyplot()
    n = len(shown)
    cols = 1 + len(entries)
    fig, axes = plt.subplots(n, cols, figsize=(1.8 * cols, 1.8 * n),
                             squeeze=False)
    for r in range(n):
        axes[r][0].imshow(shown[r]['image'])
        axes[r][0].set_axis_off()
        if r == 0:
            axes[r][0].set_title('input', fontsize=8)
        for c, entry in enumerate(entries, 1):
            item = shown[r][entry.label]
            overlay(axes[r][c], shown[r]['image'], item['cam'],
                    f'{entry.label}: class {item["cls"]} (gt {item["gt"]})')
    common.save_figure(args, fig, 'cam.png')

    k = min(args.topk, numbers[entries[0].label]['feature_shape'][0])
    rows_drawn = min(n, 4)
    fig, axes = plt.subplots(rows_drawn * len(entries), k,
                             figsize=(1.6 * k, 1.7 * rows_drawn
                                      * len(entries)), squeeze=False)
    for r in range(rows_drawn):
        for m, entry in enumerate(entries):
            item = shown[r][entry.label]
            for j in range(k):
                overlay(axes[r * len(entries) + m][j], shown[r]['image'],
                        item['maps'][j].numpy(),
                        f'{entry.label} ch {item["index"][j]}')
    common.save_figure(args, fig, 'cam_topk.png')


if __name__ == '__main__':
    main()
