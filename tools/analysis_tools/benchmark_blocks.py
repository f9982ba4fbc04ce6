#!/usr/bin/env python
"""Cost of the channel blocks next to the res5 bottleneck they are added to.

For each input shape of ResNet-101's stage 4 as the experiments use it,
times one forward + backward pass of every block (C3, SE, CE, GE variants)
and of the res5 bottleneck it is attached to, and measures memory, then
prints a markdown table with block / bottleneck ratios.

Shapes (``--shapes``):

- ``roi7``: the C4 RoI head, ``R x 2048 x 7 x 7`` per batch of ``R`` RoIs
  (``--rois``, default 512 = mmdet's RoI sampler batch). Where SE/GE/CE sit
  (``after_conv3`` of every res5 bottleneck). Bottleneck 2048 -> 512 -> 512
  -> 2048, stride 1, identity shortcut.
- ``roi14``: the RoI features entering res5, ``R x 1024 x 14 x 14`` (where a
  C3 block between stages 3 and 4 sits). Bottleneck: res5's first,
  1024 -> 512 -> 512 -> 2048, stride 2 on the first 1x1 conv (caffe style,
  as mmdet's C4 configs) with a projection shortcut.
- ``deeplab``: DeepLab-v2 stage 4 at output stride 8 on a 321 x 321 crop,
  ``2 x 2048 x 41 x 41``. Bottleneck 2048 -> 512 -> 512 (dilation 4) ->
  2048.

C3 uses a grid equal to the input size (7x7, 14x14, 41x41), so it does not
resize. ``c3`` runs C3's default message passing; ``c3:dense`` forces the
exact one, which holds an ``R x C x C`` softmax per pass (``R x C x g`` with
groups of ``g``): a dense configuration whose softmax alone would exceed
``--max-attention-gib`` is reported as skipped, not run.

Memory (reported in MiB, two measures):

- ``saved``: bytes of the tensors autograd saves for the backward pass,
  counted once per storage, excluding the module's input and its own
  parameters and buffers: the activation memory the module adds to a
  training step.
- ``peak``: on CUDA, the increase of ``torch.cuda.max_memory_allocated``
  over the memory held before the pass; on Linux CPUs, the increase of the
  process's peak resident set size (``VmHWM``, reset through
  ``/proc/self/clear_refs`` after returning free heap memory with
  ``malloc_trim``) during the pass: everything the pass touches, transient
  buffers and gradients included, as the operating system sees it.

Timing. Each block is timed in alternation with its bottleneck (bottleneck,
block, bottleneck, block, ...: ``--repeats`` pairs after ``--warmup``), so
that drift hits both alike; the ratio is the median over pairs of the
per-pair ratio, printed with its min-max. The bottleneck's row gives the
median of all its timed passes.

Distance to the machine. The memory bandwidth and sgemm rate are measured
in the same run (:func:`mmc3.testing.machine_rates`). Every block must at
least read its input and write its output forward, and read the incoming
gradient and the input and write the input's gradient backward: five passes
over an input-sized tensor. ``floor`` is the larger of those passes at the
measured bandwidth and the block's matrix-product flops (forward +
backward, counted by ``torch.utils.flop_counter``) at the sgemm rate;
``x floor`` is the measured time over it.

Example (quick)::

    python tools/analysis_tools/benchmark_blocks.py --rois 32 --repeats 3

This is a benchmark, not a test: nothing here asserts on timings.
"""
import argparse
import ctypes
import gc
import os
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn

SHAPES: Dict[str, dict] = {
    'roi7': dict(channels=2048, hw=(7, 7), batch=None,
                 bottleneck=dict(inplanes=2048, planes=512, stride=1,
                                 dilation=1),
                 desc='C4 RoI head, res5 (after_conv3)'),
    'roi14': dict(channels=1024, hw=(14, 14), batch=None,
                  bottleneck=dict(inplanes=1024, planes=512, stride=2,
                                  dilation=1, style='caffe'),
                  desc='RoI features entering res5'),
    'deeplab': dict(channels=2048, hw=(41, 41), batch=2,
                    bottleneck=dict(inplanes=2048, planes=512, stride=1,
                                    dilation=4),
                    desc='DeepLab-v2 res5, 321x321 crop, output stride 8'),
}

