"""Check that the files a config's datasets read exist, before training.

Without this, a wrong ``data_root`` surfaces deep inside a dataloader
worker, after the model is built, as a ``FileNotFoundError`` from whichever
codebase's loader ran first (or, with several processes, as a hang while the
other ranks wait). :func:`check_dataset_paths` walks the dataset configs
(through ``ConcatDataset.datasets`` and wrapper ``dataset`` keys) and names
the first missing path and the config key it came from.
"""
import os.path as osp
from typing import Any, Iterator, Optional, Sequence, Tuple

DEFAULT_LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def _join(root: Optional[str], path: str) -> str:
    if root and not osp.isabs(path) and '://' not in path:
        return osp.join(root, path)
    return path


def _dataset_paths(dataset: Any, key: str) -> Iterator[Tuple[str, str]]:
    """Yield ``(path, config key)`` for every local path ``dataset`` reads."""
    if not isinstance(dataset, dict):
        return
    if isinstance(dataset.get('dataset'), dict):  # RepeatDataset & co.
        yield from _dataset_paths(dataset['dataset'], key + '.dataset')
    for i, sub in enumerate(dataset.get('datasets') or []):
        yield from _dataset_paths(sub, f'{key}.datasets.{i}')
    if dataset.get('download'):  # e.g. CIFAR: fetched on first use
        return
    root = dataset.get('data_root')
    if root:
        yield root, key + '.data_root'
    ann_file = dataset.get('ann_file')
    if ann_file:
        yield _join(root, ann_file), key + '.ann_file'
    prefix = dataset.get('data_prefix')
    if isinstance(prefix, str) and prefix:
        yield _join(root, prefix), key + '.data_prefix'
    elif isinstance(prefix, dict):
        sub_root = prefix.get('sub_data_root')
        for name, value in prefix.items():
            if not isinstance(value, str) or not value:
                continue
            if name != 'sub_data_root' and sub_root:
                value = osp.join(sub_root, value)
            yield _join(root, value), f'{key}.data_prefix.{name}'


def check_dataset_paths(cfg: Any,
                        loaders: Sequence[str] = DEFAULT_LOADERS
                        ) -> Optional[str]:
    """Return a message naming the first missing dataset path, else None.

    Args:
        cfg (mmengine.Config or dict): the experiment config.
        loaders (Sequence[str]): dataloader keys to check; absent or ``None``
            loaders are skipped. Defaults to train, val and test.

    Returns:
        str or None: e.g. ``"dataset path does not exist: data/coco/annotations
        /instances_train2017.json (train_dataloader.dataset.ann_file)"``.
    """
    for loader in loaders:
        loader_cfg = cfg.get(loader) if hasattr(cfg, 'get') else None
        if not isinstance(loader_cfg, dict):
            continue
        for path, key in _dataset_paths(loader_cfg.get('dataset'),
                                        loader + '.dataset'):
            if '://' in path:  # remote storage backends are not checked
                continue
            if not osp.exists(path):
                return (f'dataset path does not exist: {path} ({key}); '
                        'point the config at your data, e.g. --cfg-options '
                        f'{key}=...')
    return None
