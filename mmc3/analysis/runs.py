"""A config's model with a checkpoint, and its test data, for the analyses.

Plain functions usable from a notebook:

    >>> cfg = Config.fromfile('configs/quickstart/resnet20_c3_digits.py')
    >>> model = load_model(cfg, 'work_dirs/quickstart/cls_c3/iter_400.pth')
    >>> batches = test_batches(cfg, model, num_images=200)
    >>> top1 = accuracy(model, batches)

A batch is the model's data preprocessor output (``inputs`` normalised on
the model's device, ``data_samples``) plus ``images``, the raw uint8 images
the dataloader produced (for overlays). Batches are kept in memory, so a
measure that runs the model many times (ablation curves) reads and
preprocesses the data once.
"""
import copy
import os.path as osp
from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch
from torch import Tensor, nn


@dataclass
class Batch:
    """One preprocessed test batch.

    Attributes:
        inputs (Tensor): ``(N, 3, H, W)`` as the model's data preprocessor
            returns it.
        data_samples (list): The data samples (ground truth, meta).
        images (list[Tensor]): The images before preprocessing, ``(3, H,
            W)`` uint8 as the dataloader produced them (channel order of
            the pipeline: BGR for mmcv's loader).
    """

    inputs: Tensor
    data_samples: list
    images: List[Tensor]


def load_model(cfg, checkpoint: Optional[str] = None,
               device: str = 'cpu') -> nn.Module:
    """Build ``cfg.model`` in the config's scope (no pretrained downloads;
    the config's top-level ``data_preprocessor`` merged in as mmengine's
    runner does), load ``checkpoint`` strictly and return it in eval mode.

    Raises:
        FileNotFoundError: ``checkpoint`` does not exist.
        RuntimeError: its ``state_dict`` does not fit the model (names the
            missing and unexpected keys).
    """
    from mmengine.registry import MODELS, DefaultScope
    from mmengine.runner import load_checkpoint

    import mmc3  # noqa: F401  (registers the hosts and blocks)
    import mmc3.utils  # noqa: F401  (safe loading of mmengine checkpoints)
    from mmc3.testing import drop_pretrained
    if checkpoint is not None and not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {checkpoint}')
    model_cfg = copy.deepcopy(cfg.model)
    drop_pretrained(model_cfg)
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    scope = cfg.get('default_scope')
    with DefaultScope.overwrite_default_scope(scope):
        with MODELS.switch_scope_and_registry(scope) as registry:
            model = registry.build(model_cfg)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True,
                        logger='silent')
    return model.to(device).eval()


def load_data(cfg, num_images: Optional[int] = None,
              progress: bool = True) -> List[dict]:
    """The first ``num_images`` images (all if None) of the config's
    ``test_dataloader`` as the loader yields them (before preprocessing),
    in batches."""
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner
    from mmengine.utils import ProgressBar
    if num_images is not None and (isinstance(num_images, bool)
                                   or not isinstance(num_images, int)
                                   or num_images < 1):
        raise ValueError(f'num_images must be a positive int, got '
                         f'{num_images!r}')
    loader_cfg = copy.deepcopy(cfg.test_dataloader)
    loader_cfg['num_workers'] = 0
    loader_cfg['persistent_workers'] = False
    scope = cfg.get('default_scope')
    with DefaultScope.overwrite_default_scope(scope):
        loader = Runner.build_dataloader(loader_cfg)
    total = len(loader.dataset)
    wanted = total if num_images is None else min(num_images, total)
    bar = ProgressBar(wanted) if progress else None
    out, seen = [], 0
    for data in loader:
        keep = min(len(data['inputs']), wanted - seen)
        out.append({k: v[:keep] for k, v in data.items()})
        seen += keep
        if bar is not None:
            bar.update(keep)
        if seen >= wanted:
            break
    if progress:
        print()
    return out


def preprocess(model: nn.Module, data: Sequence[dict]) -> List[Batch]:
    """``data`` (from :func:`load_data`) through ``model``'s data
    preprocessor, so that models of different configs each see the images
    as they were trained to."""
    batches = []
    with torch.no_grad():
        for item in data:
            images = [img.clone() for img in item['inputs']]
            processed = model.data_preprocessor(dict(item), False)
            batches.append(Batch(processed['inputs'],
                                 processed['data_samples'], images))
    return batches


def test_batches(cfg, model: nn.Module, num_images: Optional[int] = None,
                 progress: bool = True) -> List[Batch]:
    """:func:`load_data` then :func:`preprocess` by ``model``."""
    return preprocess(model, load_data(cfg, num_images, progress))


def labels(batch: Batch) -> Tensor:
    """Ground-truth class per image of a classification batch, ``(N,)``."""
    try:
        return torch.cat([s.gt_label.view(-1)[:1] for s in batch.data_samples])
    except AttributeError as err:
        raise ValueError('this measure needs class labels: the data samples '
                         'have no gt_label (an mmpretrain classification '
                         'config is needed)') from err


def logits(model: nn.Module, batch: Batch) -> Tensor:
    """Class scores of a classifier, ``(N, num_classes)``: the model's
    ``tensor`` mode (mmpretrain's ``ImageClassifier`` returns its head's
    output there)."""
    with torch.no_grad():
        out = model(batch.inputs, batch.data_samples, mode='tensor')
    if isinstance(out, (tuple, list)):
        out = out[-1]
    if not isinstance(out, Tensor) or out.dim() != 2:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out)
        raise ValueError('this measure needs a classifier whose tensor mode '
                         f'returns (N, num_classes) scores, got {shape}')
    return out


def run_all(model: nn.Module, batches: Sequence[Batch]) -> None:
    """Run the model's tensor mode on every batch (for hooks that record)."""
    with torch.no_grad():
        for batch in batches:
            model(batch.inputs, batch.data_samples, mode='tensor')


def accuracy(model: nn.Module, batches: Sequence[Batch]) -> float:
    """Top-1 accuracy in percent over ``batches``."""
    correct = total = 0
    for batch in batches:
        pred = logits(model, batch).argmax(dim=1).cpu()
        correct += int((pred == labels(batch)).sum())
        total += len(pred)
    return 100.0 * correct / max(total, 1)
