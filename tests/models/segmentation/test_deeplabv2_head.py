"""DeepLabV2Head: four dilated score maps, summed; mmseg's losses and inference."""
import math

import pytest
import torch
import torch.nn.functional as F

import mmc3  # noqa: F401  (registers the head)
from mmc3.models.segmentation import DeepLabV2Head
from tests._helpers import build_in_scope


def _build_head(in_channels=16, num_classes=5, **kwargs):
    return build_in_scope(
        'mmseg', dict(type='DeepLabV2Head', in_channels=in_channels,
                      num_classes=num_classes, **kwargs))


def _restated_scores(x, weights, biases, dilations):
    """The head restated: sum over branches of a dilated 3x3 convolution."""
    total = torch.zeros(())
    for w, b, d in zip(weights, biases, dilations):
        total = total + F.conv2d(x, w, b, stride=1, padding=d, dilation=d)
    return total


def test_builds_from_mmseg_registry_without_conv_seg():
    head = _build_head()
    assert isinstance(head, DeepLabV2Head)
    assert not hasattr(head, 'conv_seg')
    assert not any('conv_seg' in name for name, _ in head.named_parameters())
    assert head.dilations == (6, 12, 18, 24)
    assert len(head.aspp) == 4
    for conv, d in zip(head.aspp, (6, 12, 18, 24)):
        assert conv.kernel_size == (3, 3)
        assert conv.dilation == (d, d) and conv.padding == (d, d)
        assert conv.in_channels == 16 and conv.out_channels == 5
        assert conv.bias is not None
    # no BN, no ReLU, no dropout: only the four convolutions carry state
    assert head.dropout is None
    assert sorted(n for n, _ in head.named_parameters()) == sorted(
        f'aspp.{i}.{k}' for i in range(4) for k in ('weight', 'bias'))


def test_default_init_is_gaussian_001_with_zero_bias():
    head = _build_head(in_channels=256, num_classes=21)
    head.init_weights()  # must not trip over the deleted conv_seg
    weights = torch.cat([c.weight.flatten() for c in head.aspp])
    assert abs(weights.std().item() - 0.01) < 0.001
    assert abs(weights.mean().item()) < 0.001
    for conv in head.aspp:
        assert torch.count_nonzero(conv.bias) == 0


@pytest.mark.parametrize('hw', [(9, 9), (7, 11), (1, 1)])
def test_value_parity_with_sum_of_four_dilated_convs(hw):
    head = _build_head().double().eval()
    # random biases so that a missing branch cannot hide behind zeros
    for conv in head.aspp:
        torch.nn.init.normal_(conv.weight, std=0.1)
        torch.nn.init.normal_(conv.bias, std=0.1)
    x = torch.randn(2, 16, *hw, dtype=torch.float64)
    out = head([x])
    expected = _restated_scores(
        x, [c.weight for c in head.aspp], [c.bias for c in head.aspp],
        (6, 12, 18, 24))
    assert out.shape == (2, 5, *hw)
    torch.testing.assert_close(out, expected)


def test_every_branch_contributes_and_gets_a_gradient():
    head = _build_head()
    for conv in head.aspp:
        torch.nn.init.normal_(conv.weight, std=0.1)
    x = torch.randn(2, 16, 30, 30)
    with torch.no_grad():
        full = head([x])
    for k, conv in enumerate(head.aspp):
        with torch.no_grad():
            saved = conv.weight.clone(), conv.bias.clone()
            conv.weight.zero_()
            conv.bias.zero_()
            without_k = head([x])
            conv.weight.copy_(saved[0])
            conv.bias.copy_(saved[1])
        assert not torch.allclose(full, without_k), f'branch {k} is ignored'
    head([x]).pow(2).mean().backward()
    for name, p in head.named_parameters():
        assert p.grad is not None, f'{name} got no gradient'
        assert torch.isfinite(p.grad).all()
        assert p.grad.abs().sum() > 0, f'{name} got a zero gradient'


def test_custom_dilations_and_in_index():
    head = _build_head(dilations=(1, 2), in_index=1)
    assert len(head.aspp) == 2
    x0, x1 = torch.randn(1, 3, 5, 5), torch.randn(1, 16, 5, 5)
    expected = _restated_scores(
        x1, [c.weight for c in head.aspp], [c.bias for c in head.aspp],
        (1, 2))
    torch.testing.assert_close(head([x0, x1]), expected)


def test_rejects_channels_and_bad_dilations():
    with pytest.raises(TypeError, match='DeepLabV2Head: channels'):
        _build_head(channels=512)
    with pytest.raises(ValueError, match='DeepLabV2Head: dilations'):
        _build_head(dilations=(6, 0))
    with pytest.raises(ValueError, match='DeepLabV2Head: dilations'):
        _build_head(dilations=())


def test_loss_and_predict_through_base_class():
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    head = _build_head(num_classes=3)
    x = torch.randn(2, 16, 5, 6)
    samples = []
    for _ in range(2):
        sample = SegDataSample()
        label = torch.randint(0, 3, (1, 37, 45))
        label[:, :3] = 255  # ignored pixels
        sample.gt_sem_seg = PixelData(data=label)
        sample.set_metainfo(dict(img_shape=(37, 45), ori_shape=(37, 45)))
        samples.append(sample)
    losses = head.loss([x], samples, train_cfg=dict())
    assert set(losses) == {'loss_ce', 'acc_seg'}
    assert torch.isfinite(losses['loss_ce']) and losses['loss_ce'] > 0
    losses['loss_ce'].backward()
    assert all(p.grad is not None for p in head.parameters())
    logits = head.predict([x], [s.metainfo for s in samples], test_cfg=dict())
    assert logits.shape == (2, 3, 37, 45)


@pytest.mark.parametrize('hw', [(65, 67), (41, 33)])
def test_scores_at_one_eighth_on_output_stride_8_resnet(hw):
    backbone = build_in_scope('mmseg', dict(
        type='ChainedPluginResNet', depth=50, base_channels=8,
        stem_channels=8, deep_stem=True, strides=(1, 2, 1, 1),
        dilations=(1, 1, 2, 4), out_indices=(3, ), init_cfg=None))
    head = _build_head(in_channels=256, num_classes=4)
    backbone.eval()
    with torch.no_grad():
        feats = backbone(torch.randn(1, 3, *hw))
        scores = head(feats)
    assert scores.shape == (1, 4, math.ceil(hw[0] / 8), math.ceil(hw[1] / 8))