# name -> block config from (channels, (h, w)). C3 names read
# c3[:g<group size>][:dense]: without ':dense' C3 uses its default message
# passing (``message_impl='auto'``), with it the exact C x C softmax. GE names
# read ge:<variant>:<extent>.
BLOCKS: Dict[str, Callable[[int, Tuple[int, int]], dict]] = {
    'c3': lambda c, hw: dict(type='C3Block', grid_size=hw),
    'c3:dense': lambda c, hw: dict(type='C3Block', grid_size=hw,
                                   message_impl='dense'),
    'c3:g512': lambda c, hw: dict(type='C3Block', grid_size=hw,
                                  group_size=512),
    'c3:g512:dense': lambda c, hw: dict(type='C3Block', grid_size=hw,
                                        group_size=512, message_impl='dense'),
    'se': lambda c, hw: dict(type='SEBlock'),
    'ce': lambda c, hw: dict(type='CEBlock'),
    'ge:theta-:global': lambda c, hw: dict(type='GEBlock'),
    'ge:theta-:e4': lambda c, hw: dict(type='GEBlock', extent=4),
    'ge:theta:global': lambda c, hw: dict(type='GEBlock', variant='theta',
                                          grid_size=hw),
    'ge:theta:e4': lambda c, hw: dict(type='GEBlock', variant='theta',
                                      extent=4),
    'ge:theta+:global': lambda c, hw: dict(type='GEBlock', variant='theta+',
                                           grid_size=hw),
    'ge:theta+:e4': lambda c, hw: dict(type='GEBlock', variant='theta+',
                                       extent=4),
}
MIB = float(1 << 20)


class Bottleneck(nn.Module):
    """ResNet bottleneck with training-mode BN: the res5 unit a block is
    compared against. ``style='pytorch'`` strides the 3x3 conv, ``'caffe'``
    the first 1x1 conv (mmdet's C4 configs use caffe style)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 dilation: int = 1, style: str = 'pytorch') -> None:
        super().__init__()
        out = planes * 4
        s1, s2 = (stride, 1) if style == 'caffe' else (1, stride)
        self.conv1 = nn.Conv2d(inplanes, planes, 1, stride=s1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=s2,
                               padding=dilation, dilation=dilation,
                               bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, out, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + identity)


# --------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------
def fwd_bwd(module: nn.Module, x: torch.Tensor,
            grad_out: torch.Tensor) -> None:
    module.zero_grad(set_to_none=True)
    x.grad = None
    module(x).backward(grad_out)


def sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def timed_ms(module: nn.Module, x: torch.Tensor,
             grad_out: torch.Tensor) -> float:
    """Wall time of one forward + backward pass, in ms."""
    sync(x.device)
    t0 = time.perf_counter()
    fwd_bwd(module, x, grad_out)
    sync(x.device)
    return (time.perf_counter() - t0) * 1e3


def alternate_ms(first: nn.Module, second: nn.Module, x: torch.Tensor,
                 grads: Tuple[torch.Tensor, torch.Tensor], warmup: int,
                 repeats: int) -> Tuple[List[float], List[float]]:
    """Times of ``first`` and ``second`` in alternation (A B A B ...):
    ``repeats`` timed pairs after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fwd_bwd(first, x, grads[0])
        fwd_bwd(second, x, grads[1])
    times_a, times_b = [], []
    for _ in range(repeats):
        times_a.append(timed_ms(first, x, grads[0]))
        times_b.append(timed_ms(second, x, grads[1]))
    return times_a, times_b


def matmul_flops(module: nn.Module, x: torch.Tensor,
                 grad_out: torch.Tensor) -> int:
    """Flops of the matrix products and convolutions of one forward +
    backward pass (``torch.utils.flop_counter``)."""
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with counter:
        fwd_bwd(module, x, grad_out)
    module.zero_grad(set_to_none=True)
    x.grad = None
    return counter.get_total_flops()


