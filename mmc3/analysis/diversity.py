"""Channel diversity of a feature map, and a recorder around C3 blocks.

Yang, Ren, Gan, Zhu, Parikh, "Cross-channel Communication Networks",
NeurIPS 2019, "Measure Diversity": for one layer's flattened channel maps
``x_i in R^P``, the Pearson correlation between channels,

    c_ij = <x_i - v_i, x_j - v_j> / (sigma_i sigma_j),  v_i = mean_p x_i[p],

and the layer's diversity score ``d_l = 1/n^2 sum_i sum_j |c_ij|`` (all
pairs, diagonal included). Lower ``d_l`` means more diverse channels; the
paper reports that a C3 block's output is more diverse than its input.
"""
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Type

import torch
from torch import Tensor, nn

from mmc3.models.blocks import C3Block


def channel_diversity(x: Tensor, rtol: float = 1e-6) -> Tensor:
    """Per-sample mean absolute Pearson correlation between channel maps.

    ``d = 1/C^2 sum_i sum_j |c_ij|`` with ``c_ij`` the Pearson correlation of
    channels ``i`` and ``j`` over all spatial positions of one sample.

    Shape:
        - x: ``(N, C, *spatial)`` with at least one spatial dim, e.g.
          ``(N, C, H, W)`` or ``(N, C, P)``
        - output: ``(N,)``

    Args:
        x (Tensor): Feature map. Gradients flow through the result.
        rtol (float): A channel counts as constant when its centred norm is at
            most ``rtol`` times its uncentred norm (or it is all zeros). The
            default ``1e-6`` treats float32 rounding noise around a constant
            (e.g. a dead ReLU channel or a BN channel whose input was
            constant) as constant. Defaults to 1e-6.

    Returns:
        Tensor: ``d`` per sample, in ``[0, 1]``, dtype at least float32.

    Note:
        - Constant channels: the Pearson correlation is ``0 / 0`` for a
          channel without spatial variation. It is defined here as 0 with
          every channel, its own diagonal entry included (the channel carries
          no spatial pattern, so it correlates with nothing), which keeps
          ``d`` finite and in ``[0, 1]``. Consequently dead channels lower
          ``d``; an all-constant map (for example any ``1 x 1`` map) has
          ``d = 0``.
        - The sum is computed in float64 for accuracy; the result is cast to
          ``x``'s dtype promoted to at least float32.
        - The released code's diversity helper subtracts the mean over
          channels at each position instead of each channel's spatial mean
          and has no guard for constant channels; this follows the paper's
          formula.
    """
    if not isinstance(x, Tensor) or x.dim() < 3:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError('channel_diversity: x must be a (N, C, *spatial) '
                         f'tensor with at least one spatial dim, got {shape}')
    if isinstance(rtol, bool) or not isinstance(rtol, (int, float)) \
            or rtol < 0:
        raise ValueError(
            f'channel_diversity: rtol must be a float >= 0, got {rtol!r}')
    # (N, C, *spatial) -> (N, C, P)
    flat = x.flatten(2).to(torch.float64)
    centred = flat - flat.mean(dim=2, keepdim=True)
    norm = centred.norm(dim=2, keepdim=True)  # (N, C, 1)
    constant = norm <= rtol * flat.norm(dim=2, keepdim=True)
    # unit-norm centred maps; constant channels become all-zero rows
    unit = torch.where(constant, torch.zeros_like(centred),
                       centred / torch.where(constant, torch.ones_like(norm),
                                             norm))
    # (N, C, P) @ (N, P, C) -> (N, C, C)
    corr = torch.bmm(unit, unit.transpose(1, 2)).clamp(-1.0, 1.0)
    out_dtype = torch.promote_types(x.dtype, torch.float32)
    return corr.abs().mean(dim=(1, 2)).to(out_dtype)


