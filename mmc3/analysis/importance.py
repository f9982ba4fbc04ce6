"""Feature importance from gates: drop a block's gated channels by their gate.

Hu, Shen, Albanie, Sun, Vedaldi, "Gather-Excite", NeurIPS 2018, Sec. 4
("Feature importance and performance") and seed ``003`` Fig. 3: for each
test image, zero a ratio of a gated block's output channels, ordered by the
gate the block assigned them for that image, least important (smallest
gate) first or most important first, and measure top-1 against the ratio.

A *gated block* exposes its gate as a submodule named ``gate`` whose output
has one value per channel (``SEBlock``: ``(N, C, 1, 1)``; ``GEBlock``:
``(N, C, h, w)``; ``CEBlock``: its IR branch's ``(N, C)``). The gate is read
by a forward hook on that submodule and the block's output is masked by a
forward hook on the block, so the blocks' own forward runs unchanged.
A spatial gate becomes one score per channel by its mean over positions
(``reduce='mean'``, the default) or its maximum (``'max'``).
"""
from typing import List, Optional

import torch
from torch import Tensor, nn

from .points import resolve_module

ORDERS = ('least', 'most')
REDUCTIONS = ('mean', 'max')


def is_gated(module: nn.Module) -> bool:
    """Whether ``module`` exposes a gate (a ``gate`` submodule)."""
    return isinstance(getattr(module, 'gate', None), nn.Module)


def gated_blocks(model: nn.Module) -> List[str]:
    """Names of the model's gated blocks, in ``named_modules`` order."""
    return [name for name, m in model.named_modules() if name and is_gated(m)]


def gate_scores(gate: Tensor, reduce: str = 'mean') -> Tensor:
    """One score per channel from a gate ``(N, C, *spatial)``: ``(N, C)``."""
    if reduce not in REDUCTIONS:
        raise ValueError(f'gate_scores: reduce must be one of {REDUCTIONS}, '
                         f'got {reduce!r}')
    flat = gate.flatten(2) if gate.dim() > 2 else gate.unsqueeze(2)
    return flat.mean(dim=2) if reduce == 'mean' else flat.amax(dim=2)


def drop_mask(scores: Tensor, ratio: float, order: str) -> Tensor:
    """A 0/1 mask ``(N, C)`` that zeroes ``round(ratio * C)`` channels per
    image: those with the smallest scores (``order='least'``) or the
    largest (``'most'``). Ties keep the lower channel index first."""
    if order not in ORDERS:
        raise ValueError(f'drop_mask: order must be one of {ORDERS}, got '
                         f'{order!r}')
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f'drop_mask: ratio must be in [0, 1], got {ratio}')
    n, c = scores.shape
    count = int(round(ratio * c))
    ranked = torch.argsort(scores, dim=1, descending=(order == 'most'),
                           stable=True)
    mask = torch.ones(n, c, dtype=scores.dtype, device=scores.device)
    mask.scatter_(1, ranked[:, :count], 0.0)
    return mask


class GateDrop:
    """While active, zero ``ratio`` of the output channels of the gated
    block ``name`` per image, ordered by its gate.

    Args:
        model (nn.Module): The model.
        name (str): A gated block's name.
        ratio (float): Fraction of channels to drop, in ``[0, 1]``.
        order (str): ``'least'`` (smallest gate first) or ``'most'``.
        reduce (str): How a spatial gate becomes a score per channel,
            ``'mean'`` or ``'max'``. Defaults to ``'mean'``.
    """

    def __init__(self, model: nn.Module, name: str, ratio: float,
                 order: str, reduce: str = 'mean') -> None:
        block = resolve_module(model, name)
        if not is_gated(block):
            raise ValueError(
                f'{name!r} ({type(block).__name__}) has no gate; gated '
                f'blocks of this model: {gated_blocks(model) or "none"}')
        drop_mask(torch.zeros(1, 1), ratio, order)  # check the arguments
        gate_scores(torch.zeros(1, 1), reduce)
        self.block, self.ratio, self.order = block, ratio, order
        self.reduce = reduce
        self._scores: Optional[Tensor] = None
        self._handles: list = []

    def _read_gate(self, module: nn.Module, args: tuple, out: Tensor) -> None:
        self._scores = gate_scores(out.detach(), self.reduce)

    def _mask_output(self, module: nn.Module, args: tuple,
                     out: Tensor) -> Tensor:
        if self._scores is None or self._scores.shape != out.shape[:2]:
            got = None if self._scores is None else tuple(self._scores.shape)
            raise RuntimeError(
                f'{type(module).__name__}: its gate gave scores of shape '
                f'{got} for an output of shape {tuple(out.shape)}')
        mask = drop_mask(self._scores, self.ratio, self.order)
        self._scores = None
        return out * mask.view(*mask.shape, *([1] * (out.dim() - 2)))

    def __enter__(self) -> 'GateDrop':
        self._handles = [
            self.block.gate.register_forward_hook(self._read_gate),
            self.block.register_forward_hook(self._mask_output)
        ]
        return self

    def __exit__(self, *exc_info) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
