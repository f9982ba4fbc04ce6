"""CAM of a GAP + linear head against its definition."""
import pytest
import torch
from torch import nn

from mmc3.analysis import (channel_contributions, class_activation_maps,
                           linear_head, top_channels)


def test_cam_is_w_times_a_and_explains_the_logit():
    torch.manual_seed(0)
    feats = torch.rand(3, 5, 4, 6, dtype=torch.float64)
    fc = nn.Linear(5, 7).double()
    classes = torch.tensor([6, 0, 3])
    cam = class_activation_maps(feats, fc.weight, classes)
    for n in range(3):
        expected = sum(fc.weight[classes[n], k] * feats[n, k]
                       for k in range(5))
        torch.testing.assert_close(cam[n], expected, rtol=1e-12, atol=0)
    # GAP + linear: mean of the map plus the bias is the logit
    logits = fc(feats.mean(dim=(2, 3)))
    torch.testing.assert_close(
        cam.mean(dim=(1, 2)) + fc.bias[classes],
        logits[torch.arange(3), classes], rtol=1e-12, atol=1e-14)


def test_top_channels_rank_by_contribution():
    feats = torch.zeros(1, 4, 2, 2)
    feats[0, 0] = 1.0   # mean 1
    feats[0, 1] = 3.0   # mean 3
    feats[0, 2] = 2.0   # mean 2
    feats[0, 3] = 10.0  # mean 10, but negative weight
    weight = torch.tensor([[1.0, 1.0, 1.0, -1.0]])
    cls = torch.tensor([0])
    assert channel_contributions(feats, weight, cls).tolist() == \
        [[1.0, 3.0, 2.0, -10.0]]
    index, maps = top_channels(feats, weight, cls, k=2)
    assert index.tolist() == [[1, 2]]
    torch.testing.assert_close(maps[0, 0], torch.full((2, 2), 3.0))
    torch.testing.assert_close(maps[0, 1], torch.full((2, 2), 2.0))
    # k larger than the channels: all of them
    assert top_channels(feats, weight, cls, k=9)[0].shape == (1, 4)


def test_bad_shapes_and_heads_are_clear_errors():
    with pytest.raises(ValueError, match=r'features \(N, K, H, W\)'):
        class_activation_maps(torch.zeros(1, 5, 2, 2), torch.zeros(3, 4),
                              torch.tensor([0]))

    class NotGap(nn.Module):
        pass

    model = nn.Module()
    model.neck, model.head = NotGap(), nn.Module()
    with pytest.raises(ValueError, match='got neck NotGap'):
        linear_head(model)


def test_linear_head_of_an_mmpretrain_classifier():
    pytest.importorskip('mmpretrain', reason='mmpretrain is not installed')
    from mmengine.registry import DefaultScope
    from mmpretrain.models import ImageClassifier

    # its default data preprocessor is named without a scope: build it in
    # mmpretrain's, whatever default scope earlier tests left behind
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = ImageClassifier(
            backbone=dict(type='mmpretrain.ResNet_CIFAR', depth=18),
            neck=dict(type='mmpretrain.GlobalAveragePooling'),
            head=dict(type='mmpretrain.LinearClsHead', num_classes=3,
                      in_channels=512))
    assert linear_head(model) is model.head.fc
