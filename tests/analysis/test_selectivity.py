"""Class selectivity index against its definition on crafted activations."""
import pytest
import torch

from mmc3.analysis import class_means, class_selectivity


def test_one_class_channel_is_1_and_flat_channel_is_0():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    acts = torch.zeros(6, 4)
    acts[labels == 1, 0] = 5.0       # fires for class 1 only
    acts[:, 1] = 2.0                 # the same for every class
    # channel 2 never fires: 0/0 -> 0
    acts[:, 3] = torch.tensor([1.0, 3.0, 4.0, 4.0, 0.0, 0.0])
    si = class_selectivity(acts, labels, num_classes=3)
    assert si[0] == 1.0 and si[1] == 0.0 and si[2] == 0.0
    # channel 3: class means 2, 4, 0 -> (4 - 1) / (4 + 1)
    assert si[3] == pytest.approx(3 / 5, abs=1e-15)


def test_against_a_loop_restatement():
    torch.manual_seed(0)
    acts = torch.rand(40, 6, dtype=torch.float64)
    labels = torch.randint(0, 5, (40, ))
    labels[:5] = torch.arange(5)
    si = class_selectivity(acts, labels, num_classes=5)
    for c in range(6):
        mus = [acts[labels == k, c].mean().item() for k in range(5)]
        top = max(mus)
        rest = (sum(mus) - top) / 4
        assert si[c].item() == pytest.approx((top - rest) / (top + rest),
                                             rel=1e-12)


def test_classes_without_images_are_left_out():
    labels = torch.tensor([0, 2])  # class 1 of 3 has no image
    acts = torch.tensor([[1.0], [3.0]])
    assert torch.isnan(class_means(acts, labels, 3)[1]).all()
    assert class_selectivity(acts, labels, 3)[0] == pytest.approx(0.5)
    with pytest.raises(ValueError, match='at least two classes, got 1'):
        class_selectivity(acts[:1], labels[:1], 3)
    with pytest.raises(ValueError, match=r'activations \(N, C\)'):
        class_selectivity(torch.zeros(2, 1, 1), labels, 3)