def saved_mib(module: nn.Module, x: torch.Tensor,
              grad_out: torch.Tensor) -> float:
    """Bytes autograd saves for backward, once per storage, excluding the
    input and the module's own parameters and buffers."""
    exclude = {x.untyped_storage().data_ptr()}
    exclude.update(t.untyped_storage().data_ptr()
                   for t in list(module.parameters()) + list(module.buffers()))
    seen: Dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in exclude:
            seen[ptr] = storage.nbytes()
        return t

    module.zero_grad(set_to_none=True)
    x.grad = None
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = module(x)
    out.backward(grad_out)
    return sum(seen.values()) / MIB


def _read_status_kib(field: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise KeyError(field)


def _cpu_peak_supported() -> bool:
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        _read_status_kib('VmHWM')
        return True
    except OSError:
        return False
    except KeyError:
        return False


_LIBC: Optional[ctypes.CDLL] = None


def _malloc_trim() -> None:
    global _LIBC
    try:
        if _LIBC is None:
            _LIBC = ctypes.CDLL('libc.so.6')
        _LIBC.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_mib(module: nn.Module, x: torch.Tensor,
             grad_out: torch.Tensor) -> Optional[float]:
    """Peak memory increase of one forward + backward (see module doc)."""
    module.zero_grad(set_to_none=True)
    x.grad = None
    gc.collect()
    if x.device.type == 'cuda':
        sync(x.device)
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(x.device)
        torch.cuda.reset_peak_memory_stats(x.device)
        fwd_bwd(module, x, grad_out)
        sync(x.device)
        return (torch.cuda.max_memory_allocated(x.device) - base) / MIB
    if not _cpu_peak_supported():
        return None
    _malloc_trim()
    base = _read_status_kib('VmRSS')
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
    fwd_bwd(module, x, grad_out)
    return (_read_status_kib('VmHWM') - base) / 1024.0


# --------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------
def build_block(cfg: dict, channels: int) -> nn.Module:
    import mmc3  # noqa: F401  (registers the blocks)
    from mmengine.registry import MODELS
    return MODELS.build(dict(cfg, in_channels=channels))


def c3_attention_gib(cfg: dict, batch: int, channels: int) -> float:
    """Size of one ``batch x C x g`` float32 attention tensor of C3."""
    group = cfg.get('group_size') or channels
    return batch * channels * min(group, channels) * 4 / float(1 << 30)


def memory(module: nn.Module, x: torch.Tensor, grad_out: torch.Tensor,
           rates: dict) -> dict:
    """Saved and peak memory, parameters and the time floor of one pass."""
    module.train()
    saved = saved_mib(module, x, grad_out)
    peak = peak_mib(module, x, grad_out)
    flops = matmul_flops(module, x, grad_out)
    module.zero_grad(set_to_none=True)
    x.grad = None
    passes_ms = 5 * x.numel() * x.element_size() / (rates['bandwidth'] *
                                                     1e9) * 1e3
    flops_ms = flops / (rates['sgemm'] * 1e9) * 1e3
    return dict(saved=saved, peak=peak, floor=max(passes_ms, flops_ms),
                params=sum(p.numel() for p in module.parameters()))


def fmt(v: Optional[float], spec: str = '.1f') -> str:
    return 'n/a' if v is None else format(v, spec)


def ratio(a: Optional[float], b: Optional[float]) -> str:
    if a is None or b is None or b <= 0:
        return 'n/a'
    return f'{a / b:.3f}'


def note_row(prefix: str, note: str) -> str:
    """A table row whose measurement cells are replaced by one note."""
    return f'{prefix} {note} |' + ' |' * 8


def shape_input(shape_name: str, rois: int,
                device: torch.device) -> Tuple[str, torch.Tensor]:
    """A shape's name as ``NxCxHxW`` and its random input (seed 0), which
    requires a gradient; ``rois`` is the batch of the RoI shapes."""
    spec = SHAPES[shape_name]
    batch = spec['batch'] if spec['batch'] is not None else rois
    c, (h, w) = spec['channels'], spec['hw']
    torch.manual_seed(0)
    x = torch.randn(batch, c, h, w, device=device, requires_grad=True)
    return f'{batch}x{c}x{h}x{w}', x


def run(args: argparse.Namespace, rates: dict) -> List[str]:
    device = torch.device(args.device)
    rows = []
    for shape_name in args.shapes:
        spec = SHAPES[shape_name]
        c, (h, w) = spec['channels'], spec['hw']
        shape_str, x = shape_input(shape_name, args.rois, device)
        batch = x.shape[0]
        print(f'[{shape_name}] {shape_str}: {spec["desc"]}', flush=True)

        bott = Bottleneck(**spec['bottleneck']).to(device).train()
        with torch.no_grad():
            out_shape = bott(x).shape
        bott_grad = torch.randn(out_shape, device=device)
        ref = memory(bott, x, bott_grad, rates)
        bott_times: List[float] = []
        b = spec['bottleneck']
        bott_name = (f"bottleneck {b['inplanes']}-{b['planes']}-"
                     f"{b['planes']}-{b['planes'] * 4}"
                     + (f" s{b['stride']}" if b['stride'] > 1 else '')
                     + (' caffe' if b.get('style') == 'caffe' else '')
                     + (f" d{b['dilation']}" if b['dilation'] > 1 else ''))
        bott_row = len(rows)
        rows.append('')  # filled in once all its passes are timed

        grad_out = torch.randn_like(x)
        for name in args.blocks:
            cfg = BLOCKS[name](c, (h, w))
            prefix = f'| {shape_str} | {name} |'
            if cfg.get('message_impl') == 'dense':
                gib = c3_attention_gib(cfg, batch, c)
                if gib > args.max_attention_gib:
                    rows.append(note_row(
                        prefix, f'skipped: one {batch}x{c}x'
                        f'{min(cfg.get("group_size") or c, c)} attention '
                        f'tensor is {gib:.3g} GiB (> --max-attention-gib '
                        f'{args.max_attention_gib:g})'))
                    print('  ' + rows[-1], flush=True)
                    continue
            try:
                block = build_block(cfg, c).to(device).train()
            except Exception as e:  # report, do not crash the table
                rows.append(note_row(prefix, f'not available '
                                     f'({type(e).__name__}: {e})'))
                print('  ' + rows[-1], flush=True)
                continue
            try:
                t_bott, t_block = alternate_ms(bott, block, x,
                                               (bott_grad, grad_out),
                                               args.warmup, args.repeats)
                res = memory(block, x, grad_out, rates)
            except (RuntimeError, ValueError, MemoryError) as e:
                rows.append(note_row(prefix, f'failed ({type(e).__name__}: '
                                     f'{str(e).splitlines()[0][:120]})'))
                print('  ' + rows[-1], flush=True)
                continue
            finally:
                del block
                gc.collect()
            bott_times += t_bott
            pair = [k / r for k, r in zip(t_block, t_bott)]
            ms = statistics.median(t_block)
            rows.append(
                f'{prefix} {res["params"]:,} | {ms:.1f} | '
                f'{statistics.median(pair):.3f} [{min(pair):.3f}-'
                f'{max(pair):.3f}] | {fmt(res["saved"])} | '
                f'{ratio(res["saved"], ref["saved"])} | {fmt(res["peak"])} | '
                f'{ratio(res["peak"], ref["peak"])} | {res["floor"]:.1f} | '
                f'{ms / res["floor"]:.1f} |')
            print('  ' + rows[-1], flush=True)
        if not bott_times:  # no block ran: time the bottleneck alone
            for _ in range(args.warmup):
                fwd_bwd(bott, x, bott_grad)
            bott_times = [timed_ms(bott, x, bott_grad)
                          for _ in range(args.repeats)]
        bott_ms = statistics.median(bott_times)
        rows[bott_row] = (
            f'| {shape_str} | {bott_name} | {ref["params"]:,} | '
            f'{bott_ms:.1f} | 1 | {fmt(ref["saved"])} | 1 | '
            f'{fmt(ref["peak"])} | 1 | {ref["floor"]:.1f} | '
            f'{bott_ms / ref["floor"]:.1f} |')
        print('  ' + rows[bott_row], flush=True)
        del x, grad_out, bott, bott_grad
        gc.collect()
    return rows


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """``--threads``, ``--allocator`` and ``--device`` (shared with
    ``benchmark_revisions.py``)."""
    parser.add_argument('--threads', type=int, default=os.cpu_count(),
                        help='torch.set_num_threads (default: all cores)')
    from mmc3.testing import add_allocator_argument
    add_allocator_argument(parser)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available()
                        else 'cpu', help='cpu or cuda')


