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
from torch.utils.checkpoint import checkpoint

#: Affinities (``groups x C' x C'`` elements) the dense path forms at a time
#: (2**26: 256 MB in float32); see ``max_elements``.
DENSE_MAX_ELEMENTS = 1 << 26


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


def _check_summaries(caller: str, z: Tensor, v: Optional[Tensor]) -> None:
    """``v`` must be None or one summary per channel of ``z``."""
    if v is None:
        return
    if not isinstance(v, Tensor) or tuple(v.shape) != tuple(z.shape[:2]):
        shape = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
        raise ValueError(f'{caller}: v must be None or a {tuple(z.shape[:2])}'
                         f' tensor (one summary per channel of z), got '
                         f'{shape}')


def dense_message(z: Tensor, exclude_self: bool,
                  group_size: Optional[int],
                  max_elements: Optional[int] = None,
                  v: Optional[Tensor] = None) -> Tensor:
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
        max_elements (int, optional): Largest number of affinities
            (``groups x C' x C'``) formed at a time. More groups than fit are
            processed in chunks, each recomputed in the backward pass, so the
            memory stays bounded in training too (the C4 head at 2 images x
            512 RoIs x 2048 channels would otherwise need a 4 GB affinity
            matrix per 256 RoIs). Defaults to :data:`DENSE_MAX_ELEMENTS`.
        v (Tensor, optional): ``(N, C)`` summaries that weight the message
            in place of ``z.mean(2)``, with their own gradient (the C3 block
            passes the means of the maps the message is decoded into, see
            :func:`mmc3.models.blocks.message.message_passing`). Defaults to
            None.

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
    _check_summaries('dense_message', z, v)
    if exclude_self and cg == 1:
        return z * 0

    groups = c // cg
    # (N, C, P) -> (N * G, C / G, P): consecutive channels share a group
    zg = z.reshape(n * groups, cg, p)
    vg = None if v is None else v.reshape(n * groups, cg)
    budget = DENSE_MAX_ELEMENTS if max_elements is None else max_elements
    chunk = max(1, budget // (cg * cg))  # groups whose affinities fit
    if zg.shape[0] <= chunk:
        return _dense_groups(zg, exclude_self, vg).reshape(n, c, p)
    parts = []
    for start in range(0, zg.shape[0], chunk):
        part = zg[start:start + chunk]
        vpart = None if vg is None else vg[start:start + chunk]
        if torch.is_grad_enabled() and (part.requires_grad or (
                vpart is not None and vpart.requires_grad)):
            # recomputed in the backward pass: the saved affinities of one
            # chunk at a time, not of all of them
            parts.append(checkpoint(_dense_groups, part, exclude_self, vpart,
                                    use_reentrant=False))
        else:
            parts.append(_dense_groups(part, exclude_self, vpart))
    return torch.cat(parts).reshape(n, c, p)


def _dense_groups(zg: Tensor, exclude_self: bool,
                  vg: Optional[Tensor] = None) -> Tensor:
    """The message of every group of ``zg``: (B, C', P) -> (B, C', P),
    weighted by ``vg`` (B, C') or, if None, by the means of ``zg``."""
    cg = zg.shape[1]
    compute_dtype = torch.promote_types(zg.dtype, torch.float32)
    with torch.autocast(device_type=zg.device.type, enabled=False):
        v = (zg.to(compute_dtype).mean(dim=2) if vg is None else
             vg.to(compute_dtype))  # (N * G, C / G)
        # (N*G, C/G, 1) - (N*G, 1, C/G) -> (N*G, C/G, C/G); the clamp keeps
        # an overflowing square finite, so a row is never all -inf
        sq_dist = (v.unsqueeze(2) - v.unsqueeze(1)).pow(2)
        scores = -sq_dist.clamp(max=torch.finfo(compute_dtype).max)
        if exclude_self:
            eye = torch.eye(cg, dtype=torch.bool, device=zg.device)
            scores = scores.masked_fill(eye, float('-inf'))
        attn = torch.softmax(scores, dim=2)  # rows sum to 1 over j
    # (N*G, C/G, C/G) @ (N*G, C/G, P) -> (N*G, C/G, P)
    return torch.bmm(attn.to(zg.dtype), zg)
