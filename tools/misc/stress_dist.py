"""Run distributed training and evaluation many times and count clean ends.

Each round trains a small config for a few iterations with
``tools/dist_train.sh CONFIG N`` and evaluates the checkpoint with
``tools/dist_test.sh CONFIG CKPT N`` (on a host without CUDA: N CPU
processes, DDP over gloo). A stage is clean when the launcher exits 0 and
its output holds no sign of a rank that died (SIGABRT, ``terminate called``,
a negative exit code reported by torchrun, a core dump). A race at exit
shows up as an occasional unclean round, so run many:

    python tools/misc/stress_dist.py --rounds 30 --out work_dirs/stress

The default config is the quickstart's shrunk DeepLab-v2 + C3 segmenter on a
generated VOC 2012 set (``--num-images`` training and test images). Prints
one line per round and a summary; writes ``summary.json`` and the log of
every unclean stage into ``--out`` (the work dirs of clean rounds are removed
unless ``--keep``). Exits 1 if any stage was unclean.
"""
import argparse
import json
import os
import os.path as osp
import re
import shutil
import socket
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEFAULT_CONFIG = osp.join('configs', 'quickstart',
                          'deeplabv2_r50w8_c3_voc12_synthetic.py')
# What a rank that died leaves in torchrun's output.
ABORT_PATTERNS = (
    r'SIGABRT', r'Signal 6\b', r'terminate called', r'core dumped',
    r'exitcode\s*:\s*-\d+', r'Aborted', r'Segmentation fault', r'SIGSEGV',
)
_ABORT = re.compile('|'.join(ABORT_PATTERNS))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rounds', type=int, default=30,
                        help='train + test rounds (default 30)')
    parser.add_argument('--gpus', type=int, default=2,
                        help='processes per launch (default 2)')
    parser.add_argument('--iters', type=int, default=2,
                        help='training iterations per round (default 2)')
    parser.add_argument('--num-images', type=int, default=4,
                        help='generated training and test images (default 4)')
    parser.add_argument('--config', default=DEFAULT_CONFIG,
                        help='a config reading the quickstart VOC 2012 '
                        'layout (default: the quickstart DeepLab-v2 + C3)')
    parser.add_argument('--out', default=osp.join('work_dirs', 'stress'),
                        help='output directory (default work_dirs/stress)')
    parser.add_argument('--timeout', type=float, default=900,
                        help='seconds allowed per launch (default 900)')
    parser.add_argument('--keep', action='store_true',
                        help='keep the work dirs of clean rounds (by default '
                        'only unclean rounds keep theirs, with their logs)')
    args = parser.parse_args(argv)
    for name in ('rounds', 'gpus', 'iters', 'num_images'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1, got '
                         f'{getattr(args, name)}')
    if osp.isfile(args.config):
        args.config = osp.abspath(args.config)
    elif osp.isfile(osp.join(ROOT, args.config)):
        args.config = osp.join(ROOT, args.config)
    else:
        parser.error(f'config file not found: {args.config}')
    return args


def _free_port() -> str:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return str(sock.getsockname()[1])


def unclean_reason(returncode: int, output: str) -> str:
    """Why a launch did not end cleanly, or ``''`` if it did."""
    if returncode != 0:
        return f'exit code {returncode}'
    match = _ABORT.search(output)
    if match:
        return f'exit code 0 but the log says {match.group(0)!r}'
    return ''


def _launch(cmd, timeout: float):
    env = dict(os.environ, PYTHONUNBUFFERED='1',
               OMP_NUM_THREADS=os.environ.get('OMP_NUM_THREADS', '1'),
               PYTHON=os.environ.get('PYTHON', sys.executable),
               PORT=_free_port())
    start = time.time()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              timeout=timeout)
        code, out = proc.returncode, proc.stdout
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout or ''
        if isinstance(out, bytes):
            out = out.decode(errors='replace')
        code, out = 124, out + f'\n[stress] timed out after {timeout} s\n'
    return code, out, time.time() - start


