"""Class activation maps (CAM) of a global-average-pooling + linear head.

Zhou, Khosla, Lapedriza, Oliva, Torralba, "Learning Deep Features for
Discriminative Localization", CVPR 2016, Sec. 2: with features ``A_k(x, y)``
of the last layer, global average pooling and a linear classifier ``w_ck``,

    M_c(x, y) = sum_k w_ck A_k(x, y),   logit_c = mean_xy M_c(x, y) + b_c,

so the map is exact from the head's weights (no gradients needed). The
seeds (``000``, Figs. 1-3) show ``M_c`` of the predicted class and the
maps of its top channels, ranked by their contribution ``w_ck mean(A_k)``
to the predicted class score.
"""
from typing import Tuple

import torch
from torch import Tensor, nn


def class_activation_maps(features: Tensor, weight: Tensor,
                          classes: Tensor) -> Tensor:
    """``M_c = sum_k w_ck A_k`` for one class per image.

    Shape:
        - features: ``(N, K, H, W)``, the last layer's output.
        - weight: ``(num_classes, K)``, the linear head's weight.
        - classes: ``(N,)`` class index per image.
        - output: ``(N, H, W)``.
    """
    if features.dim() != 4 or weight.dim() != 2 or \
            weight.size(1) != features.size(1):
        raise ValueError('class_activation_maps: expected features (N, K, '
                         'H, W) and weight (num_classes, K), got '
                         f'{tuple(features.shape)} and {tuple(weight.shape)}')
    w = weight[classes.long()].to(features.dtype)  # (N, K)
    # (N, 1, K) @ (N, K, HW) -> (N, 1, HW) -> (N, H, W)
    maps = torch.bmm(w.unsqueeze(1), features.flatten(2))
    return maps.view(features.size(0), *features.shape[2:])


def channel_contributions(features: Tensor, weight: Tensor,
                          classes: Tensor) -> Tensor:
    """``w_ck mean_xy A_k`` per channel for one class per image, ``(N, K)``:
    the channels' shares of the class logit (minus its bias)."""
    w = weight[classes.long()].to(features.dtype)  # (N, K)
    return w * features.mean(dim=(2, 3))


def top_channels(features: Tensor, weight: Tensor, classes: Tensor,
                 k: int) -> Tuple[Tensor, Tensor]:
    """The ``k`` channels contributing most to each image's class and their
    maps ``w_ck A_k``.

    Returns:
        tuple: indices ``(N, k)`` (largest contribution first) and maps
        ``(N, k, H, W)``.
    """
    contrib = channel_contributions(features, weight, classes)
    k = min(k, features.size(1))
    index = contrib.topk(k, dim=1).indices  # (N, k)
    w = weight[classes.long()].to(features.dtype).gather(1, index)
    picked = features.gather(
        1, index[:, :, None, None].expand(-1, -1, *features.shape[2:]))
    return index, picked * w[:, :, None, None]


def linear_head(model: nn.Module) -> nn.Linear:
    """The linear layer of an mmpretrain ``ImageClassifier`` whose neck is
    global average pooling and whose head is linear (``LinearClsHead``:
    ``head.fc``); a ``ValueError`` saying what is missing otherwise."""
    neck = getattr(model, 'neck', None)
    head = getattr(model, 'head', None)
    fc = getattr(head, 'fc', None)
    pooling = neck is not None and type(neck).__name__ == \
        'GlobalAveragePooling'
    if not pooling or not isinstance(fc, nn.Linear):
        raise ValueError(
            'CAM needs a classifier with a global-average-pooling neck and '
            'a linear head (mmpretrain GlobalAveragePooling + '
            f'LinearClsHead), got neck {type(neck).__name__} and head '
            f'{type(head).__name__}')
    return fc


def last_features(model: nn.Module, inputs: Tensor) -> Tensor:
    """The backbone's last output, the features ``A`` the head pools,
    ``(N, K, H, W)``."""
    with torch.no_grad():
        feats = model.backbone(inputs)
    if isinstance(feats, (tuple, list)):
        feats = feats[-1]
    return feats
