"""Evaluate a checkpoint with the config's test dataloader and evaluator.

Same arguments as mmdet's ``tools/test.py``; works for mmdet, mmseg and
mmpretrain configs (the codebase is the config's ``default_scope``):

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE.pkl]
        [--show-dir DIR] [--cfg-options k=v ...] [--launcher ...]

Multi-process evaluation: ``tools/dist_test.sh`` (torchrun, ``gloo`` on a
host without CUDA) or ``tools/slurm_test.sh``. The metrics are the upstream
evaluators' (COCO / VOC mAP, mIoU, accuracy), printed by mmengine's logger.
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import Config, DictAction

# mmengine's launchers (mmc3.utils.LAUNCHERS): spelled out so that a bad
# command line fails before mmc3 (and with it mmdet/mmseg) is imported
LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')

# Visualization hooks of the three codebases: the keys that turn drawing on
# and where each writes its images (relative to the run's log dir).
_SHOW_DIR_KEYS = {
    'DetVisualizationHook': ('draw', 'test_out_dir'),
    'SegVisualizationHook': ('draw', None),
    'VisualizationHook': ('enable', 'out_dir'),
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir',
                        help='the directory to save the file containing '
                        'evaluation metrics (default: work_dirs/<config '
                        'name>)')
    parser.add_argument('--out', type=str,
                        help='dump predictions to a pickle file (.pkl)')
    parser.add_argument('--show-dir',
                        help='directory where painted images are saved '
                        '(inside the run directory of the work_dir)')
    parser.add_argument(
        '--trust-checkpoint', action='store_true',
        help='load the checkpoint with full unpickling (weights_only=False); '
        'a malicious file can run code: only for files you trust')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings in the config, key=value pairs')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none',
                        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    if not osp.isfile(args.config):
        parser.error(f'config file not found: {args.config}')
    if not osp.isfile(args.checkpoint) and '://' not in args.checkpoint:
        parser.error(f'checkpoint file not found: {args.checkpoint}')
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        parser.error(f'--out must be a .pkl/.pickle file, got {args.out}')
    return args


def _enable_show_dir(cfg: Config, show_dir: str) -> None:
    hook = cfg.default_hooks.get('visualization') if cfg.get(
        'default_hooks') else None
    if not hook or hook.get('type') not in _SHOW_DIR_KEYS:
        raise ValueError(
            '--show-dir needs default_hooks.visualization of type '
            f'{", ".join(_SHOW_DIR_KEYS)}; got {hook!r}')
    switch, out_key = _SHOW_DIR_KEYS[hook['type']]
    hook[switch] = True
    if out_key is not None:
        hook[out_key] = show_dir
    else:  # mmseg saves through the visualizer's backends
        cfg.visualizer['save_dir'] = show_dir


def build_cfg(args: argparse.Namespace) -> Config:
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    if args.show_dir:
        _enable_show_dir(cfg, args.show_dir)
    return cfg


def main(argv=None) -> int:
    args = parse_args(argv)
    from mmc3.utils import (check_dataset_paths, prepare_distributed,
                            trust_checkpoints)
    if args.trust_checkpoint:
        trust_checkpoints()
    cfg = build_cfg(args)
    problem = check_dataset_paths(cfg, loaders=('test_dataloader', ))
    if problem:
        print(f'error: {problem}', file=sys.stderr)
        return 2
    prepare_distributed(cfg, args.launcher)

    from mmengine.evaluator import DumpResults
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    if 'runner_type' not in cfg:
        runner = Runner.from_cfg(cfg)
    else:
        runner = RUNNERS.build(cfg)
    if args.out is not None:
        runner.test_evaluator.metrics.append(
            DumpResults(out_file_path=args.out))
    runner.test()
    return 0


if __name__ == '__main__':
    sys.exit(main())
