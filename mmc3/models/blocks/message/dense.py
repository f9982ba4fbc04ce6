"""Dense cross-channel message passing of the C3 block.

Yang, Ren, Gan, Zhu, Parikh, "Cross-channel Communication Networks",
NeurIPS 2019, Sec. 3 "Message Passing" (released code:
https://github.com/jwyang/C3Net.pytorch):

    v_i = mean_p z_i[p],   s_ij = -(v_i - v_j)^2,
    a_ij = softmax_j(s_ij),  zbar_i = sum_j a_ij z_j

The paper sums over ``j != i`` (``exclude_self=True``: the diagonal of ``s``
is masked to ``-inf`` before the softmax); the released code keeps ``j = i``.

This is the reference ("dense") implementation: it materialises the
``C x C`` affinity matrix of every channel group, which is simple and exact
but costs ``O(C^2)`` memory per sample.
"""
from typing import Optional

import torch
from torch import Tensor


def _check_group_size(group_size: Optional[int], channels: int) -> int:
    """Return the number of channels per group, validating ``group_size``."""
    if group_size is None:
        return channels
    if isinstance(group_size, bool) or not isinstance(group_size, int):
        raise TypeError('dense_message: group_size must be None or a positive '
                        f'int, got {type(group_size).__name__} {group_size!r}')
    if group_size < 1 or channels % group_size != 0:
        raise ValueError('dense_message: group_size must be a positive '
                         f'divisor of the channel count {channels}, got '
                         f'{group_size}')
    return group_size


def dense_message(z: Tensor, exclude_self: bool,
                  group_size: Optional[int]) -> Tensor:
    """Compute the C3 message ``zbar`` from the encoded maps ``z``.

    ``zbar_i = sum_j softmax_j(-(v_i - v_j)^2) z_j`` with ``v_i`` the mean of
    ``z_i`` over its positions; ``j`` runs over the channels of ``i``'s group
    (all channels when ``group_size`` is None), excluding ``i`` itself when
    ``exclude_self`` is True.

    All groups of all samples are handled by one batched matrix product: the
    channels are reshaped to ``(N * G, C / G, P)``; there is no Python loop
    over channels or groups.

    Shape:
        - z: ``(N, C, P)``
        - output: ``(N, C, P)``, same dtype as ``z``

    Args:
        z (Tensor): Encoded channel maps, flattened over positions.
        exclude_self (bool): Mask ``j = i`` out of the softmax (paper) or keep
            it (released code).
        group_size (int, optional): Number of consecutive channels that
            communicate with each other; must divide ``C``. None means all
            channels form one group.

    Returns:
        Tensor: The message ``zbar``.

    Note:
        - The means, affinities and softmax are computed in at least float32
          with autocast disabled (float64 inputs stay float64), so fp16/bf16
          training cannot overflow ``(v_i - v_j)^2`` or lose the softmax
          (a square beyond the dtype's range is clamped to its largest
          finite value); the final product runs in ``z``'s dtype.
        - With ``exclude_self`` and groups of one channel there is nobody to
          talk to: the message is zero (never NaN). It is returned as
          ``z * 0`` so that the encoder stays in the autograd graph (with zero
          gradients), which keeps DDP's unused-parameter check quiet.
    """
    if not isinstance(z, Tensor) or z.dim() != 3:
        shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
        raise ValueError(
            f'dense_message: z must be a (N, C, P) tensor, got {shape}')
    n, c, p = z.shape
    cg = _check_group_size(group_size, c)
    if exclude_self and cg == 1:
        return z * 0

    groups = c // cg
    # (N, C, P) -> (N * G, C / G, P): consecutive channels share a group
    zg = z.reshape(n * groups, cg, p)
    compute_dtype = torch.promote_types(z.dtype, torch.float32)
    with torch.autocast(device_type=z.device.type, enabled=False):
        v = zg.to(compute_dtype).mean(dim=2)  # (N * G, C / G)
        # (N*G, C/G, 1) - (N*G, 1, C/G) -> (N*G, C/G, C/G); the clamp keeps
        # an overflowing square finite, so a row is never all -inf
        sq_dist = (v.unsqueeze(2) - v.unsqueeze(1)).pow(2)
        scores = -sq_dist.clamp(max=torch.finfo(compute_dtype).max)
        if exclude_self:
            eye = torch.eye(cg, dtype=torch.bool, device=z.device)
            scores = scores.masked_fill(eye, float('-inf'))
        attn = torch.softmax(scores, dim=2)  # rows sum to 1 over j
    # (N*G, C/G, C/G) @ (N*G, C/G, P) -> (N*G, C/G, P)
    message = torch.bmm(attn.to(z.dtype), zg)
    return message.reshape(n, c, p)  # (N * G, C / G, P) -> (N, C, P)
