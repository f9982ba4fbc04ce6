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
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import Config, DictAction

# mmengine's launchers (mmc3.utils.LAUNCHERS): spelled out so that a bad
# command line fails before mmc3 (and with it mmdet/mmseg) is imported
LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')


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
    parser.add_argument(
        '--trust-checkpoint', action='store_true',
        help='load checkpoints with full unpickling (weights_only=False); '
        'a malicious file can run code: only for files you trust')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings in the config, key=value pairs, e.g. '
        'train_dataloader.dataset.data_root=data/ '
        'model.backbone.depth=50 "key=[a,b]"')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none',
                        help='job launcher')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    if not osp.isfile(args.config):
        parser.error(f'config file not found: {args.config}')
    return args


def build_cfg(args: argparse.Namespace) -> Config:
    """The config with the command line applied (no process group yet)."""
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)

    # work_dir priority: CLI > config > work_dirs/<config stem>
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])

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

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def main(argv=None) -> int:
    args = parse_args(argv)
    from mmc3.utils import (check_dataset_paths, prepare_distributed,
                            trust_checkpoints)
    if args.trust_checkpoint:
        trust_checkpoints()
    cfg = build_cfg(args)
    problem = check_dataset_paths(cfg)
    if problem:
        print(f'error: {problem}', file=sys.stderr)
        return 2
    prepare_distributed(cfg, args.launcher)

    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    if 'runner_type' not in cfg:
        runner = Runner.from_cfg(cfg)
    else:
        runner = RUNNERS.build(cfg)
    runner.train()
    return 0


if __name__ == '__main__':
    sys.exit(main())
