"""Time one training iteration of whole detectors, block by block.

Builds each config's real model (full widths, ResNet-101 C4: backbone stem +
stages 1-3, stage 4 as the RoI head with its blocks), with pretrained
weights off, and times ``model.train_step`` (forward, loss, backward,
optimizer step) on synthetic images. The image is shrunk (default one
480x480 image); the RoI head samples the recipe's 512 RoIs per image by
default (``--rois``), which is where stage 4 and its blocks spend their time.

Credible ratios on a noisy machine:

- All models live in one process and the configs alternate iteration by
  iteration, so drift (thermal, other load, the allocator's state) hits
  every config alike. The order rotates from round to round (A B C, B C A,
  C A B, ...): with a fixed order a machine that slows down within each
  round charges the drift to the configs that run last (seen here: in 9
  of one run's 10 rounds the fifth config's iteration took 5-27% longer
  than the first's, and the last config came out 1.13x against a
  profiled 4% share).
- Each config runs ``--iters`` timed iterations (default 10) after
  ``--warmup``; the table gives the median, the spread (min-max) and the
  ratio to the first config as the median over rounds of the per-round
  ratio (each round's iterations are neighbours in time), with its min-max.
- Before timing, each model's BN layers take the statistics of the
  synthetic batch (one forward pass), as a pretrained network's would
  (:meth:`Detector.calibrate_norms`): with random weights and the recipe's
  frozen BNs the activations would grow without bound through the network.
- ``--profiles`` more iterations per config (default 3, alternating in
  the rotated order) run under ``torch.profiler``: every channel block's
  forward is a ``record_function`` range and its backward the autograd
  nodes created inside it (matched by sequence number), so the profile
  says what share of the iteration the blocks take, forward and backward.
  The table gives the median share over the profiled iterations with its
  min-max, and the ratio it implies, ``1 / (1 - share)``: the iteration
  without the blocks' own time against the iteration with it. Both are
  measured within one iteration, so a machine that changes speed from one
  iteration to the next (seen here: neighbouring iterations of the same
  model 15% apart, and one model's block share 1.6% and then 3.1% in two
  consecutive iterations) moves them far less than it moves the ratio of
  two iterations; the implied ratio leaves out what a block costs outside
  its own operations (caches, allocation).
- The machine's memory bandwidth (a 256 MiB copy) and sgemm throughput
  (a 2048^3 float32 product) are measured in the same run and printed.
- Each iteration's minor page faults are counted and the table gives the
  median in MiB of "fresh memory" (pages touched for the first time). On
  virtual machines a first touch can cost more than the arithmetic on the
  page (measured here: about 3 us per 4 KiB page, so a new 205 MiB tensor
  costs 150 ms before its first use); configs whose fresh memory differs
  differ in time for that reason alone. ``--allocator cached`` keeps freed
  memory in the process, as the CUDA caching allocator does on a GPU.

Example (CPU, from the repository root; about 45 minutes on 2 cores)::

    python tools/analysis_tools/benchmark_detector.py

Note: C3's message passing has two implementations (``C3Block``'s
``message_impl``): the dense reference materialises a ``C x C`` affinity
matrix per RoI (2048 x 2048 in stage 4), i.e. ``rois * 16 MiB`` per tensor
and block, so its time and memory grow with ``--rois``; the fast one avoids
that matrix. ``--c3-message-impl`` overrides the configs' choice (default:
keep it) to compare them::

    python tools/analysis_tools/benchmark_detector.py \
        configs/faster_rcnn_r101_baseline.py configs/faster_rcnn_r101_c3.py \
        --c3-message-impl dense --rois 64
"""
import argparse
import logging
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIGS = [
    str(ROOT / 'configs' / f'faster_rcnn_r101_{name}.py')
    for name in ('baseline', 'se', 'c3', 'ce', 'ge')
]
BLOCK_TYPES = ('C3Block', 'SEBlock', 'CEBlock', 'GEBlock')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        'configs', nargs='*', default=DEFAULT_CONFIGS,
        help='detector configs; ratios are relative to the first '
        '(default: the five Faster R-CNN R-101 C4 COCO configs)')
    parser.add_argument('--size', type=int, default=480,
                        help='side of the square input image (default 480)')
    parser.add_argument('--images', type=int, default=1,
                        help='images per iteration (default 1)')
    parser.add_argument('--rois', type=int, default=512,
                        help='RoIs sampled per image for the RoI head '
                        '(default 512, the recipe\'s)')
    parser.add_argument('--warmup', type=int, default=1,
                        help='untimed iterations per config first '
                        '(default 1)')
    parser.add_argument('--iters', type=int, default=10,
                        help='timed iterations per config, alternating '
                        '(default 10)')
    parser.add_argument('--profiles', type=int, default=3,
                        help='profiled iterations per config, after the '
                        'timed ones (default 3; 0 skips the profile)')
    parser.add_argument('--no-profile', action='store_true',
                        help='skip the profiled iterations (--profiles 0)')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch CPU threads (default: torch default)')
    from mmc3.testing import add_allocator_argument
    add_allocator_argument(parser)
    parser.add_argument('--device', default='cpu')
    parser.add_argument(
        '--c3-message-impl', default=None,
        help="set every C3Block's message_impl (e.g. 'dense', 'fast', "
        "'auto'); default: as configured")
    args = parser.parse_args(argv)
    for name in ('size', 'images', 'rois', 'iters'):
        if getattr(args, name) < 1:
            parser.error(f'--{name} must be >= 1, got {getattr(args, name)}')
    for name in ('warmup', 'profiles'):
        if getattr(args, name) < 0:
            parser.error(f'--{name} must be >= 0, got {getattr(args, name)}')
    if args.no_profile:
        args.profiles = 0
    return args


