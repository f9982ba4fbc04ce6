"""What tools/train.py and tools/test.py share: the common command-line
arguments, the config with the command line applied, and the runner.

Nothing here imports mmc3 (and with it mmdet/mmseg): a bad command line fails
in about a second, before the heavy imports.
"""
import argparse
import gc
import os
import os.path as osp

from mmengine.config import Config, DictAction

# mmengine's launchers (mmc3.utils.LAUNCHERS), spelled out for the reason above
LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')


def add_common_args(parser: argparse.ArgumentParser,
                    trust_help: str) -> None:
    """``--trust-checkpoint``, ``--cfg-options``, ``--launcher`` and the
    ``--local-rank`` that ``torch.distributed.launch`` passes."""
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help=trust_help)
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings in the config, key=value pairs, e.g. '
        'train_dataloader.dataset.data_root=data/ '
        'model.backbone.depth=50 "key=[a,b]"')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none',
                        help='job launcher')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def check_common_args(parser: argparse.ArgumentParser,
                      args: argparse.Namespace) -> None:
    """Export ``LOCAL_RANK`` and refuse a config path that does not exist."""
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    if not osp.isfile(args.config):
        parser.error(f'config file not found: {args.config}')


def load_config(args: argparse.Namespace) -> Config:
    """The config with ``--cfg-options`` merged and the work_dir set
    (command line > config > ``work_dirs/<config stem>``)."""
    # let mmengine resolve mmc3:: bases, as mmc3.utils.mim does on import
    # (spelled out here: importing mmc3 is what this module avoids)
    from mmengine.config import utils as config_utils
    config_utils.MODULE2PACKAGE.setdefault('mmc3', 'mmc3')
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    return cfg


def prepare_run(cfg: Config, args: argparse.Namespace, loaders=None) -> str:
    """Apply ``--trust-checkpoint``, check every ``plugins`` list of the
    model (any host, upstream ResNets included) and the dataset paths of
    ``loaders`` (all by default), then set up the process group (``gloo``
    without CUDA).

    Returns:
        str: a message naming a bad plugin entry or a missing dataset path,
        or ``''``.
    """
    from mmc3.utils import (check_config_plugins, check_dataset_paths,
                            prepare_distributed, trust_checkpoints)
    if args.trust_checkpoint:
        trust_checkpoints()
    kwargs = {} if loaders is None else dict(loaders=loaders)
    problem = check_config_plugins(cfg) or check_dataset_paths(cfg, **kwargs)
    if not problem:
        prepare_distributed(cfg, args.launcher)
    return problem or ''


def run_and_finish(cfg: Config, work) -> None:
    """Build the runner, call ``work(runner)``, then end the run on every
    rank the same way: the runner is released, all ranks meet at a barrier
    and the process group is destroyed (:func:`mmc3.utils.finish_distributed`),
    so no rank tears down its connections while a peer still uses them.
    """
    from mmc3.utils import finish_distributed
    runner = build_runner(cfg)
    work(runner)
    del runner
    gc.collect()  # DDP and the dataloaders hold the group: release them first
    finish_distributed()


def build_runner(cfg: Config):
    """The config's runner: ``runner_type`` if set, else mmengine's
    ``Runner`` with atomic checkpoint writes
    (:class:`mmc3.utils.AtomicCheckpointRunner`)."""
    from mmengine.registry import RUNNERS

    from mmc3.utils import AtomicCheckpointRunner
    if 'runner_type' not in cfg:
        return AtomicCheckpointRunner.from_cfg(cfg)
    return RUNNERS.build(cfg)
