"""Named points: stages found by structure in every host, hooks that read
and replace features."""
import pytest
import torch
from torch import nn

from mmc3.analysis import FeatureTap, default_diversity_points, stages
from mmc3.analysis.points import last_stage, point_label, stage_blocks


def test_feature_tap_reads_and_replaces_inputs_and_outputs():
    model = nn.Sequential(nn.Identity(), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.eye(2))
    seen = []
    with FeatureTap(model, ['1:input', '1'],
                    lambda p, x: seen.append((p, x.clone()))):
        model(torch.ones(1, 2))
    assert [p for p, _ in seen] == ['1:input', '1']
    with FeatureTap(model, ['1:input'], lambda p, x: 2 * x, modify=True):
        assert model(torch.ones(1, 2)).tolist() == [[2.0, 2.0]]
    with FeatureTap(model, ['1'], lambda p, x: -x, modify=True):
        assert model(torch.ones(1, 2)).tolist() == [[-1.0, -1.0]]
    assert model(torch.ones(1, 2)).tolist() == [[1.0, 1.0]]  # removed
    with pytest.raises(ValueError, match="no module named '3'"):
        FeatureTap(model, ['3'], print)


def test_stages_of_the_classification_hosts():
    pytest.importorskip('mmpretrain', reason='mmpretrain is not installed')
    from mmc3.models.classification import CifarResNet, PluginMobileNetV2
    c3 = dict(type='C3Block', grid_size=4)
    model = nn.Module()
    model.backbone = CifarResNet(
        depth=20, plugins=[dict(cfg=c3, position='after_stem'),
                           dict(cfg=c3, stages=(True, False, False),
                                position='after_stage')])
    assert stages(model) == ['backbone.layer1', 'backbone.layer2',
                             'backbone.layer3']
    assert last_stage(model) == 'backbone.layer3'
    assert stage_blocks(model) == [f'backbone.layer3.{i}' for i in range(3)]
    points = default_diversity_points(model)
    assert points[:4] == ['backbone.layer1:input', 'backbone.layer1',
                          'backbone.layer2', 'backbone.layer3']
    assert set(points[4:]) == {
        'backbone.after_stem_plugins.c3_block:input',
        'backbone.after_stem_plugins.c3_block',
        'backbone.after_stage_plugins.0.c3_block:input',
        'backbone.after_stage_plugins.0.c3_block'}
    assert point_label('backbone.layer1:input', model) == 'stem'
    mobile = nn.Module()
    mobile.backbone = PluginMobileNetV2(widen_factor=0.25)
    assert stages(mobile)[-1] == 'backbone.layer7'


def test_stages_of_a_c4_detector_end_in_the_roi_head():
    pytest.importorskip('mmdet', reason='mmdet is not installed')
    from mmdet.models.backbones import ResNet
    from mmdet.models.layers import ResLayer
    from mmdet.models.backbones.resnet import Bottleneck
    model = nn.Module()
    model.backbone = ResNet(depth=50, num_stages=3, base_channels=8,
                            out_indices=(2, ), strides=(1, 2, 2),
                            dilations=(1, 1, 1))
    model.roi_head = nn.Module()
    model.roi_head.shared_head = nn.Module()
    model.roi_head.shared_head.layer4 = ResLayer(
        Bottleneck, 128, 32, 3, stride=2)
    assert stages(model) == ['backbone.layer1', 'backbone.layer2',
                             'backbone.layer3',
                             'roi_head.shared_head.layer4']


def test_a_model_without_stages_is_a_clear_error():
    with pytest.raises(ValueError, match='the model has no stage'):
        last_stage(nn.Sequential(nn.Conv2d(1, 1, 1)))
