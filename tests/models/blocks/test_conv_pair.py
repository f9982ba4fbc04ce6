"""The "+Convs" control block against its restatement."""
import pytest
import torch
import torch.nn.functional as F

from mmc3.models.blocks import ConvPairBlock


def test_value_and_parameters():
    block = ConvPairBlock(4)
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    block = block.double()
    expected = x + F.conv2d(
        F.relu(F.conv2d(x, block.conv1.weight, block.conv1.bias, padding=1)),
        block.conv2.weight, None, padding=1)
    assert torch.allclose(block(x), expected, rtol=1e-12, atol=1e-12)
    # conv3x3(C -> 4C, bias) + conv3x3(4C -> C): 72 C^2 + 4 C
    assert sum(p.numel() for p in block.parameters()) == 72 * 16 + 16


def test_options_and_errors():
    block = ConvPairBlock(2, expansion=2, bias2=True, residual=False)
    x = torch.randn(1, 2, 3, 3)
    assert block.conv2.bias is not None
    out = block.conv2(block.relu(block.conv1(x)))
    assert torch.equal(block(x), out)
    with pytest.raises(ValueError, match=r'expected input of shape'):
        block(torch.randn(1, 3, 3, 3))
    with pytest.raises(TypeError, match=r'ConvPairBlock: residual'):
        ConvPairBlock(2, residual=1)
