"""Time one training iteration of whole detectors, block by block.

Builds each config's real model (full widths, ResNet-101 C4: backbone stem +
stages 1-3, stage 4 as the RoI head with its blocks), with pretrained
weights off, and times ``model.train_step`` (forward, loss, backward,
optimizer step) on one synthetic image. The input is shrunk (default one
320x320 image) and the number of sampled RoIs is a flag (``--rois``, the
recipe samples 512 per image), so that the run fits a CPU; everything else is
the recipe's architecture. Each config runs in its own subprocess, so peak
memory is per model. Ratios are to the first config (the baseline).

Example (CPU, from the repository root)::

    python tools/analysis_tools/benchmark_detector.py --rois 32 --iters 3

Note: C3's message passing has two implementations (``C3Block``'s
``message_impl``): the dense reference materialises a ``C x C`` affinity
matrix per RoI (2048 x 2048 in stage 4), i.e. ``rois * 16 MiB`` per tensor
and block, so its time and memory grow with ``--rois``; the fast one avoids
that matrix. ``--c3-message-impl`` overrides the configs' choice (default:
keep it) to compare them::

    python tools/analysis_tools/benchmark_detector.py \
        configs/faster_rcnn_r101_baseline.py configs/faster_rcnn_r101_c3.py \
        --c3-message-impl dense
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIGS = [
    f'configs/faster_rcnn_r101_{name}.py'
    for name in ('baseline', 'se', 'c3', 'ce', 'ge')
]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        'configs', nargs='*', default=DEFAULT_CONFIGS,
        help='detector configs; ratios are relative to the first '
        '(default: the five Faster R-CNN R-101 C4 COCO configs)')
    parser.add_argument('--size', type=int, default=320,
                        help='side of the square input image (default 320)')
    parser.add_argument('--images', type=int, default=1,
                        help='images per iteration (default 1)')
    parser.add_argument('--rois', type=int, default=32,
                        help='RoIs sampled per image for the RoI head '
                        '(default 32; the recipe uses 512)')
    parser.add_argument('--warmup', type=int, default=1,
                        help='untimed iterations first (default 1)')
    parser.add_argument('--iters', type=int, default=3,
                        help='timed iterations (default 3)')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch CPU threads (default: torch default)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument(
        '--c3-message-impl', default=None,
        help="set every C3Block's message_impl (e.g. 'dense', 'fast', "
        "'auto'); default: as configured")
    parser.add_argument('--worker', action='store_true',
                        help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _block_params(model) -> int:
    """Parameters of the plugins of every bottleneck (mmdet plugin names)."""
    total = 0
    for module in model.modules():
        for pos in ('after_conv1', 'after_conv2', 'after_conv3'):
            for name in getattr(module, f'{pos}_plugin_names', []):
                total += sum(
                    p.numel() for p in getattr(module, name).parameters())
    return total


def run_worker(config: str, args: argparse.Namespace) -> dict:
    import torch
    from mmengine.config import Config
    from mmengine.optim import OptimWrapper
    from mmengine.registry import MODELS, DefaultScope

    from mmc3.testing import det_fake_batch, drop_pretrained, set_block_key

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = Config.fromfile(config)
    drop_pretrained(cfg.model)
    cfg.model.train_cfg.rcnn.sampler.num = args.rois
    if args.c3_message_impl:
        set_block_key(cfg.model, 'C3Block', 'message_impl',
                      args.c3_message_impl)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(cfg.model)
    model.init_weights()
    model.to(args.device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optim = OptimWrapper(torch.optim.SGD(params, lr=1e-5, momentum=0.9))
    num_classes = cfg.model.roi_head.bbox_head.num_classes
    times = []
    for i in range(args.warmup + args.iters):
        # square images, 4 random boxes of 1/8 to 1/2 of the side each
        data = det_fake_batch([(args.size, args.size)] * args.images,
                              num_classes, num_boxes=4,
                              min_box=args.size // 8)
        start = time.perf_counter()
        model.train_step(data, optim)
        if args.device.startswith('cuda'):
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    return dict(
        config=config,
        times=times,
        params=sum(p.numel() for p in model.parameters()),
        block_params=_block_params(model),
        c3_message_impls=sorted({
            str(m.message_impl)
            for m in model.modules() if type(m).__name__ == 'C3Block'
        }),
        peak_rss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss /
        1024**2,
        threads=torch.get_num_threads())


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        print('RESULT ' + json.dumps(run_worker(args.configs[0], args)))
        return
    results = []
    for config in args.configs:
        cmd = [sys.executable, __file__, config, '--worker',
               '--size', str(args.size), '--images', str(args.images),
               '--rois', str(args.rois), '--warmup', str(args.warmup),
               '--iters', str(args.iters), '--device', args.device]
        if args.threads:
            cmd += ['--threads', str(args.threads)]
        if args.c3_message_impl:
            cmd += ['--c3-message-impl', args.c3_message_impl]
        print(f'running {config} ...', flush=True)
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                              env=dict(os.environ))
        lines = [line for line in proc.stdout.splitlines()
                 if line.startswith('RESULT ')]
        if proc.returncode != 0 or not lines:
            print(f'  failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}')
            results.append(dict(config=config, failed=True))
            continue
        results.append(json.loads(lines[-1][len('RESULT '):]))

    print()
    print(f'One training iteration (forward + backward + SGD step), '
          f'{args.images} image(s) {args.size}x{args.size}, {args.rois} '
          f'RoIs/image, pretrained off, device {args.device}, '
          f'{args.warmup} warm-up + {args.iters} timed iterations (median).')
    if args.c3_message_impl:
        print(f'C3Block message_impl: {args.c3_message_impl}')
    print()
    print('| config | params (M) | block params (M) | iter time (s) | '
          'time / baseline | peak RSS (GB) |')
    print('| --- | ---: | ---: | ---: | ---: | ---: |')
    base = None
    for r in results:
        name = Path(r['config']).stem
        if r.get('failed'):
            print(f'| {name} | - | - | failed | - | - |')
            continue
        median = statistics.median(r['times'])
        if base is None:
            base = median
        print(f"| {name} | {r['params'] / 1e6:.2f} | "
              f"{r['block_params'] / 1e6:.3f} | {median:.2f} | "
              f'{median / base:.2f}x | {r["peak_rss_gb"]:.2f} |')
    if results and not results[0].get('failed'):
        print(f"\ntorch threads: {results[0]['threads']}")


if __name__ == '__main__':
    main()
