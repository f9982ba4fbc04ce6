"""Tests for the channel diversity measure (C3 paper, "Measure Diversity")
and the recorder around C3 blocks."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from mmc3.analysis import DiversityRecord, DiversityRecorder, channel_diversity
from mmc3.models.blocks import C3Block


def diversity_reference(x: np.ndarray) -> np.ndarray:
    """d = 1/n^2 sum_ij |c_ij|, Pearson c_ij over positions, one value per
    sample; written with explicit sums in float64. Channels without spatial
    variation correlate with nothing (c = 0, also on the diagonal)."""
    n, c = x.shape[:2]
    flat = x.reshape(n, c, -1).astype(np.float64)
    p = flat.shape[2]
    out = np.zeros(n)
    for s in range(n):
        means = [sum(flat[s, i]) / p for i in range(c)]
        sigmas = [math.sqrt(sum((flat[s, i, k] - means[i])**2
                                for k in range(p))) for i in range(c)]
        total = 0.0
        for i in range(c):
            for j in range(c):
                if sigmas[i] == 0.0 or sigmas[j] == 0.0:
                    continue
                cov = sum((flat[s, i, k] - means[i])
                          * (flat[s, j, k] - means[j]) for k in range(p))
                total += abs(cov / (sigmas[i] * sigmas[j]))
        out[s] = total / c**2
    return out


@pytest.mark.parametrize('shape', [(2, 5, 4, 3), (1, 3, 7), (3, 4, 2, 2, 2)])
def test_matches_numpy_reference(shape):
    x = torch.randn(*shape, dtype=torch.float64)
    x[:, 0] += 0.5 * x[:, 1]  # some real correlation
    d = channel_diversity(x)
    assert d.shape == (shape[0], )
    assert d.dtype == torch.float64
    np.testing.assert_allclose(d.numpy(), diversity_reference(x.numpy()),
                               rtol=1e-12)
    np.testing.assert_allclose(
        channel_diversity(x.float()).numpy(),
        diversity_reference(x.numpy()), rtol=1e-5)


def test_matches_numpy_corrcoef():
    x = np.random.randn(2, 6, 5, 5)
    expected = [np.abs(np.corrcoef(x[s].reshape(6, -1))).mean()
                for s in range(2)]
    np.testing.assert_allclose(
        channel_diversity(torch.from_numpy(x)).numpy(), expected, rtol=1e-12)


def test_identical_and_sign_flipped_channels_give_one():
    base = torch.randn(2, 1, 4, 5)
    same = base.repeat(1, 6, 1, 1)
    torch.testing.assert_close(channel_diversity(same), torch.ones(2))
    # scaled, shifted and negated copies are still perfectly (anti)correlated
    scales = torch.tensor([1.0, -2.0, 0.5, -0.1]).view(1, 4, 1, 1)
    mixed = base * scales + torch.arange(4.0).view(1, 4, 1, 1)
    torch.testing.assert_close(channel_diversity(mixed), torch.ones(2))


def test_decorrelated_channels_give_one_over_n():
    """Cosines of distinct frequencies over a full period are zero-mean and
    mutually orthogonal: c = I, so d = n / n^2 = 1 / n."""
    p = 16
    k = torch.arange(p, dtype=torch.float64)
    n = 5
    maps = torch.stack([torch.cos(2 * math.pi * f * k / p)
                        for f in range(1, n + 1)])  # (n, P)
    x = maps.view(1, n, 4, 4)
    torch.testing.assert_close(
        channel_diversity(x), torch.tensor([1.0 / n], dtype=torch.float64))
    # a copy of channel 0 appended (n = 6): a 2x2 block of ones for the
    # pair plus the diagonal of the other four -> (4 + 4) / 36
    y = torch.cat([x, x[:, :1]], dim=1)
    torch.testing.assert_close(
        channel_diversity(y), torch.tensor([(4 + 4) / 36.0],
                                           dtype=torch.float64))


def test_constant_channels_are_finite_and_correlate_with_nothing():
    a = torch.randn(1, 1, 3, 3)
    x = torch.cat([a, a, torch.full_like(a, 0.1)], dim=1)  # float32 0.1
    # ones for the (a, a) block, zeros for the constant row and column
    torch.testing.assert_close(channel_diversity(x), torch.tensor([4 / 9]))
    zeros = torch.zeros(2, 4, 3, 3)
    assert torch.equal(channel_diversity(zeros), torch.zeros(2))
    one_by_one = torch.randn(2, 4, 1, 1)  # one position: nothing varies
    assert torch.equal(channel_diversity(one_by_one), torch.zeros(2))
    # gradients stay finite through constant channels
    x.requires_grad_(True)
    channel_diversity(x).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_rounding_noise_counts_as_constant_only_below_rtol():
    t = torch.full((1, 2, 8), 3.0, dtype=torch.float64)
    t[0, 1] = torch.randn(8, dtype=torch.float64)
    noisy = t.clone()
    noisy[0, 0, 0] += 1e-9  # relative variation ~1e-10
    assert channel_diversity(noisy).item() == pytest.approx(1 / 4)
    # with rtol=0 the same noise is a real (if tiny) pattern
    assert channel_diversity(noisy, rtol=0.0).item() > 1 / 4


def test_empty_batch():
    assert channel_diversity(torch.randn(0, 3, 4, 4)).shape == (0, )


def test_argument_errors():
    with pytest.raises(ValueError, match=r'channel_diversity: x must be a '
                       r'\(N, C, \*spatial\) tensor .* got \(2, 3\)'):
        channel_diversity(torch.randn(2, 3))
    with pytest.raises(ValueError, match=r'rtol must be a float >= 0, got -1'):
        channel_diversity(torch.randn(1, 2, 3), rtol=-1)


# --------------------------------------------------------------------------
# Recorder
# --------------------------------------------------------------------------


def _model() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        C3Block(4, grid_size=(4, 4), ratio=2),
        nn.ReLU(),
        nn.Sequential(nn.Conv2d(4, 6, 3, stride=2, padding=1),
                      C3Block(6, grid_size=(3, 3), ratio=2,
                              exclude_self=False)),
    )


def test_recorder_records_before_and_after_each_c3_block():
    model = _model()
    x = torch.randn(2, 3, 6, 6)
    with DiversityRecorder(model) as rec:
        out = model(x)
    assert [r.name for r in rec.records] == ['1', '3.1']
    assert all(isinstance(r, DiversityRecord) for r in rec.records)
    # recompute the inputs and outputs of both blocks by hand
    with torch.no_grad():
        in1 = model[0](x)
        out1 = model[1](in1)
        in2 = model[3][0](model[2](out1))
        out2 = model[3][1](in2)
    torch.testing.assert_close(out2, out.detach())
    expected = [(in1, out1), (in2, out2)]
    for rec_i, (before, after) in zip(rec.records, expected):
        assert rec_i.before.shape == (2, ) and rec_i.after.shape == (2, )
        assert not rec_i.before.requires_grad
        torch.testing.assert_close(rec_i.before, channel_diversity(before))
        torch.testing.assert_close(rec_i.after, channel_diversity(after))
        assert not torch.allclose(rec_i.before, rec_i.after)
    summary = rec.summary()
    assert set(summary) == {'1', '3.1'}
    assert summary['1'][0] == pytest.approx(
        channel_diversity(in1).mean().item())


def test_recorder_appends_per_call_and_detaches_on_exit():
    model = _model()
    x = torch.randn(1, 3, 6, 6)
    rec = DiversityRecorder(model)
    with rec:
        model(x)
        model(x)
    assert len(rec.records) == 4
    model(x)  # hooks removed: nothing more is recorded
    assert len(rec.records) == 4
    assert all(len(m._forward_hooks) == 0 for m in model.modules())
    rec.clear()
    assert rec.records == []


def test_recorder_with_other_types_and_errors():
    model = _model()
    with DiversityRecorder(model, types=(nn.Conv2d, )) as rec:
        model(torch.randn(1, 3, 6, 6))
    assert [r.name for r in rec.records] == ['0', '3.0']
    with pytest.raises(ValueError, match=r'DiversityRecorder: the model has '
                       r'no module of type C3Block to record'):
        DiversityRecorder(nn.Sequential(nn.ReLU()))
    with pytest.raises(TypeError, match=r'DiversityRecorder: model must be an'
                       r' nn.Module, got int'):
        DiversityRecorder(3)


def test_identical_channels_give_1_and_orthogonal_zero_mean_give_0():
    base = torch.tensor([1.0, -2.0, 0.5, 3.0, -2.5], dtype=torch.float64)
    same = torch.stack([base, base, 2 * base, -base])[None]  # |c_ij| = 1
    assert channel_diversity(same).item() == pytest.approx(1.0, abs=1e-12)
    # rows of a Hadamard matrix without the constant one: zero-mean and
    # orthogonal, so c_ij = 0 off the diagonal and d = C / C^2
    h = torch.tensor([[1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]],
                     dtype=torch.float64)[None]
    assert channel_diversity(h).item() == pytest.approx(1 / 3, abs=1e-12)


def test_diversity_at_points_in_forward_order():
    from mmc3.analysis import diversity_at
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 1))
    x = torch.randn(2, 3, 6, 6)
    values = diversity_at(model, ['2', '0:input', '1'],
                          lambda: (model(x), model(x[:1])))
    assert list(values) == ['0:input', '1', '2']  # the order they ran in
    assert values['0:input'].shape == (3, )
    torch.testing.assert_close(values['0:input'][:2], channel_diversity(x))
    torch.testing.assert_close(values['2'][:2],
                               channel_diversity(model(x).detach()))
