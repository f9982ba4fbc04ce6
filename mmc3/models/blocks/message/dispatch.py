"""Which message passing runs: dense or fast, from the group size, the
positions and the device (the measured break-even), and the entry point the
C3 block calls."""
import math
from typing import Optional

import torch
from torch import Tensor

from .dense import dense_message
from .function import _check_args, fast_message

#: Break-even channel count of the CPU as a function of the positions,
#: ``C*(P) = a P / (P + b)`` with ``(a, b)`` below: fitted to the crossovers
#: measured by ``benchmark_message_passing.py --crossover --positions 4 49
#: 196`` (one thread, torch 2.9.1, forward+backward: the fast path wins
#: from 128, 192 and 384 channels and loses at 64, 128 and 256).
CPU_CROSSOVER = (525.0, 98.0)

#: Smallest channel count per group from which 'auto' picks the fast path:
#: ``'cpu'`` is the floor under :data:`CPU_CROSSOVER`. Other devices (CUDA)
#: are not measured: there 'auto' stays dense (whose memory is bounded by
#: chunking, :data:`.dense.DENSE_MAX_ELEMENTS`) until a measurement says
#: otherwise; the fast path reads sizes and orders back to the host several
#: times per call. ``message_impl='fast'`` still runs it anywhere.
FAST_MIN_CHANNELS = {'cpu': 128}

#: Accepted values of ``impl`` (and of ``C3Block``'s ``message_impl``).
MESSAGE_IMPLS = ('auto', 'dense', 'fast')


def choose_message_impl(num_channels: int, num_positions: int,
                        device: torch.device) -> str:
    """Return ``'fast'`` or ``'dense'`` for a group of ``num_channels``:
    ``'fast'`` from :func:`fast_min_channels` channels on.

    Args:
        num_channels (int): Channels per group ``C``.
        num_positions (int): Positions per channel ``P``.
        device (torch.device): Where the message is computed.

    Returns:
        str: ``'fast'`` or ``'dense'``.
    """
    threshold = fast_min_channels(num_positions, device)
    if threshold is None:
        return 'dense'
    return 'fast' if num_channels >= threshold else 'dense'


def fast_min_channels(num_positions: int,
                      device: torch.device) -> Optional[int]:
    """Smallest group size for which 'auto' picks the fast path.

    Dense costs ``~ C^2 (P + k)`` per group, fast ``~ C P p`` plus a fixed
    overhead per call, so the break-even ``C`` grows with ``P`` and levels
    off. On the CPU it is ``a P / (P + b)`` (:data:`CPU_CROSSOVER`, measured
    with ``tools/analysis_tools/benchmark_message_passing.py --crossover``),
    and at least ``FAST_MIN_CHANNELS['cpu']``. A device type without an
    entry in :data:`FAST_MIN_CHANNELS` (CUDA: not measured) gets None:
    'auto' is dense there.

    Args:
        num_positions (int): Positions per channel ``P``.
        device (torch.device): Where the message is computed.

    Returns:
        int or None: The threshold ``C``, or None for "never".
    """
    dev_type = torch.device(device).type
    floor = FAST_MIN_CHANNELS.get(dev_type)
    if dev_type != 'cpu':
        return floor
    a, b = CPU_CROSSOVER
    return max(floor, math.ceil(a * num_positions / (num_positions + b)))


def message_passing(z: Tensor,
                    exclude_self: bool = True,
                    group_size: Optional[int] = None,
                    impl: str = 'auto',
                    tol: float = 1e-5,
                    v: Optional[Tensor] = None) -> Tensor:
    """C3 message with a choice of implementation.

    Shape:
        - z: ``(N, C, P)``
        - output: ``(N, C, P)``

    Args:
        z (Tensor): Encoded channel maps, flattened over positions.
        exclude_self (bool): Sum over ``j != i``. Defaults to True.
        group_size (int, optional): Channels per communicating group.
            Defaults to None (all channels).
        impl (str): ``'dense'`` (:func:`dense_message`, exact), ``'fast'``
            (:func:`fast_message`) or ``'auto'`` (:func:`choose_message_impl`
            on the group size, the positions and ``z``'s device). Defaults to
            ``'auto'``.
        tol (float): Error target of the fast path (see
            :func:`fast_message`). Defaults to 1e-5.
        v (Tensor, optional): ``(N, C)`` summaries that weight the message
            in place of ``z.mean(2)``, with their own gradient. The C3 block
            runs the message on its encoder's hidden units ``h`` (the
            message commutes with the encoder's last linear map, because
            the weights of every row sum to one) and passes the means of
            the maps ``z`` they decode to. Defaults to None.

    Returns:
        Tensor: The message ``zbar``.
    """
    if impl not in MESSAGE_IMPLS:
        raise ValueError('message_passing: impl must be one of '
                         f'{MESSAGE_IMPLS}, got {impl!r}')
    cg = _check_args('message_passing', z, exclude_self, group_size, tol)
    if impl == 'auto':
        impl = choose_message_impl(cg, z.shape[2], z.device)
    if impl == 'dense':
        return dense_message(z, exclude_self, group_size, v=v)
    return fast_message(z, exclude_self, group_size, tol, v=v)
