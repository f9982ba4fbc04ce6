"""Named points of a model where the analyses read or change features.

A *point* is a module name from ``model.named_modules()``, optionally with
``:input``: ``'backbone.layer3'`` is that module's output,
``'backbone.layer1:input'`` its first positional input. The analyses
(diversity, class selectivity, channel ablation, ...) take points so that a
baseline and a model with blocks are measured at the same places.

Defaults are found by structure, not by host class:

- stages: modules whose own name is ``layer<i>`` and that are
  ``nn.Sequential`` (mmdet's, mmseg's and mmpretrain's ResNets, ResNeXt,
  MobileNetV2, mmc3's hosts, a C4 detector's ``roi_head.shared_head.layer4``);
- the stem output: the input of the first stage;
- blocks: the children of a stage.
"""
import re
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from torch import Tensor, nn

_STAGE_NAME = re.compile(r'layer(\d+)$')
INPUT_SUFFIX = ':input'


def split_point(point: str) -> Tuple[str, bool]:
    """``'a.b:input'`` -> ``('a.b', True)``; ``'a.b'`` -> ``('a.b',
    False)``."""
    if not isinstance(point, str) or not point:
        raise ValueError(f'a point must be a module name, optionally with '
                         f"':input', got {point!r}")
    if point.endswith(INPUT_SUFFIX):
        return point[:-len(INPUT_SUFFIX)], True
    return point, False


def resolve_module(model: nn.Module, name: str) -> nn.Module:
    """The module called ``name`` in ``model``; a ``ValueError`` naming it and
    the closest existing names otherwise."""
    modules = dict(model.named_modules())
    if name in modules and name:
        return modules[name]
    tail = name.rsplit('.', 1)[-1]
    close = [n for n in modules if n and n.rsplit('.', 1)[-1] == tail][:5]
    if not close:
        close = [n for n in modules if n and '.' not in n][:8]
    raise ValueError(f'the model has no module named {name!r}; '
                     f'existing names include: {", ".join(close)}')


def stages(model: nn.Module) -> List[str]:
    """Names of the model's stages (``...layer<i>`` ``nn.Sequential``
    modules) in forward order: by stage index, then by position in
    ``named_modules`` (a C4 detector's ``layer4`` comes after the
    backbone's ``layer3``)."""
    found = []
    for order, (name, module) in enumerate(model.named_modules()):
        match = _STAGE_NAME.search(name.rsplit('.', 1)[-1])
        if match and isinstance(module, nn.Sequential) and len(module):
            found.append((int(match.group(1)), order, name))
    return [name for _, _, name in sorted(found)]


def last_stage(model: nn.Module) -> str:
    """The last stage's name; a ``ValueError`` if the model has none."""
    names = stages(model)
    if not names:
        raise ValueError('the model has no stage (a module named layer<i> '
                         'that is an nn.Sequential); name the layers to '
                         'analyse explicitly')
    return names[-1]


def stage_blocks(model: nn.Module, stage: Optional[str] = None) -> List[str]:
    """Names of the blocks (children) of ``stage``, the last stage by
    default."""
    stage = last_stage(model) if stage is None else stage
    module = resolve_module(model, stage)
    return [f'{stage}.{child}' for child, _ in module.named_children()]


def modules_of_type(model: nn.Module,
                    types: Sequence[type]) -> List[str]:
    """Names of the modules that are instances of ``types``."""
    return [name for name, m in model.named_modules()
            if name and isinstance(m, tuple(types))]


def default_diversity_points(model: nn.Module) -> List[str]:
    """The stem output, every stage's output and every C3 block's input and
    output, in forward order (blocks after the stage they sit in or after)."""
    from mmc3.models.blocks import C3Block
    names = stages(model)
    points = [names[0] + INPUT_SUFFIX] if names else []
    blocks = modules_of_type(model, (C3Block, ))
    for stage in names:
        points.append(stage)
        inside = [b for b in blocks if b.startswith(stage + '.')]
        for block in inside:
            points += [block + INPUT_SUFFIX, block]
        blocks = [b for b in blocks if b not in inside]
    # C3 blocks outside stages (after the stem or between stages)
    for block in blocks:
        points += [block + INPUT_SUFFIX, block]
    return points


def point_label(point: str, model: nn.Module) -> str:
    """A short label: ``'stem'`` for the first stage's input, else the
    point itself."""
    names = stages(model)
    if names and point == names[0] + INPUT_SUFFIX:
        return 'stem'
    return point


class FeatureTap:
    """Call ``fn(point, tensor)`` with the feature at each point on every
    forward, or replace it with what ``fn`` returns (``modify=True``).

    Example:
        >>> means = {}
        >>> with FeatureTap(model, ['backbone.layer3'],
        ...                 lambda p, x: means.setdefault(p, []).append(
        ...                     x.mean((2, 3)))):
        ...     model(images)

    Args:
        model (nn.Module): The model.
        points (Sequence[str]): Points (see :func:`split_point`); every
            module name is checked at construction.
        fn (callable): ``fn(point, tensor)``. For an output point the tensor
            is the module's output, for an ``:input`` point its first
            positional input.
        modify (bool): If True, ``fn``'s return value replaces the feature
            (the output, or the first input). Defaults to False.
    """

    def __init__(self, model: nn.Module, points: Sequence[str],
                 fn: Callable[[str, Tensor], Optional[Tensor]],
                 modify: bool = False) -> None:
        self.model = model
        self.fn = fn
        self.modify = modify
        self.points = list(points)
        self._targets = []
        for point in self.points:
            name, is_input = split_point(point)
            self._targets.append((point, resolve_module(model, name),
                                  is_input))
        self._handles: list = []

    def _output_hook(self, point: str):

        def hook(module: nn.Module, args: tuple, output):
            if not isinstance(output, Tensor):
                raise TypeError(f'point {point!r}: the module returns '
                                f'{type(output).__name__}, not a tensor')
            result = self.fn(point, output)
            return result if self.modify else None

        return hook

    def _input_hook(self, point: str):

        def hook(module: nn.Module, args: tuple):
            if not args or not isinstance(args[0], Tensor):
                raise TypeError(f'point {point!r}: the module is called '
                                'without a tensor as its first input')
            result = self.fn(point, args[0])
            return (result, ) + tuple(args[1:]) if self.modify else None

        return hook

    def start(self) -> 'FeatureTap':
        """Register the hooks (idempotent)."""
        if not self._handles:
            for point, module, is_input in self._targets:
                self._handles.append(
                    module.register_forward_pre_hook(self._input_hook(point))
                    if is_input else
                    module.register_forward_hook(self._output_hook(point)))
        return self

    def stop(self) -> None:
        """Remove the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> 'FeatureTap':
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def collect(model: nn.Module, points: Sequence[str],
            reduce: Callable[[Tensor], Tensor],
            run: Callable[[], None]) -> Dict[str, List[Tensor]]:
    """Run ``run()`` with a tap on ``points``; return ``{point: [reduce(x)
    detached on the CPU, one per call]}`` in the order the points were first
    reached in the forward (points never reached last, with empty lists)."""
    out: Dict[str, List[Tensor]] = {}

    def fn(point: str, x: Tensor) -> None:
        out.setdefault(point, []).append(reduce(x.detach()).cpu())

    with FeatureTap(model, points, fn):
        run()
    for point in points:
        out.setdefault(point, [])
    return out