def check_counts(parser: argparse.ArgumentParser, args: argparse.Namespace,
                 positive: Tuple[str, ...]) -> None:
    """Refuse a count in ``positive`` below 1 and a negative ``--warmup``."""
    for name in positive:
        if getattr(args, name) < 1:
            parser.error(f'--{name} must be >= 1, got {getattr(args, name)}')
    if args.warmup < 0:
        parser.error(f'--warmup must be >= 0, got {args.warmup}')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Forward+backward latency and memory of the channel '
        'blocks at ResNet-101 stage-4 shapes, next to the res5 bottleneck.')
    parser.add_argument('--shapes', nargs='+', default=list(SHAPES),
                        choices=list(SHAPES), help='input shapes to run')
    parser.add_argument('--blocks', nargs='+', default=list(BLOCKS),
                        choices=list(BLOCKS), help='blocks to run')
    parser.add_argument('--rois', type=int, default=512,
                        help='RoIs per batch for the roi7/roi14 shapes '
                        '(mmdet samples 512 per image)')
    parser.add_argument('--repeats', type=int, default=5,
                        help='timed (bottleneck, block) pairs of '
                        'forward+backward passes per block')
    parser.add_argument('--warmup', type=int, default=1,
                        help='untimed passes before timing')
    parser.add_argument('--max-attention-gib', type=float, default=1.0,
                        help='skip a dense C3 configuration whose R x C x C '
                        '(or R x C x group) float32 softmax tensor alone '
                        'exceeds this many GiB')
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    check_counts(parser, args, ('rois', 'repeats', 'threads'))
    return args


