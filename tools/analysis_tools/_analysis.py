"""What the analysis commands share: the command line (configs,
``--checkpoint``/``--label`` pairs, ``--num-images``, ``--out-dir``), the
models and test data, JSON output and matplotlib figures (Agg backend).

The command line is checked before the heavy imports, so a missing file is
reported in about a second.
"""
import argparse
import json
import os
import os.path as osp
import sys
from typing import List, NamedTuple

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if ROOT not in sys.path:  # run from a clone without installing
    sys.path.insert(0, ROOT)


class Model(NamedTuple):
    label: str
    config: str
    checkpoint: str
    cfg: object
    model: object


def parser(description: str, default_out: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        'config', nargs='+',
        help='config file: one for every checkpoint, or one per checkpoint '
        'in the same order (e.g. a baseline and a C3 config); the test '
        'data are the first config\'s test_dataloader')
    p.add_argument('--checkpoint', action='append', required=True,
                   help='checkpoint file; repeat to compare models')
    p.add_argument('--label', action='append',
                   help='name of each model in plots and numbers, one per '
                   '--checkpoint (default: the checkpoint\'s folder name)')
    p.add_argument('--num-images', type=int, default=500,
                   help='test images to use (default 500; fewer if the '
                   'test set is smaller)')
    p.add_argument('--out-dir', default=osp.join('work_dirs', 'analysis',
                                                 default_out),
                   help='where numbers (JSON) and plots (PNG) are written '
                   f'(default work_dirs/analysis/{default_out})')
    p.add_argument('--device', default='cpu', help='torch device')
    p.add_argument('--trust-checkpoint', action='store_true',
                   help='load checkpoints with full unpickling (runs code '
                   'from the file: trusted files only)')
    return p


def parse(p: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Parse and check the files and pairs; errors exit 2 naming them."""
    args = p.parse_args(argv)
    for path in args.config:
        if not osp.isfile(path):
            p.error(f'config file not found: {path}')
    for path in args.checkpoint:
        if not osp.isfile(path):
            p.error(f'checkpoint not found: {path}')
    if len(args.config) not in (1, len(args.checkpoint)):
        p.error(f'give one config or one per checkpoint: got '
                f'{len(args.config)} configs for {len(args.checkpoint)} '
                'checkpoints')
    if args.label is None:
        args.label = [osp.basename(osp.dirname(osp.abspath(c)))
                      for c in args.checkpoint]
        if len(set(args.label)) < len(args.label):
            args.label = [osp.splitext(osp.basename(c))[0] + f'#{i}'
                          for i, c in enumerate(args.checkpoint)]
    if len(args.label) != len(args.checkpoint):
        p.error(f'give one --label per --checkpoint: got {len(args.label)} '
                f'labels for {len(args.checkpoint)} checkpoints')
    if len(set(args.label)) < len(args.label):
        p.error(f'labels must differ: {args.label}')
    if args.num_images < 1:
        p.error(f'--num-images must be positive, got {args.num_images}')
    return args


def models(args: argparse.Namespace) -> List[Model]:
    """Every (label, config, checkpoint) built and loaded, in eval mode."""
    from mmengine.config import Config

    from mmc3.analysis.runs import load_model
    from mmc3.utils import trust_checkpoints
    if args.trust_checkpoint:
        trust_checkpoints()
    configs = args.config * len(args.checkpoint) \
        if len(args.config) == 1 else args.config
    out = []
    for label, config, ckpt in zip(args.label, configs, args.checkpoint):
        cfg = Config.fromfile(config)
        print(f'[{label}] {config} + {ckpt}', flush=True)
        out.append(Model(label, config, ckpt, cfg,
                         load_model(cfg, ckpt, args.device)))
    return out


def data(args: argparse.Namespace, first: Model) -> list:
    """The first config's test data (``--num-images``), with progress."""
    from mmc3.analysis.runs import load_data
    print(f'reading up to {args.num_images} test images of {first.config}',
          flush=True)
    return load_data(first.cfg, args.num_images)


def fail(message: str) -> None:
    """Exit 1 with a one-line error."""
    print(f'error: {message}', file=sys.stderr, flush=True)
    sys.exit(1)


def write_json(args: argparse.Namespace, name: str, obj) -> str:
    os.makedirs(args.out_dir, exist_ok=True)
    path = osp.join(args.out_dir, name)
    with open(path, 'w') as f:
        json.dump(obj, f, indent=2)
    print(f'wrote {path}', flush=True)
    return path


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def save_figure(args: argparse.Namespace, fig, name: str) -> str:
    os.makedirs(args.out_dir, exist_ok=True)
    path = osp.join(args.out_dir, name)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    pyplot().close(fig)
    print(f'wrote {path}', flush=True)
    return path


def meta(args: argparse.Namespace, entries: List[Model], raw: list,
         **extra) -> dict:
    """What a JSON file records about the run: the models, and the test
    images asked for and used (fewer when the test set is smaller)."""
    return dict(models=[dict(label=m.label, config=m.config,
                             checkpoint=m.checkpoint) for m in entries],
                num_images=args.num_images,
                images=sum(len(item['inputs']) for item in raw), **extra)
