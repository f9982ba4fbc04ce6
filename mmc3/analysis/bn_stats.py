"""BN bias signs and inhibited channels.

Seed ``004`` (CE paper), Table 6 and Fig. 1: after training, a large share
of BN biases ``beta_c`` is non-positive (76-82% in ImageNet ResNets), and a
channel with ``gamma_c -> 0`` and ``beta_c <= 0`` is *inhibited*: its BN-ReLU
output ``max(0, gamma_c z + beta_c)`` is zero for every input.

- :func:`bn_bias_ratio`: the ratio of ``beta_c <= 0`` over all BN channels of
  a model and per BN layer (no data needed).
- :class:`InhibitedChannels`: over data, each BN channel's mean of
  ``ReLU(BN(x))`` over images and positions; a channel counts as inhibited
  when that mean is at most ``threshold`` (default ``1e-2``; BN outputs are
  of unit scale where ``gamma`` is). The ReLU is applied to every BN's output
  as if a ReLU followed it, which holds for the BN-ReLU pairs of a ResNet
  (``norm1``, ``norm2`` of a bottleneck, the stem) and is a proxy for the
  BNs before a residual sum (``norm3``): restrict ``names`` to measure only
  the former.
"""
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from .points import resolve_module

DEFAULT_THRESHOLD = 1e-2


def bn_layers(model: nn.Module) -> List[str]:
    """Names of the model's affine batch-norm layers (``_BatchNorm``
    subclasses: BN, SyncBN), in ``named_modules`` order."""
    return [name for name, m in model.named_modules()
            if isinstance(m, _BatchNorm) and m.affine]


def bn_bias_ratio(model: nn.Module,
                  names: Optional[Sequence[str]] = None) -> Dict:
    """Ratio of BN biases ``beta <= 0``.

    Returns:
        dict: ``{'all': ratio over every channel of the layers,
        'channels': their number, 'layers': {name: ratio}}``.
    """
    names = bn_layers(model) if names is None else list(names)
    if not names:
        raise ValueError('the model has no affine batch-norm layer')
    per_layer, nonpos, total = {}, 0, 0
    for name in names:
        module = resolve_module(model, name)
        if not isinstance(module, _BatchNorm) or not module.affine:
            raise ValueError(f'{name!r} is {type(module).__name__}, not an '
                             'affine batch-norm layer')
        beta = module.bias.detach()
        count = int((beta <= 0).sum())
        per_layer[name] = count / beta.numel()
        nonpos += count
        total += beta.numel()
    return dict(all=nonpos / total, channels=total, layers=per_layer)


class InhibitedChannels:
    """Mean ``ReLU(BN(x))`` per channel of BN layers over every forward while
    active.

    Example:
        >>> with InhibitedChannels(model) as rec:
        ...     model(images)
        >>> rec.result()['all']  # ratio of inhibited channels

    Args:
        model (nn.Module): The model.
        names (Sequence[str], optional): BN layers to watch. Defaults to
            all (:func:`bn_layers`).
        threshold (float): A channel is inhibited when its mean activation
            is at most this. Defaults to ``DEFAULT_THRESHOLD`` (1e-2).
    """

    def __init__(self, model: nn.Module,
                 names: Optional[Sequence[str]] = None,
                 threshold: float = DEFAULT_THRESHOLD) -> None:
        self.names = bn_layers(model) if names is None else list(names)
        if not self.names:
            raise ValueError('the model has no affine batch-norm layer')
        if isinstance(threshold, bool) or \
                not isinstance(threshold, (int, float)) or threshold < 0:
            raise ValueError(f'threshold must be a number >= 0, got '
                             f'{threshold!r}')
        self.threshold = float(threshold)
        self.modules = [resolve_module(model, n) for n in self.names]
        for name, module in zip(self.names, self.modules):
            if not isinstance(module, _BatchNorm):
                raise ValueError(f'{name!r} is {type(module).__name__}, not '
                                 'a batch-norm layer')
        self.sums: Dict[str, Tensor] = {}
        self.counts: Dict[str, int] = {}
        self._handles: list = []

    def _hook(self, name: str):

        def hook(module: nn.Module, args: tuple, out: Tensor) -> None:
            act = out.detach().clamp(min=0).to(torch.float64)
            dims = [0] + list(range(2, act.dim()))
            total = act.sum(dim=dims).cpu()
            self.sums[name] = self.sums.get(name, 0) + total
            self.counts[name] = self.counts.get(name, 0) + \
                act.numel() // act.size(1)

        return hook

    def means(self) -> Dict[str, Tensor]:
        """Mean activation per channel of each watched layer seen so far."""
        return {n: self.sums[n] / self.counts[n] for n in self.names
                if n in self.sums}

    def result(self) -> Dict:
        """``{'all': inhibited ratio over every channel, 'channels': their
        number, 'threshold': ..., 'layers': {name: ratio}}``."""
        means = self.means()
        if not means:
            raise RuntimeError('InhibitedChannels: no forward was recorded')
        layers = {n: float((m <= self.threshold).double().mean())
                  for n, m in means.items()}
        inhibited = sum(int((m <= self.threshold).sum())
                        for m in means.values())
        total = sum(m.numel() for m in means.values())
        return dict(all=inhibited / total, channels=total,
                    threshold=self.threshold, layers=layers)

    def __enter__(self) -> 'InhibitedChannels':
        self._handles = [m.register_forward_hook(self._hook(n))
                         for n, m in zip(self.names, self.modules)]
        return self

    def __exit__(self, *exc_info) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
