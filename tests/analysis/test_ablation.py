"""Cumulative channel ablation: 0% is the model, 100% the constant logits."""
import pytest
import torch
from torch import nn

from mmc3.analysis import ChannelAblation, ablated_channels, ablation_orders


class Tiny(nn.Module):
    """conv -> ReLU (``features``) -> GAP -> linear."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU())
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(2, 3)))


def test_zero_and_full_ablation():
    torch.manual_seed(0)
    model = Tiny().eval()
    x = torch.randn(5, 3, 8, 8)
    ref = model(x)
    ablation = ChannelAblation(model, 'features')
    with ablation, torch.no_grad():
        ablation.channels = ablated_channels(torch.randperm(6), 0.0)
        torch.testing.assert_close(model(x), ref)
        ablation.channels = ablated_channels(torch.randperm(6), 1.0)
        # every channel zeroed: the head sees zeros, logits are its bias
        torch.testing.assert_close(model(x), model.fc.bias.expand(5, 4))
        ablation.channels = torch.tensor([1, 4])
        feats = model.features(x)
    assert feats[:, [1, 4]].abs().max() == 0
    ref_feats = model.features(x)
    torch.testing.assert_close(feats[:, [0, 2, 3, 5]],
                               ref_feats[:, [0, 2, 3, 5]])


def test_input_point_and_orders():
    model = Tiny().eval()
    x = torch.ones(1, 3, 8, 8)
    with ChannelAblation(model, 'features:input', torch.tensor([0, 1, 2])):
        out = model(x)
    torch.testing.assert_close(out, model(torch.zeros_like(x)))
    a = ablation_orders(10, 5, seed=3)
    b = ablation_orders(10, 5, seed=3)
    assert len(a) == 5 and all(torch.equal(p, q) for p, q in zip(a, b))
    assert sorted(a[0].tolist()) == list(range(10))
    assert ablated_channels(a[0], 0.3).tolist() == a[0][:3].tolist()
    with pytest.raises(ValueError, match=r'fraction must be in \[0, 1\]'):
        ablated_channels(a[0], 1.5)
    with pytest.raises(ValueError, match="no module named 'feature'"):
        ChannelAblation(model, 'feature')