def _blocks(model) -> list:
    """(name, module) of every channel block in the model."""
    return [(n, m) for n, m in model.named_modules()
            if type(m).__name__ in BLOCK_TYPES]


def _block_params(model) -> int:
    """Parameters of every channel block of the model."""
    return sum(p.numel() for _, m in _blocks(model) for p in m.parameters())


class Detector:
    """One config's model, optimizer and fixed synthetic batch."""

    def __init__(self, config: str, args: argparse.Namespace) -> None:
        import torch
        from mmengine.config import Config
        from mmengine.logging import MMLogger
        from mmengine.optim import OptimWrapper
        from mmengine.registry import MODELS, DefaultScope

        from mmc3.testing import det_fake_batch, drop_pretrained, \
            set_block_key

        cfg = Config.fromfile(config)
        drop_pretrained(cfg.model)
        cfg.model.train_cfg.rcnn.sampler.num = args.rois
        if args.c3_message_impl:
            set_block_key(cfg.model, 'C3Block', 'message_impl',
                          args.c3_message_impl)
        with DefaultScope.overwrite_default_scope(cfg.default_scope):
            self.model = MODELS.build(cfg.model)
        # init_weights logs one record per parameter (thousands for R-101)
        logger = MMLogger.get_current_instance()
        level = logger.level
        logger.setLevel(logging.WARNING)
        try:
            self.model.init_weights()
        finally:
            logger.setLevel(level)
        self.model.to(args.device)
        self.model.train()
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optim = OptimWrapper(
            torch.optim.SGD(params, lr=1e-5, momentum=0.9))
        num_classes = cfg.model.roi_head.bbox_head.num_classes
        # square images, 4 random boxes of 1/8 to 1/2 of the side each
        self.batch = det_fake_batch([(args.size, args.size)] * args.images,
                                    num_classes, num_boxes=4,
                                    min_box=args.size // 8)
        self.config, self.device = config, args.device
        self.times: list = []
        self.faults: list = []
        self.calibrate_norms()

    def calibrate_norms(self) -> None:
        """Give every BN layer the statistics of the synthetic batch.

        The recipe's BNs are frozen (``norm_eval=True``) and a randomly
        initialised network with identity running statistics grows its
        activations layer by layer: by stage 4 they are orders of magnitude
        off, the channel blocks see maps no pretrained network produces
        and C3's message, whose cost follows the spread of its channel
        means, takes its slowest paths. One forward pass with the BNs
        averaging the batch's statistics (``momentum=None``) gives them the
        normalisation a pretrained network has; then the model returns to
        the recipe's modes.
        """
        import torch
        from torch.nn.modules.batchnorm import _BatchNorm
        norms = [m for m in self.model.modules() if isinstance(m, _BatchNorm)]
        saved = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        with torch.no_grad():
            data = self.model.data_preprocessor(self.batch, True)
            self.model._run_forward(data, mode='loss')
        for m, momentum in zip(norms, saved):
            m.momentum = momentum
        self.model.train()  # norm_eval puts the BNs back in eval mode

    def step(self) -> float:
        """One training iteration: its wall time; its minor page faults
        (first touches of fresh memory) go to ``self.faults``."""
        import torch
        faults = _minor_faults()
        start = time.perf_counter()
        self.model.train_step(self.batch, self.optim)
        if self.device.startswith('cuda'):
            torch.cuda.synchronize()
        wall = time.perf_counter() - start
        self.faults.append(_minor_faults() - faults)
        return wall

    def info(self) -> dict:
        return dict(
            config=self.config, times=self.times,
            faults=self.faults[-len(self.times):] if self.times else [],
            params=sum(p.numel() for p in self.model.parameters()),
            block_params=_block_params(self.model),
            blocks=len(_blocks(self.model)),
            c3_message_impls=sorted({
                str(m.message_impl) for _, m in _blocks(self.model)
                if type(m).__name__ == 'C3Block'}))


def _minor_faults() -> int:
    """Minor page faults of this process so far (0 where unknown)."""
    try:
        import resource
    except ImportError:  # not POSIX
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def profile_blocks(det: Detector) -> dict:
    """One profiled iteration: wall time, and the CPU time of the channel
    blocks' forward ranges and of the backward nodes they created."""
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    blocks = _blocks(det.model)
    originals = []
    for name, module in blocks:
        forward = module.forward

        def wrapped(*a, _forward=forward, _name=name, **k):
            with record_function(f'mmc3_block::{_name}'):
                return _forward(*a, **k)

        originals.append((module, forward))
        module.forward = wrapped
    try:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            wall = det.step()
    finally:
        for module, forward in originals:
            module.forward = forward
    events = prof.events()
    ranges = [e for e in events if e.name.startswith('mmc3_block::')]
    seqs = set()
    fwd = 0.0
    for r in ranges:
        fwd += r.cpu_time_total
        stack = list(r.cpu_children)
        while stack:
            e = stack.pop()
            if getattr(e, 'sequence_nr', -1) >= 0:
                seqs.add(e.sequence_nr)
            stack.extend(e.cpu_children)
    bwd = sum(e.cpu_time_total for e in events
              if e.name.startswith('autograd::engine::evaluate_function')
              and getattr(e, 'sequence_nr', -1) in seqs)
    return dict(wall=wall, forward=fwd / 1e6, backward=bwd / 1e6,
                ranges=len(ranges))


def round_order(count: int, index: int) -> list:
    """The order in which round ``index`` runs ``count`` configs: rotated
    by one per round, so that over ``count`` rounds every config runs once
    in every position."""
    shift = index % count if count else 0
    return list(range(shift, count)) + list(range(shift))


def run(args: argparse.Namespace) -> dict:
    """Build every config, alternate their timed and then their profiled
    iterations."""
    import torch

    from mmc3.testing import machine_rates, use_allocator
    use_allocator(args.allocator)
    if args.threads:
        torch.set_num_threads(args.threads)
    rates = machine_rates()
    dets = []
    for config in args.configs:
        print(f'building {config} ...', flush=True)
        dets.append(Detector(config, args))
    for _ in range(args.warmup):
        for det in dets:
            det.step()
    for i in range(args.iters):
        for k in round_order(len(dets), i):
            dets[k].times.append(dets[k].step())
        print(f'round {i + 1}/{args.iters}: ' + ' '.join(
            f'{det.times[-1]:.2f}' for det in dets), flush=True)
    profiles = [[] for _ in dets]
    for i in range(args.profiles):
        for k in round_order(len(dets), i):
            profiles[k].append(profile_blocks(dets[k]))
    return dict(rates=rates, threads=torch.get_num_threads(),
                results=[dict(det.info(), profiles=prof,
                              profile=median_profile(prof))
                         for det, prof in zip(dets, profiles)])


def block_share(prof: dict) -> float:
    """The blocks' share of one profiled iteration, forward + backward."""
    return (prof['forward'] + prof['backward']) / prof['wall']


def median_profile(profiles: list):
    """The profiled iteration whose block share is the median (the lower
    middle one for an even count); None without profiles."""
    if not profiles:
        return None
    ranked = sorted(profiles, key=block_share)
    return ranked[(len(ranked) - 1) // 2]


def report(args: argparse.Namespace, out: dict) -> None:
    rates = out['rates']
    print()
    print(f'One training iteration (forward + backward + SGD step), '
          f'{args.images} image(s) {args.size}x{args.size}, {args.rois} '
          f'RoIs/image, pretrained off, device {args.device}, '
          f'{out["threads"]} threads; configs alternate, {args.warmup} '
          f'warm-up + {args.iters} timed iterations each; allocator '
          f'{args.allocator}.')
    print(f'Machine, same run: memory bandwidth {rates["bandwidth"]:.1f} '
          f'GB/s (copy), sgemm {rates["sgemm"]:.0f} GFLOP/s.')
    if hasattr(os, 'getloadavg'):
        print('load average (1/5/15 min): '
              + ' '.join(f'{v:.2f}' for v in os.getloadavg()))
    if args.c3_message_impl:
        print(f'C3Block message_impl: {args.c3_message_impl}')
    print()
    print('| config | params (M) | block params (M) | iteration (s), median '
          '[min-max] | ratio, median [min-max] | blocks: share of the '
          'profiled iteration (fwd + bwd), median | share [min-max] | '
          'implied ratio 1 / (1 - share) | fresh memory per iteration '
          '(MiB), median |')
    print('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |')
    results = out['results']
    base = results[0]['times']
    for r in results:
        name = Path(r['config']).stem
        times = r['times']
        ratios = [t / b for t, b in zip(times, base)]
        prof = r['profile']
        spread, implied = '-', '-'
        if prof is None:
            share = '-'
        elif r['blocks'] == 0:
            share = 'no blocks'
        else:
            share = (f"{100 * block_share(prof):.1f}% "
                     f"({100 * prof['forward'] / prof['wall']:.1f}% + "
                     f"{100 * prof['backward'] / prof['wall']:.1f}%) of "
                     f"{prof['wall']:.2f} s, {r['blocks']} blocks, "
                     f"{len(r['profiles'])} iterations")
            shares = [block_share(p) for p in r['profiles']]
            spread = f'[{100 * min(shares):.1f}-{100 * max(shares):.1f}]%'
            implied = f'{1 / (1 - block_share(prof)):.3f}x'
        print(f"| {name} | {r['params'] / 1e6:.2f} | "
              f"{r['block_params'] / 1e6:.3f} | "
              f'{statistics.median(times):.2f} [{min(times):.2f}-'
              f'{max(times):.2f}] | {statistics.median(ratios):.3f}x '
              f'[{min(ratios):.3f}-{max(ratios):.3f}] | {share} | '
              f'{spread} | {implied} | '
              f"{_fresh_mib(r['faults'])} |")
    cmd = ' '.join([sys.argv[0]] + (sys.argv[1:]))
    print(f'\ncommand: python {cmd}')


def _fresh_mib(faults: list) -> str:
    """Median minor page faults per timed iteration, in MiB of first
    touches at the system's page size."""
    if not faults:
        return '-'
    page = os.sysconf('SC_PAGE_SIZE') if hasattr(os, 'sysconf') else 4096
    return f'{statistics.median(faults) * page / 2**20:.0f}'


def main(argv=None) -> dict:
    args = parse_args(argv)
    out = run(args)
    report(args, out)
    return out


if __name__ == '__main__':
    main()
