"""Benchmark C3 message passing: dense ``C x C`` softmax vs the fast Gauss
transform (``mmc3.models.blocks.message``).

For every shape ``N x C x P`` it measures, for the dense and the fast path,
forward and forward+backward: median wall time, peak extra memory of the
process, and the fast path's largest error relative to ``max |z|`` against a
float64 dense reference. Every measurement runs in its own subprocess, so
that the peak resident memory of one case does not hide another's.

Usage::

    python tools/analysis_tools/benchmark_message_passing.py
    python tools/analysis_tools/benchmark_message_passing.py \
        --shapes 128x2048x49 8x1024x196 --dist normal --v-std 2 --repeat 3
    python tools/analysis_tools/benchmark_message_passing.py --crossover

``--crossover`` times forward+backward of both paths at ``N * C * P`` fixed
over a range of ``C`` (for each ``--positions`` value of ``P``) and prints
where the fast path starts to win (what ``choose_message_impl`` should switch
at).

The channel means ``v`` follow ``--dist``: ``normal`` (``N(0, v_std^2)``,
default ``v_std = 2``: a spread of several units), or ``concentrated``
(``N(0, 0.14^2)``).
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

DEFAULT_SHAPES = ('128x2048x49', '128x512x49', '8x1024x196', '2x2048x1681')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--shapes', nargs='+', default=list(DEFAULT_SHAPES),
                        help='shapes as NxCxP')
    parser.add_argument('--dist', choices=('normal', 'concentrated'),
                        default='normal')
    parser.add_argument('--v-std', type=float, default=2.0,
                        help='std of the channel means for --dist normal')
    parser.add_argument('--exclude-self', type=int, default=1,
                        choices=(0, 1))
    parser.add_argument('--tol', type=float, default=1e-5)
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--threads', type=int, default=0,
                        help='torch threads (0: torch default)')
    parser.add_argument('--impls', nargs='+', default=['dense', 'fast'],
                        choices=('dense', 'fast'))
    parser.add_argument('--modes', nargs='+', default=['fwd', 'fwd+bwd'],
                        choices=('fwd', 'fwd+bwd'))
    parser.add_argument('--crossover', action='store_true',
                        help='find the C where fast starts to win')
    parser.add_argument('--positions', type=int, nargs='+', default=[49],
                        help='P values of --crossover')
    parser.add_argument('--device', default='cpu',
                        help="'cpu' (peak = resident memory) or 'cuda' "
                        '(peak = torch.cuda.max_memory_allocated)')
    parser.add_argument('--json', default='',
                        help='also write the results to this file')
    parser.add_argument('--worker', default='', help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _rss_bytes() -> int:
    """Current resident set size of this process."""
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def _make_z(n, c, p, dist, v_std, seed=0):
    import torch
    gen = torch.Generator().manual_seed(seed)
    std = 0.14 if dist == 'concentrated' else v_std
    v = torch.randn(n, c, 1, generator=gen) * std
    noise = torch.randn(n, c, p, generator=gen)
    return noise - noise.mean(dim=2, keepdim=True) + v


def run_worker(spec: dict) -> dict:
    """Measure one (shape, impl, mode) in this process."""
    import torch
    from mmc3.models.blocks.message import fast_message
    from mmc3.models.blocks.message import dense_message
    if spec['threads']:
        torch.set_num_threads(spec['threads'])
    n, c, p = spec['shape']
    device = torch.device(spec.get('device', 'cpu'))
    cuda = device.type == 'cuda'
    z = _make_z(n, c, p, spec['dist'], spec['v_std']).to(device)
    cot = torch.randn(n, c, p,
                      generator=torch.Generator().manual_seed(1)).to(device)
    excl = bool(spec['exclude_self'])
    if spec['impl'] == 'dense':
        def call(x):
            return dense_message(x, excl, None)
    else:
        def call(x):
            return fast_message(x, excl, None, spec['tol'])
    backward = spec['mode'] == 'fwd+bwd'

    def step():
        if backward:
            x = z.clone().requires_grad_(True)
            out = call(x)
            (out * cot).sum().backward()
            return out.detach(), x.grad
        with torch.no_grad():
            return call(z), None

    # warm-up on one sample: fills the error tables and kernel caches (and
    # the allocator's small pools) so that they count neither as time nor
    # as peak memory of the measured runs
    with torch.no_grad():
        call(z[:1])
    if cuda:
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        base = _rss_bytes()
        peak_before = resource.getrusage(
            resource.RUSAGE_SELF).ru_maxrss * 1024
    times = []
    for i in range(spec['repeat']):
        t0 = time.perf_counter()
        out, grad = step()
        if cuda:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
        if i == 0:
            peak = (torch.cuda.max_memory_allocated(device) if cuda else
                    resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    peak_extra = (peak - base if cuda else max(peak, peak_before) - base)
    result = dict(spec, time_ms=1e3 * statistics.median(times),
                  peak_mb=peak_extra / 2**20)
    if spec['impl'] == 'fast' and spec.get('check', True):
        # float64 dense reference, a few samples at a time
        err = 0.0
        gerr = 0.0
        chunk = max(1, (1 << 25) // (c * c))
        for s in range(0, n, chunk):
            zs = z[s:s + chunk].double()
            if backward:
                zs.requires_grad_(True)
            ref = dense_message(zs, excl, None)
            scale = zs.detach().abs().amax(dim=(1, 2))
            e = (out[s:s + chunk].double() - ref.detach()).abs().amax(
                dim=(1, 2))
            err = max(err, float((e / scale).max()))
            if backward:
                (ref * cot[s:s + chunk].double()).sum().backward()
                ge = (grad[s:s + chunk].double() - zs.grad).abs().max()
                gerr = max(gerr, float(ge / zs.grad.abs().max()))
        result['max_rel_err'] = err
        if backward:
            result['grad_rel_err'] = gerr
    return result


def run_case(spec: dict) -> dict:
    """Run one measurement in a fresh interpreter."""
    cmd = [sys.executable, os.path.abspath(__file__), '--worker',
           json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return dict(spec, error=proc.stderr.strip().splitlines()[-1:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fmt_err(r):
    if 'max_rel_err' not in r:
        return ''
    s = f"{r['max_rel_err']:.1e}"
    if 'grad_rel_err' in r:
        s += f" (grad {r['grad_rel_err']:.1e})"
    return s


def main_table(args):
    results = []
    std = 0.14 if args.dist == 'concentrated' else args.v_std
    print(f'# v ~ {args.dist} (std {std}), '
          f'exclude_self={bool(args.exclude_self)}, tol={args.tol}, '
          f'repeat={args.repeat}, load average at start '
          f'{os.getloadavg()[0]:.2f}')
    header = ('| N x C x P | mode | dense ms | fast ms | speed-up | '
              'dense peak MB | fast peak MB | memory ratio | '
              'fast max rel err |')
    print(header)
    print('|' + '---|' * 9)
    for shape in args.shapes:
        n, c, p = (int(s) for s in shape.lower().split('x'))
        for mode in args.modes:
            row = {}
            for impl in args.impls:
                spec = dict(shape=(n, c, p), impl=impl, mode=mode,
                            dist=args.dist, v_std=args.v_std,
                            exclude_self=args.exclude_self, tol=args.tol,
                            repeat=args.repeat, threads=args.threads,
                            device=args.device)
                row[impl] = run_case(spec)
                results.append(row[impl])
            d, f = row.get('dense', {}), row.get('fast', {})
            if 'error' in d or 'error' in f:
                print(f'| {shape} | {mode} | failed: '
                      f"{d.get('error', '')} {f.get('error', '')} |")
                continue

            def g(r, k, fmt):
                return format(r[k], fmt) if k in r else '-'
            speed = (f"{d['time_ms'] / f['time_ms']:.1f}x"
                     if d and f else '-')
            mem = (f"{d['peak_mb'] / max(f['peak_mb'], 1e-9):.1f}x"
                   if d and f else '-')
            print(f"| {shape} | {mode} | {g(d, 'time_ms', '.0f')} | "
                  f"{g(f, 'time_ms', '.0f')} | {speed} | "
                  f"{g(d, 'peak_mb', '.0f')} | {g(f, 'peak_mb', '.0f')} | "
                  f'{mem} | {_fmt_err(f)} |', flush=True)
    print(f'# load average at end {os.getloadavg()[0]:.2f}')
    return results


def main_crossover(args):
    """Forward+backward time of both paths for C at fixed N * C * P."""
    results = []
    print(f'# crossover, N*C*P ~ {16384 * 49}, mode fwd+bwd, '
          f'v ~ {args.dist}')
    print('| P | C | dense ms | fast ms |')
    print('|---|---|---|---|')
    for p in args.positions:
        total = max(1, 16384 * 49 // p)
        for c in (64, 128, 192, 256, 384, 512, 768, 1024):
            row = {}
            for impl in ('dense', 'fast'):
                spec = dict(shape=(max(1, total // c), c, p), impl=impl,
                            mode='fwd+bwd', dist=args.dist,
                            v_std=args.v_std,
                            exclude_self=args.exclude_self, tol=args.tol,
                            repeat=args.repeat, threads=args.threads,
                            device=args.device, check=False)
                row[impl] = run_case(spec)
                results.append(row[impl])
            print(f"| {p} | {c} | "
                  f"{row['dense'].get('time_ms', float('nan')):.0f} | "
                  f"{row['fast'].get('time_ms', float('nan')):.0f} |",
                  flush=True)
    return results


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(json.loads(args.worker))))
        return
    results = main_crossover(args) if args.crossover else main_table(args)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=1)


if __name__ == '__main__':
    main()
