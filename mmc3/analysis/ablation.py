"""Cumulative channel ablation.

Morcos, Barrett, Rabinowitz, Botvinick, "On the importance of single
directions for generalization", ICLR 2018, Sec. 2.2; used by the CE paper
(seed ``004``, Fig. 1c and Fig. 7): zero a growing fraction of one layer's
channels in a fixed random order, the same channels for every image, and
plot accuracy against the ablated fraction, averaged over several random
orders (the seed averages 5 runs). A gentler curve means the information
is spread over more channels.
"""
from typing import List, Optional

import torch
from torch import Tensor, nn

from .points import FeatureTap


def ablation_orders(num_channels: int, runs: int,
                    seed: int = 0) -> List[Tensor]:
    """``runs`` random permutations of the channels, reproducible from
    ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.randperm(num_channels, generator=gen) for _ in range(runs)]


def ablated_channels(order: Tensor, fraction: float) -> Tensor:
    """The first ``round(fraction * C)`` channels of ``order``."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f'fraction must be in [0, 1], got {fraction}')
    return order[:int(round(fraction * len(order)))]


class ChannelAblation:
    """While active, zero the given channels of the feature at ``point``.

    Args:
        model (nn.Module): The model.
        point (str): Where (a module name, optionally ``:input``).
        channels (Tensor, optional): Channel indices to zero; set or change
            them with :attr:`channels` between forwards. Defaults to none.
    """

    def __init__(self, model: nn.Module, point: str,
                 channels: Optional[Tensor] = None) -> None:
        self.channels = channels
        self._tap = FeatureTap(model, [point], self._zero, modify=True)

    def _zero(self, point: str, x: Tensor) -> Tensor:
        if self.channels is None or len(self.channels) == 0:
            return x
        if int(self.channels.max()) >= x.size(1):
            top = int(self.channels.max())
            raise ValueError(f'point {point!r} has {x.size(1)} channels, '
                             f'cannot ablate channel {top}')
        mask = torch.ones(x.size(1), dtype=x.dtype, device=x.device)
        mask[self.channels.to(x.device)] = 0
        return x * mask.view(1, -1, *([1] * (x.dim() - 2)))

    def __enter__(self) -> 'ChannelAblation':
        self._tap.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._tap.stop()
