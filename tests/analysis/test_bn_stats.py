"""BN bias ratios and inhibited channels on hand-set BNs."""
import pytest
import torch
from torch import nn

from mmc3.analysis import InhibitedChannels, bn_bias_ratio, bn_layers


def two_bns():
    model = nn.Sequential(nn.BatchNorm2d(4), nn.ReLU(), nn.BatchNorm2d(2))
    with torch.no_grad():
        model[0].bias.copy_(torch.tensor([-1.0, 0.0, 0.5, 2.0]))
        model[2].bias.copy_(torch.tensor([0.1, -0.1]))
    return model.eval()


def test_beta_ratio_of_hand_set_bns():
    model = two_bns()
    assert bn_layers(model) == ['0', '2']
    ratio = bn_bias_ratio(model)
    assert ratio['layers'] == {'0': 0.5, '2': 0.5}
    assert ratio['all'] == 3 / 6 and ratio['channels'] == 6
    assert bn_bias_ratio(model, ['0'])['all'] == 0.5
    with pytest.raises(ValueError, match="'1' is ReLU, not an affine"):
        bn_bias_ratio(model, ['1'])
    with pytest.raises(ValueError, match='no affine batch-norm layer'):
        bn_bias_ratio(nn.Sequential(nn.ReLU()))


def test_inhibited_channels_of_a_hand_set_bn():
    # eval BN with running stats 0/1: output = gamma * x + beta
    bn = nn.BatchNorm2d(3).eval()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 1e-4, 1.0]))
        bn.bias.copy_(torch.tensor([0.0, -0.5, 5.0]))
    x = torch.randn(8, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    model = nn.Sequential(bn)
    with InhibitedChannels(model, threshold=1e-2) as rec:
        model(x[:4])
        model(x[4:])
    means = rec.means()['0']
    expected = torch.relu(bn(x)).double().mean(dim=(0, 2, 3))
    torch.testing.assert_close(means, expected, rtol=1e-12, atol=1e-12)
    # channel 1 (gamma ~ 0, beta < 0) is inhibited, the others fire
    result = rec.result()
    assert result['layers'] == {'0': pytest.approx(1 / 3)}
    assert result['all'] == pytest.approx(1 / 3) and result['channels'] == 3
    with pytest.raises(ValueError, match='threshold must be a number >= 0'):
        InhibitedChannels(model, threshold=-1)
    with pytest.raises(RuntimeError, match='no forward was recorded'):
        InhibitedChannels(model).result()
