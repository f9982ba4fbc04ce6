"""Class selectivity index of channels.

Morcos, Barrett, Rabinowitz, Botvinick, "On the importance of single
directions for generalization", ICLR 2018, Sec. 2.3; used by the GE paper
(seed ``003``, Fig. 2) on the blocks of ResNet-50's fourth stage:

    SI = (mu_max - mu_rest) / (mu_max + mu_rest)

with ``mu_c`` the class-conditional mean over images of a channel's
spatially averaged activation, ``mu_max`` the largest of them and
``mu_rest`` the mean of the other classes' ``mu_c``. For non-negative
activations (after a ReLU, as a ResNet block's output) ``SI`` is in
``[0, 1]``: 0 for a channel equally active for every class, 1 for one
active for a single class only. Where ``mu_max + mu_rest = 0`` (a channel
never active) ``SI`` is defined as 0.
"""
import torch
from torch import Tensor


def class_means(activations: Tensor, labels: Tensor,
                num_classes: int) -> Tensor:
    """Class-conditional means ``(num_classes, C)`` of ``(N, C)``
    activations; rows of classes without images are NaN."""
    if activations.dim() != 2 or labels.shape != activations.shape[:1]:
        raise ValueError('class_means: expected activations (N, C) and '
                         f'labels (N,), got {tuple(activations.shape)} and '
                         f'{tuple(labels.shape)}')
    acts = activations.to(torch.float64)
    sums = torch.zeros(num_classes, acts.size(1), dtype=torch.float64)
    sums.index_add_(0, labels.long(), acts)
    counts = torch.bincount(labels.long(), minlength=num_classes)
    means = sums / counts.clamp(min=1)[:, None]
    means[counts == 0] = float('nan')
    return means


def class_selectivity(activations: Tensor, labels: Tensor,
                      num_classes: int) -> Tensor:
    """Selectivity index per channel, ``(C,)`` float64.

    Args:
        activations (Tensor): ``(N, C)`` spatially averaged activations.
        labels (Tensor): ``(N,)`` class per image.
        num_classes (int): Number of classes; classes without images are
            left out of ``mu_max`` and ``mu_rest``. At least two classes
            must have images.
    """
    means = class_means(activations, labels, num_classes)
    present = ~torch.isnan(means[:, 0])
    if int(present.sum()) < 2:
        raise ValueError('class_selectivity needs images of at least two '
                         f'classes, got {int(present.sum())}')
    means = means[present]  # (K, C), K classes with images
    mu_max = means.max(dim=0).values
    mu_rest = (means.sum(dim=0) - mu_max) / (means.size(0) - 1)
    denom = mu_max + mu_rest
    si = (mu_max - mu_rest) / torch.where(denom == 0,
                                          torch.ones_like(denom), denom)
    return torch.where(denom == 0, torch.zeros_like(si), si)