def main(argv=None) -> int:
    args = parse_args(argv)
    out_dir = osp.abspath(args.out)
    data = osp.join(out_dir, 'data')
    data_root = osp.join(data, 'VOCdevkit', 'VOC2012')
    if not osp.isfile(osp.join(data_root, 'ImageSets', 'Segmentation',
                               'val.txt')):
        subprocess.run([
            sys.executable, osp.join(ROOT, 'tools', 'misc',
                                     'generate_synthetic_data.py'),
            '--out', data, '--formats', 'voc', '--voc-years', '2012',
            '--num-train', str(args.num_images), '--num-val',
            str(args.num_images), '--size', '160', '128', '--seed', '0'
        ], check=True)
    options = [
        f'train_dataloader.dataset.datasets.0.data_root={data_root}',
        f'test_dataloader.dataset.data_root={data_root}',
        f'train_cfg.max_iters={args.iters}',
        f'default_hooks.checkpoint.interval={args.iters}',
        'default_hooks.logger.interval=1',
        # evaluation is dist_test.sh's job
        'val_dataloader=None', 'val_evaluator=None', 'val_cfg=None',
    ]
    tools = osp.join(ROOT, 'tools')
    unclean = {'train': 0, 'test': 0}
    rounds = []
    for i in range(1, args.rounds + 1):
        work = osp.join(out_dir, f'round_{i:03d}')
        code, log, train_s = _launch(
            ['bash', osp.join(tools, 'dist_train.sh'), args.config,
             str(args.gpus), '--work-dir', work, '--cfg-options', *options],
            args.timeout)
        train_reason = unclean_reason(code, log)
        ckpt = osp.join(work, f'iter_{args.iters}.pth')
        if not train_reason and not osp.isfile(ckpt):
            train_reason = f'no checkpoint {ckpt}'
        test_reason, test_s = 'not run (training failed)', 0.0
        if not train_reason:
            code, test_log, test_s = _launch(
                ['bash', osp.join(tools, 'dist_test.sh'), args.config, ckpt,
                 str(args.gpus), '--work-dir', osp.join(work, 'test'),
                 '--cfg-options', *options], args.timeout)
            test_reason = unclean_reason(code, test_log)
            if not test_reason and 'mIoU' not in test_log:
                test_reason = 'no metric printed'
            if test_reason:
                with open(osp.join(work, 'test_unclean.log'), 'w') as f:
                    f.write(test_log)
        if train_reason:
            os.makedirs(work, exist_ok=True)
            with open(osp.join(work, 'train_unclean.log'), 'w') as f:
                f.write(log)
        if not (train_reason or test_reason or args.keep):
            shutil.rmtree(work, ignore_errors=True)
        unclean['train'] += bool(train_reason)
        unclean['test'] += bool(test_reason)
        rounds.append(dict(round=i, train=train_reason or 'clean',
                           test=test_reason or 'clean',
                           train_seconds=round(train_s, 1),
                           test_seconds=round(test_s, 1)))
        print(f'[stress] round {i}/{args.rounds}: train '
              f'{train_reason or "clean"} ({train_s:.0f} s), test '
              f'{test_reason or "clean"} ({test_s:.0f} s)', flush=True)
    clean = sum(r['train'] == 'clean' and r['test'] == 'clean'
                for r in rounds)
    summary = dict(rounds=args.rounds, clean_rounds=clean,
                   unclean_train=unclean['train'],
                   unclean_test=unclean['test'], gpus=args.gpus,
                   iters=args.iters, config=args.config, details=rounds)
    with open(osp.join(out_dir, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    print(f'[stress] {clean} of {args.rounds} rounds ended cleanly '
          f'(dist_train.sh unclean: {unclean["train"]}, dist_test.sh '
          f'unclean: {unclean["test"]}); details in '
          f'{osp.join(out_dir, "summary.json")}')
    return 0 if clean == args.rounds else 1


if __name__ == '__main__':
    sys.exit(main())
