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
import os.path as osp
import sys

from _common import (LAUNCHERS, add_common_args,  # noqa: F401
                     check_common_args, load_config, prepare_run,
                     run_and_finish)
from mmengine.config import Config

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
    add_common_args(
        parser,
        trust_help='load the checkpoint with full unpickling '
        '(weights_only=False); a malicious file can run code: only for files '
        'you trust')
    args = parser.parse_args(argv)
    check_common_args(parser, args)
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
    cfg = load_config(args)
    cfg.load_from = args.checkpoint
    if args.show_dir:
        _enable_show_dir(cfg, args.show_dir)
    return cfg


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = build_cfg(args)
    problem = prepare_run(cfg, args, loaders=('test_dataloader', ))
    if problem:
        print(f'error: {problem}', file=sys.stderr)
        return 2

    def evaluate(runner) -> None:
        if args.out is not None:
            from mmengine.evaluator import DumpResults
            runner.test_evaluator.metrics.append(
                DumpResults(out_file_path=args.out))
        runner.test()

    run_and_finish(cfg, evaluate)
    return 0


if __name__ == '__main__':
    sys.exit(main())
