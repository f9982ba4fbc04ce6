#!/usr/bin/env python
"""The channel blocks of this checkout against those of another revision,
timed in one process.

Two runs of ``benchmark_blocks.py`` on two revisions compare poorly on a
noisy machine: the bottleneck they are both divided by moves between the
runs, and so does the machine. Here both revisions' blocks live in one
process with the same parameters and input, and their forward+backward
passes alternate (this, other, other, this, ...: the order swaps every
round), so that drift hits both alike. The other revision's blocks
(``OTHER/mmc3/models/blocks``, e.g. a ``git worktree`` of an older
commit) are loaded as a separate package, with registration into
mmengine's ``MODELS`` turned off while it loads; only the blocks are
taken from it (they import nothing else of mmc3).

For every shape and block the table gives both revisions' median times,
the median [min-max] of the per-round ratios this / other, and the largest
difference between the two revisions' outputs and gradients (the input's
and every parameter's, for one random upstream gradient), relative to the
largest entry of each: a faster revision should compute the same block.

Example (the previous commit; shapes and blocks as ``benchmark_blocks.py``)::

    git worktree add ../mmc3-prev HEAD~1
    python tools/analysis_tools/benchmark_revisions.py ../mmc3-prev \\
        --shapes roi7 --blocks se ce --rois 512 --rounds 16 \\
        --allocator cached

This is a benchmark, not a test: nothing here asserts on timings.
"""
import argparse
import contextlib
import importlib.util
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import List, Optional

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_blocks import (BLOCKS, SHAPES, add_run_arguments,  # noqa: E402
                              build_block, check_counts, print_table,
                              shape_input)

#: the package name the other revision's blocks are loaded under
OTHER_PACKAGE = '_mmc3_other_revision_blocks'


@contextlib.contextmanager
def _registration_off():
    """Let ``@MODELS.register_module()`` return the class unregistered, so
    that a second copy of the blocks can be defined beside the first."""
    from mmengine.registry import MODELS
    MODELS.register_module = lambda *args, **kwargs: (lambda cls: cls)
    try:
        yield
    finally:
        del MODELS.register_module  # the class's method again