def print_table(header: List[str], rows: List[str],
                argv: Optional[List[str]]) -> None:
    """The markdown table (the first two columns left-aligned, the rest
    right-aligned numbers) and the command that made it."""
    print()
    print('| ' + ' | '.join(header) + ' |')
    print('| --- | --- |' + ' ---: |' * (len(header) - 2))
    for row in rows:
        print(row)
    cmd = ' '.join([sys.argv[0]] + (argv or sys.argv[1:]))
    print(f'\ncommand: python {cmd}')


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    from mmc3.testing import use_allocator
    use_allocator(args.allocator)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == 'cuda':
        peak_doc = 'CUDA max_memory_allocated increase'
    elif _cpu_peak_supported():
        peak_doc = 'process peak RSS (VmHWM) increase'
    else:
        peak_doc = 'n/a (needs Linux /proc/self/clear_refs)'
    from mmc3.testing import machine_rates
    rates = machine_rates()
    print(f'torch {torch.__version__}, device {device}, '
          f'{torch.get_num_threads()} threads, float32, train mode; '
          f'{args.repeats} (bottleneck, block) pairs of forward+backward '
          f'passes after {args.warmup} warm-up, ratio = median [min-max] of '
          f'the per-pair ratios; saved = tensors saved for backward '
          f'(excluding input and parameters); peak = {peak_doc}',
          flush=True)
    print(f'allocator: {args.allocator}', flush=True)
    print(f'machine, same run: memory bandwidth {rates["bandwidth"]:.1f} '
          f'GB/s (copy), sgemm {rates["sgemm"]:.0f} GFLOP/s; floor = max(5 '
          f'input-sized passes at that bandwidth, matmul flops at that rate)',
          flush=True)
    if hasattr(os, 'getloadavg'):
        print('load average before the run (1/5/15 min): '
              + ' '.join(f'{v:.2f}' for v in os.getloadavg()), flush=True)
    rows = run(args, rates)
    print_table(['input', 'module', 'params', 'fwd+bwd ms', 'ratio [min-max]',
                 'saved MiB', 'ratio', 'peak MiB', 'ratio', 'floor ms',
                 'x floor'], rows, argv)


if __name__ == '__main__':
    main()
