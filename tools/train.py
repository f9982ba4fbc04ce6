"""Train a detector, segmentor or classifier from an mmc3 / OpenMMLab config.

Same arguments as mmdet's ``tools/train.py``; works for mmdet, mmseg and
mmpretrain configs alike (the codebase is the config's ``default_scope``).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--auto-scale-lr] [--cfg-options k=v ...] [--launcher none|pytorch|slurm|mpi]

Multi-process runs go through ``tools/dist_train.sh`` (torchrun) or
``tools/slurm_train.sh`` (srun). On a host without CUDA the processes train
with real DistributedDataParallel over ``gloo`` (see
:mod:`mmc3.utils.distributed`); with CUDA, mmengine sets up ``nccl`` as usual.

Checkpoints load with ``torch.load(weights_only=True)`` and an allow-list of
the types mmengine's checkpoints hold (:mod:`mmc3.utils.checkpoint`);
``--trust-checkpoint`` lifts it for trusted legacy files.

Checkpoints are written atomically and carry each rank's random state, so a
run killed at any point resumes with ``--resume`` and continues exactly
(:mod:`mmc3.utils.resume`).
"""
import argparse
import sys

from _common import (LAUNCHERS, add_common_args,  # noqa: F401
                     check_common_args, load_config, prepare_run,
                     run_and_finish)
from mmengine.config import Config


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir',
                        help='the dir to save logs and models '
                        '(default: work_dirs/<config name>)')
    parser.add_argument('--amp', action='store_true', default=False,
                        help='enable automatic-mixed-precision training')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='enable automatically scaling LR')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from the given checkpoint, or, without a value, from '
        'the latest checkpoint in the work_dir')
    add_common_args(
        parser,
        trust_help='load checkpoints with full unpickling '
        '(weights_only=False); a malicious file can run code: only for files '
        'you trust')
    args = parser.parse_args(argv)
    check_common_args(parser, args)
    return args


def build_cfg(args: argparse.Namespace) -> Config:
    """The config with the command line applied (no process group yet)."""
    cfg = load_config(args)

    if args.amp:
        optim_wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if optim_wrapper == 'AmpOptimWrapper':
            print('AMP training is already enabled in the config.',
                  file=sys.stderr)
        else:
            if optim_wrapper != 'OptimWrapper':
                raise ValueError('--amp expects optim_wrapper.type to be '
                                 f'OptimWrapper, got {optim_wrapper!r}')
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'

    if args.auto_scale_lr:
        auto = cfg.get('auto_scale_lr', None)
        if not auto or 'base_batch_size' not in auto:
            raise ValueError(
                '--auto-scale-lr needs auto_scale_lr = dict(enable=..., '
                'base_batch_size=N) in the config, none found in '
                f'{args.config}')
        cfg.auto_scale_lr.enable = True

    # save the generators' states with every checkpoint, so that --resume
    # continues exactly (mmc3.utils.RandomStateHook)
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(isinstance(h, dict) and h.get('type') == 'RandomStateHook'
               for h in hooks):
        hooks.append(dict(type='RandomStateHook'))
    cfg.custom_hooks = hooks

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = build_cfg(args)
    problem = prepare_run(cfg, args)
    if problem:
        print(f'error: {problem}', file=sys.stderr)
        return 2
    run_and_finish(cfg, lambda runner: runner.train())
    return 0


if __name__ == '__main__':
    sys.exit(main())