def load_other_blocks(root: str) -> ModuleType:
    """The blocks package of the mmc3 checkout at ``root``, as
    :data:`OTHER_PACKAGE`.

    Raises:
        FileNotFoundError: ``root`` holds no ``mmc3/models/blocks``.
    """
    pkg_dir = Path(root) / 'mmc3' / 'models' / 'blocks'
    init = pkg_dir / '__init__.py'
    if not init.is_file():
        raise FileNotFoundError(
            f'benchmark_revisions: {root} holds no mmc3 checkout '
            f'({init} is missing)')
    for name in [m for m in sys.modules if m == OTHER_PACKAGE
                 or m.startswith(OTHER_PACKAGE + '.')]:
        del sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        OTHER_PACKAGE, init, submodule_search_locations=[str(pkg_dir)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[OTHER_PACKAGE] = module
    with _registration_off():
        spec.loader.exec_module(module)
    return module


def build_other(package: ModuleType, cfg: dict, channels: int) -> nn.Module:
    """The block ``cfg`` describes, from the other revision's package."""
    kwargs = {k: v for k, v in cfg.items() if k != 'type'}
    return getattr(package, cfg['type'])(channels, **kwargs)


def pass_of(block: nn.Module, x: torch.Tensor, grad_out: torch.Tensor):
    """One forward+backward pass: the output and the gradients of the
    input and of every parameter (in ``parameters()`` order)."""
    out = block(x)
    params = list(block.parameters())
    grads = torch.autograd.grad(out, [x] + params, grad_out,
                                allow_unused=True)
    return out.detach(), grads


def largest_difference(this: nn.Module, other: nn.Module, x: torch.Tensor,
                       grad_out: torch.Tensor) -> float:
    """The largest difference between the two blocks' outputs and
    gradients, each relative to the largest entry of the other's."""
    out_a, grads_a = pass_of(this, x, grad_out)
    out_b, grads_b = pass_of(other, x, grad_out)
    worst = 0.0
    for a, b in zip((out_a, ) + grads_a, (out_b, ) + grads_b):
        if a is None or b is None:
            if (a is None) != (b is None):
                return float('inf')  # one revision trains a parameter
            continue
        scale = float(b.abs().max()) if b.numel() else 0.0
        diff = float((a.double() - b.double()).abs().max()) if a.numel() \
            else 0.0
        worst = max(worst, diff / scale if scale > 0 else diff)
    return worst


def timed_ms(block: nn.Module, x: torch.Tensor,
             grad_out: torch.Tensor) -> float:
    if x.device.type == 'cuda':
        torch.cuda.synchronize(x.device)
    t0 = time.perf_counter()
    pass_of(block, x, grad_out)
    if x.device.type == 'cuda':
        torch.cuda.synchronize(x.device)
    return (time.perf_counter() - t0) * 1e3


def alternate(this: nn.Module, other: nn.Module, x: torch.Tensor,
              grad_out: torch.Tensor, warmup: int, rounds: int):
    """Times of both blocks, the order swapped every round."""
    for _ in range(warmup):
        pass_of(this, x, grad_out)
        pass_of(other, x, grad_out)
    times = {'this': [], 'other': []}
    for i in range(rounds):
        order = (('this', this), ('other', other))
        for key, block in (order if i % 2 == 0 else order[::-1]):
            times[key].append(timed_ms(block, x, grad_out))
    return times['this'], times['other']


def run(args: argparse.Namespace, package: ModuleType) -> List[str]:
    device = torch.device(args.device)
    rows = []
    for shape_name in args.shapes:
        spec = SHAPES[shape_name]
        c, (h, w) = spec['channels'], spec['hw']
        shape_str, x = shape_input(shape_name, args.rois, device)
        grad_out = torch.randn_like(x)
        for name in args.blocks:
            cfg = BLOCKS[name](c, (h, w))
            prefix = f'| {shape_str} | {name} |'
            try:
                this = build_block(cfg, c).to(device).train()
                other = build_other(package, cfg, c).to(device).train()
                other.load_state_dict(this.state_dict())
            except Exception as e:  # report, do not crash the table
                rows.append(f'{prefix} not available ({type(e).__name__}: '
                            f'{str(e).splitlines()[0][:120]}) | | | |')
                print('  ' + rows[-1], flush=True)
                continue
            diff = largest_difference(this, other, x, grad_out)
            t_this, t_other = alternate(this, other, x, grad_out,
                                        args.warmup, args.rounds)
            ratios = [a / b for a, b in zip(t_this, t_other)]
            rows.append(
                f'{prefix} {statistics.median(t_this):.1f} | '
                f'{statistics.median(t_other):.1f} | '
                f'{statistics.median(ratios):.3f} [{min(ratios):.3f}-'
                f'{max(ratios):.3f}] | {diff:.1e} |')
            print('  ' + rows[-1], flush=True)
            del this, other
    return rows


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Forward+backward time of the channel blocks of this '
        'checkout against another revision, in one process.')
    parser.add_argument('other', help='root of the other mmc3 checkout '
                        '(e.g. a git worktree of an older commit)')
    parser.add_argument('--shapes', nargs='+', default=['roi7'],
                        choices=list(SHAPES), help='input shapes to run')
    parser.add_argument('--blocks', nargs='+',
                        default=['c3', 'se', 'ce', 'ge:theta+:global'],
                        choices=list(BLOCKS), help='blocks to run')
    parser.add_argument('--rois', type=int, default=512,
                        help='RoIs per batch for the roi7/roi14 shapes '
                        '(default 512, the recipe\'s)')
    parser.add_argument('--rounds', type=int, default=16,
                        help='timed rounds (one pass of each revision)')
    parser.add_argument('--warmup', type=int, default=1,
                        help='untimed rounds first')
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    check_counts(parser, args, ('rois', 'rounds', 'threads'))
    if not (Path(args.other) / 'mmc3' / 'models' / 'blocks' /
            '__init__.py').is_file():
        parser.error(f'{args.other} holds no mmc3 checkout '
                     '(no mmc3/models/blocks/__init__.py)')
    return args


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    from mmc3.testing import machine_rates, use_allocator
    use_allocator(args.allocator)
    torch.set_num_threads(args.threads)
    package = load_other_blocks(args.other)
    rates = machine_rates()
    print(f'torch {torch.__version__}, device {args.device}, '
          f'{torch.get_num_threads()} threads, float32, train mode; '
          f'{args.rounds} rounds of one forward+backward pass per revision '
          f'(order swapped every round) after {args.warmup} warm-up; '
          f'allocator {args.allocator}; other revision: {args.other}')
    print(f'machine, same run: memory bandwidth {rates["bandwidth"]:.1f} '
          f'GB/s (copy), sgemm {rates["sgemm"]:.0f} GFLOP/s', flush=True)
    rows = run(args, package)
    print_table(['input', 'block', 'this ms', 'other ms',
                 'this / other, median [min-max]', 'largest difference'],
                rows, argv)


if __name__ == '__main__':
    main()