@dataclass
class DiversityRecord:
    """Diversity around one call of one recorded module.

    Attributes:
        name (str): The module's name in the model (``named_modules``).
        before (Tensor): ``channel_diversity`` of the module's input, ``(N,)``.
        after (Tensor): ``channel_diversity`` of its output, ``(N,)``.
    """

    name: str
    before: Tensor
    after: Tensor


class DiversityRecorder:
    """Record channel diversity before and after every C3 block of a model.

    Forward hooks on each matching module compute :func:`channel_diversity`
    of the module's first input and of its output (detached, without
    gradients, stored on the CPU) on every forward call while the recorder is
    active.

    Example:
        >>> with DiversityRecorder(model) as rec:
        ...     model(images)
        >>> rec.records[0].name, rec.records[0].before, rec.records[0].after
        >>> rec.summary()  # {name: (mean before, mean after)}

    Args:
        model (nn.Module): The model to watch.
        types (Sequence[type], optional): Module classes to record. Defaults
            to ``(C3Block,)``; pass e.g. ``(SEBlock,)`` to compare other
            blocks the same way.
        rtol (float): Passed to :func:`channel_diversity`. Defaults to 1e-6.

    Note:
        A module run several times per step (shared modules, activation
        checkpointing recomputation) is recorded on every call.
    """

    def __init__(self,
                 model: nn.Module,
                 types: Optional[Sequence[Type[nn.Module]]] = None,
                 rtol: float = 1e-6) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError('DiversityRecorder: model must be an nn.Module, '
                            f'got {type(model).__name__}')
        types = (C3Block, ) if types is None else tuple(types)
        if not types or not all(isinstance(t, type) for t in types):
            raise TypeError('DiversityRecorder: types must be a non-empty '
                            f'sequence of module classes, got {types!r}')
        self.model = model
        self.types = types
        self.rtol = rtol
        self.records: List[DiversityRecord] = []
        self._handles: list = []
        self._targets = [(name, m) for name, m in model.named_modules()
                         if isinstance(m, types)]
        if not self._targets:
            names = ', '.join(t.__name__ for t in types)
            raise ValueError('DiversityRecorder: the model has no module of '
                             f'type {names} to record')

    def _hook(self, name: str):

        def hook(module: nn.Module, args: Tuple, output: Tensor) -> None:
            with torch.no_grad():
                before = channel_diversity(args[0].detach(), self.rtol)
                after = channel_diversity(output.detach(), self.rtol)
            self.records.append(
                DiversityRecord(name, before.cpu(), after.cpu()))

        return hook

    def start(self) -> 'DiversityRecorder':
        """Register the hooks (idempotent)."""
        if not self._handles:
            self._handles = [
                m.register_forward_hook(self._hook(name))
                for name, m in self._targets
            ]
        return self

    def stop(self) -> None:
        """Remove the hooks; the records are kept."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def clear(self) -> None:
        """Forget all records."""
        self.records = []

    def summary(self) -> Dict[str, Tuple[float, float]]:
        """Mean ``(before, after)`` diversity per module over all records."""
        grouped: Dict[str, Tuple[List[Tensor], List[Tensor]]] = {}
        for rec in self.records:
            before, after = grouped.setdefault(rec.name, ([], []))
            before.append(rec.before)
            after.append(rec.after)
        return {
            name: (torch.cat(b).mean().item(), torch.cat(a).mean().item())
            for name, (b, a) in grouped.items()
        }

    def __enter__(self) -> 'DiversityRecorder':
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def diversity_at(model: nn.Module, points: Sequence[str], run,
                 rtol: float = 1e-6) -> Dict[str, Tensor]:
    """:func:`channel_diversity` of every image at each point (see
    :mod:`mmc3.analysis.points`) while ``run()`` runs the model.

    Returns:
        dict: ``{point: (num_images,) float tensor}``.
    """
    from .points import collect
    per_call = collect(model, points, lambda x: channel_diversity(x, rtol),
                       run)
    return {p: torch.cat(v) if v else torch.zeros(0)
            for p, v in per_call.items()}
