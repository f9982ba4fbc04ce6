"""Dropping gated channels by their gate, on SE and GE blocks."""
import pytest
import torch
from torch import nn

from mmc3.analysis import GateDrop, drop_mask, gate_scores, gated_blocks
from mmc3.models.blocks import GEBlock, SEBlock


def test_drop_mask_orders_and_counts():
    scores = torch.tensor([[0.9, 0.1, 0.5, 0.3], [0.2, 0.8, 0.4, 0.6]])
    assert drop_mask(scores, 0.5, 'least').tolist() == \
        [[1, 0, 1, 0], [0, 1, 0, 1]]
    assert drop_mask(scores, 0.25, 'most').tolist() == \
        [[0, 1, 1, 1], [1, 0, 1, 1]]
    assert drop_mask(scores, 0.0, 'most').sum() == 8
    assert drop_mask(scores, 1.0, 'least').sum() == 0
    with pytest.raises(ValueError, match=r"order must be one of \('least', "
                       r"'most'\), got 'top'"):
        drop_mask(scores, 0.5, 'top')
    with pytest.raises(ValueError, match=r'ratio must be in \[0, 1\], got 2'):
        drop_mask(scores, 2, 'least')


def test_gate_scores_reduce_spatial_gates():
    gate = torch.tensor([[[[0.0, 1.0], [0.5, 0.5]]]])  # (1, 1, 2, 2)
    assert gate_scores(gate).item() == 0.5
    assert gate_scores(gate, 'max').item() == 1.0
    assert gate_scores(torch.tensor([[0.3, 0.7]]))[0].tolist() == \
        pytest.approx([0.3, 0.7])
    with pytest.raises(ValueError, match='reduce must be one of'):
        gate_scores(gate, 'min')


@pytest.mark.parametrize('block', [
    SEBlock(8, ratio=2),
    GEBlock(8, extent=2),
], ids=['se', 'ge'])
def test_gate_drop_zeroes_the_channels_the_gate_ranks(block):
    torch.manual_seed(0)
    model = nn.Sequential(block, nn.Identity()).eval()
    x = torch.randn(2, 8, 6, 6)
    gates = []
    handle = block.gate.register_forward_hook(
        lambda m, a, out: gates.append(out.detach()))
    with torch.no_grad():
        ref = model(x)
    handle.remove()
    scores = gates[0].flatten(2).mean(2)  # (N, C)
    for order, pick in (('least', scores.argsort(1)[:, :3]),
                        ('most', scores.argsort(1, descending=True)[:, :3])):
        with GateDrop(model, '0', 3 / 8, order), torch.no_grad():
            out = model(x)
        for n in range(2):
            dropped = set(pick[n].tolist())
            for c in range(8):
                if c in dropped:
                    assert out[n, c].abs().max() == 0
                else:
                    torch.testing.assert_close(out[n, c], ref[n, c])
    # hooks are gone afterwards
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref)


def test_models_without_gates_are_a_clear_error():
    model = nn.Sequential(nn.Conv2d(3, 3, 1), SEBlock(3, ratio=1))
    assert gated_blocks(model) == ['1']
    with pytest.raises(ValueError, match=r"'0' \(Conv2d\) has no gate; "
                       r"gated blocks of this model: \['1'\]"):
        GateDrop(model, '0', 0.5, 'least')
    with pytest.raises(ValueError, match="no module named 'nope'"):
        GateDrop(model, 'nope', 0.5, 'least')
