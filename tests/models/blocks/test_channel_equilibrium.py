"""Tests for ``CEBlock`` (Channel Equilibrium, Shao et al., ICML 2020).

The reference below restates the CE equations in float64 with explicit loops
over groups and Newton-Schulz steps; it shares no code with the block.
"""
import copy
import math

import pytest
import torch

from mmc3.models.blocks import CEBlock
from tests._helpers import build_from_root, run_as_mmdet_plugin


# --------------------------------------------------------------------------
# Independent float64 restatement of the equations
# --------------------------------------------------------------------------
def _ref_pool(u: torch.Tensor) -> torch.Tensor:
    """2x2 stride-2 max-pool keeping odd borders (pad with -inf)."""
    n, c, h, w = u.shape
    hp, wp = h + h % 2, w + w % 2
    padded = torch.full((n, c, hp, wp), -math.inf, dtype=u.dtype)
    padded[:, :, :h, :w] = u
    return padded.reshape(n, c, hp // 2, 2, wp // 2, 2).amax(dim=(3, 5))


def reference_ce(block: CEBlock, u: torch.Tensor, train: bool) -> dict:
    """CE forward in float64: IR (Eq. 21), BD (Newton-Schulz), gate.

    In eval mode the block's running buffers are read as the population
    statistics.
    """
    u = u.detach().double()
    n, c, h, w = u.shape
    eps = block.eps
    # IR branch.
    p = h * w
    flat = u.reshape(n, c, p)
    mu = flat.sum(-1) / p
    ss = ((flat - mu[..., None]) ** 2).sum(-1)
    if block.unbiased_var:
        var = ss / (p - 1) if p > 1 else torch.zeros_like(ss)
    else:
        var = ss / p
    w1 = block.fc1.weight.detach().double()
    w2 = block.fc2.weight.detach().double()
    hid = var @ w1.t()
    hmean = hid.mean(-1, keepdim=True)
    hvar = ((hid - hmean) ** 2).mean(-1, keepdim=True)
    hid = (hid - hmean) / torch.sqrt(hvar + block.ln.eps)
    hid = hid * block.ln.weight.detach().double() \
        + block.ln.bias.detach().double()
    gate = torch.sigmoid(torch.clamp(hid, min=0) @ w2.t())
    if train:
        s = math.sqrt(var.mean().item() + eps)
    else:
        s = block.running_scale.double().item()
    ir = u * (gate / s)[:, :, None, None]
    # BD branch.
    d = block.group_size
    src = _ref_pool(u) if block.pool else u
    bd = torch.empty_like(u)
    mats = []
    for gi in range(c // d):
        ch = slice(gi * d, (gi + 1) * d)
        if train:
            xs = src[:, ch].permute(1, 0, 2, 3).reshape(d, -1)
            m = xs.shape[1]
            xc = xs - xs.mean(1, keepdim=True)
            sigma = xc @ xc.t() / m + eps * torch.eye(d, dtype=u.dtype)
            tr = torch.trace(sigma)
            sigma_n = sigma / tr
            pk = torch.eye(d, dtype=u.dtype)
            for _ in range(block.ns_iters):
                pk = 1.5 * pk - 0.5 * pk @ pk @ pk @ sigma_n
            if block.trace_rescale:
                pk = pk / torch.sqrt(tr)
        else:
            pk = block.running_wm[gi].double()
        mats.append(pk)
        bd[:, ch] = torch.einsum('ij,njhw->nihw', pk, u[:, ch])
    lam = torch.sigmoid(block.theta.detach().double())
    return dict(out=lam * bd + (1 - lam) * ir, ir=ir, bd=bd,
                wm=torch.stack(mats), s=s)


def _group_stats(x: torch.Tensor, d: int):
    """Distance of the (first) group's covariance to a multiple of I and its
    mean absolute off-diagonal correlation."""
    xs = x[:, :d].permute(1, 0, 2, 3).reshape(d, -1).double()
    xc = xs - xs.mean(1, keepdim=True)
    cov = xc @ xc.t() / xs.shape[1]
    dist = (cov * d / torch.trace(cov) - torch.eye(d, dtype=cov.dtype)).norm()
    sd = cov.diagonal().sqrt()
    corr = cov / sd[:, None] / sd[None, :]
    off = (corr - torch.diag(corr.diagonal())).abs().sum() / (d * (d - 1))
    return dist.item(), off.item()


# --------------------------------------------------------------------------
# Construction, shapes, parity over every option branch
# --------------------------------------------------------------------------
OPTION_SETS = [
    dict(in_channels=16),
    dict(in_channels=16, pool=True),
    dict(in_channels=16, unbiased_var=False),
    dict(in_channels=16, trace_rescale=True),
    dict(in_channels=16, ns_iters=0),
    dict(in_channels=16, ns_iters=1, momentum=0.5),
    dict(in_channels=24, group_size=16, ratio=8),  # d halves to 8
    dict(in_channels=6, ratio=16, group_size=4, eps=1e-3),  # hidden 1, d 2
    dict(in_channels=8, group_size=3, pool=True, trace_rescale=True),
]
SHAPES = [(2, 7, 5), (1, 1, 1), (2, 1, 1), (1, 3, 6), (2, 4, 4)]


@pytest.mark.parametrize('shape', SHAPES, ids=lambda s: 'x'.join(map(str, s)))
@pytest.mark.parametrize('cfg', OPTION_SETS,
                         ids=lambda c: str(sorted(c.items())))
def test_options_shapes_and_parity(cfg, shape):
    block = CEBlock(**cfg)
    with torch.no_grad():
        block.theta.fill_(0.3)
    n, h, w = shape
    x = torch.randn(n, cfg['in_channels'], h, w) * 2 + 0.5
    block.train()
    out = block(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.isfinite(out).all()
    ref = reference_ce(block, x, train=True)
    torch.testing.assert_close(out.double(), ref['out'], rtol=1e-4, atol=1e-4)

    block.eval()
    out_eval = block(x)
    assert out_eval.shape == x.shape and torch.isfinite(out_eval).all()
    ref_eval = reference_ce(block, x, train=False)
    torch.testing.assert_close(out_eval.double(), ref_eval['out'],
                               rtol=1e-4, atol=1e-4)


def test_parity_float64_tight():
    block = CEBlock(32, group_size=8, pool=True).double()
    with torch.no_grad():
        block.theta.fill_(-0.4)
    x = torch.randn(3, 32, 5, 6, dtype=torch.float64)
    out = block(x)
    ref = reference_ce(block, x, train=True)
    torch.testing.assert_close(out, ref['out'], rtol=1e-10, atol=1e-10)
    # The whitening matrices themselves match, group by group.
    torch.testing.assert_close(
        block._whitening_matrix(x), ref['wm'], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize('channels', [8, 16, 64, 256])
def test_parameter_count(channels):
    block = CEBlock(channels)
    params = sum(p.numel() for p in block.parameters())
    assert params == channels ** 2 // 2 + channels // 2 + 1
    d = block.group_size
    assert block.running_wm.shape == (channels // d, d, d)
    assert block.running_scale.shape == (1,)
    assert all(not b.requires_grad for b in block.buffers())


@pytest.mark.parametrize('channels,requested,expected',
                         [(64, 16, 16), (24, 16, 8), (12, 16, 4), (8, 16, 8),
                          (3, 16, 1), (48, 32, 16)])
def test_group_size_halves_until_it_divides(channels, requested, expected):
    block = CEBlock(channels, group_size=requested)
    assert block.group_size == expected
    assert block.num_groups * block.group_size == channels


def test_initial_state():
    block = CEBlock(32)
    assert block.theta.item() == 0.0  # lam = 0.5
    torch.testing.assert_close(
        block.running_wm, torch.eye(16).expand(2, 16, 16))
    assert block.running_scale.item() == 1.0
    assert CEBlock._abbr_ == 'ce_block'


# --------------------------------------------------------------------------
# Reductions to known cases
# --------------------------------------------------------------------------
@pytest.mark.parametrize('train', [True, False])
def test_gate_forced_to_bd_and_to_ir(train):
    block = CEBlock(16, group_size=8)
    x = torch.randn(2, 16, 5, 4)
    block.train()
    block(torch.randn(4, 16, 5, 4))  # non-trivial running buffers
    block.train(train)

    with torch.no_grad():
        block.theta.fill_(60.0)  # lam == 1 in float32
    ref = reference_ce(block, x, train=train)
    out_bd = block(x)
    torch.testing.assert_close(out_bd.double(), ref['bd'], rtol=1e-4,
                               atol=1e-5)
    # With lam = 1 the IR weights are irrelevant.
    with torch.no_grad():
        block.fc1.weight.normal_()
        block.fc2.weight.normal_()
    torch.testing.assert_close(block(x), out_bd)

    with torch.no_grad():
        block.theta.fill_(-60.0)  # lam == 0
    ref = reference_ce(block, x, train=train)
    out_ir = block(x)
    torch.testing.assert_close(out_ir.double(), ref['ir'], rtol=1e-4,
                               atol=1e-5)
    # With lam = 0 the whitening statistics are irrelevant.
    with torch.no_grad():
        block.running_wm.normal_()
    torch.testing.assert_close(block(x), out_ir)
    assert not torch.allclose(out_bd, out_ir)


def test_no_newton_schulz_step_makes_bd_the_identity():
    block = CEBlock(16, ns_iters=0)
    with torch.no_grad():
        block.theta.fill_(60.0)
    x = torch.randn(2, 16, 3, 5)
    torch.testing.assert_close(block(x), x)


def _whitened(n: int, d: int, h: int, w: int, offset: float) -> torch.Tensor:
    """An input whose channel covariance over N*H*W is exactly I."""
    z = torch.randn(d, n * h * w, dtype=torch.float64)
    z = z - z.mean(1, keepdim=True)
    cov = z @ z.t() / z.shape[1]
    evals, evecs = torch.linalg.eigh(cov)
    z = evecs @ torch.diag(evals.rsqrt()) @ evecs.t() @ z
    z = z + offset  # un-centred: BD must still act linearly on it
    return z.reshape(d, n, h, w).permute(1, 0, 2, 3).contiguous()


@pytest.mark.parametrize('trace_rescale', [False, True])
def test_bd_on_whitened_input_is_a_scalar_multiple(trace_rescale):
    d, eps, steps = 16, 1e-5, 3
    block = CEBlock(d, trace_rescale=trace_rescale, eps=eps,
                    ns_iters=steps).double()
    with torch.no_grad():
        block.theta.fill_(60.0)
    u = _whitened(4, d, 6, 5, offset=0.7)
    # Sigma = (1 + eps) I, Sigma_N = I / d: scalar Newton-Schulz.
    p = 1.0
    for _ in range(steps):
        p = 1.5 * p - 0.5 * p ** 3 / d
    if trace_rescale:
        p = p / math.sqrt(d * (1 + eps))
    else:
        assert abs(p - 2.8645) < 1e-3  # far from sqrt(d) = 4: not rescaled
    torch.testing.assert_close(block(u), p * u, rtol=1e-9, atol=1e-9)


def test_bd_decorrelates_a_correlated_input():
    d = 16
    shared = torch.randn(4, 1, 6, 5)
    u = torch.randn(4, d, 6, 5) + 0.8 * shared  # equicorrelated channels
    dist_in, off_in = _group_stats(u, d)
    results = []
    for steps in (1, 3, 5):
        block = CEBlock(d, ns_iters=steps)
        with torch.no_grad():
            block.theta.fill_(60.0)
        results.append(_group_stats(block(u), d))
    dist_out, off_out = results[1]  # the default T = 3
    assert dist_out < 0.5 * dist_in
    assert off_out < 0.5 * off_in
    # More Newton-Schulz steps decorrelate more.
    assert results[0][0] > results[1][0] > results[2][0]


# --------------------------------------------------------------------------
# Gradients and numerics
# --------------------------------------------------------------------------
@pytest.mark.parametrize('pool', [False, True])
def test_every_parameter_gets_a_finite_gradient(pool):
    block = CEBlock(16, group_size=8, pool=pool)
    x = torch.randn(2, 16, 5, 3, requires_grad=True)
    out = block(x)
    (out * torch.randn_like(out)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for name, param in block.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


@pytest.mark.parametrize('shape', [(2, 16, 4, 4), (1, 16, 1, 1)])
@pytest.mark.parametrize('pool', [False, True])
def test_all_zero_input_forward_and_backward(shape, pool):
    # zero_init_residual: the BN in front of CE outputs zeros at step 0.
    block = CEBlock(16, pool=pool)
    x = torch.zeros(*shape, requires_grad=True)
    out = block(x)
    assert torch.equal(out, torch.zeros(shape))
    (out.sum() + out.pow(2).sum()).backward()
    assert torch.isfinite(x.grad).all()
    for name, param in block.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), \
            name
    assert torch.isfinite(block.running_wm).all()
    assert torch.isfinite(block.running_scale).all()
    block.eval()
    assert torch.isfinite(block(torch.zeros(*shape))).all()


def test_single_sample_single_position_in_training():
    # Covariance of one sample, one position, and H*W == 1 with the
    # unbiased variance: nothing may be NaN.
    block = CEBlock(16, unbiased_var=True)
    x = torch.randn(1, 16, 1, 1, requires_grad=True)
    out = block(x)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
    assert torch.isfinite(block.running_wm).all()


@pytest.mark.parametrize('train', [True, False])
@pytest.mark.parametrize('pool', [False, True])
def test_gradcheck(train, pool):
    block = CEBlock(4, group_size=2, ratio=2, pool=pool).double()
    with torch.no_grad():
        block.theta.fill_(0.2)
        block.ln.weight.uniform_(0.5, 1.5)
        block.ln.bias.uniform_(-0.5, 0.5)
    block(torch.randn(3, 4, 3, 3, dtype=torch.float64))  # fill buffers
    block.train(train)
    x = torch.randn(2, 4, 3, 2, dtype=torch.float64, requires_grad=True)
    names = ['theta', 'fc1.weight', 'fc2.weight', 'ln.weight', 'ln.bias']
    params = {k: v.detach().clone().requires_grad_(True)
              for k, v in block.named_parameters() if k in names}

    def fn(inp, *values):
        return torch.func.functional_call(
            block, dict(zip(names, values)), (inp,))

    assert torch.autograd.gradcheck(
        fn, (x, *[params[k] for k in names]), eps=1e-6, atol=1e-6,
        fast_mode=pool or not train)  # one full check, the rest fast


def _wm_with_autocast_left_on(x: torch.Tensor, block: CEBlock):
    """Control: the same Newton-Schulz chain run in bfloat16 under autocast."""
    d = block.group_size
    xs = x.permute(1, 0, 2, 3).reshape(d, -1)
    xc = (xs - xs.mean(1, keepdim=True))[None]
    eye = torch.eye(d)[None]
    with torch.autocast('cpu', dtype=torch.bfloat16):
        sigma = torch.baddbmm(eye, xc, xc.transpose(1, 2), beta=block.eps,
                              alpha=1.0 / xs.shape[1])
        sigma_n = sigma / sigma.diagonal(dim1=1, dim2=2).sum(-1)
        p = eye
        for _ in range(block.ns_iters):
            p = torch.baddbmm(p, torch.bmm(torch.bmm(p, p), p), sigma_n,
                              beta=1.5, alpha=-0.5)
    return p.float()


@pytest.mark.parametrize('input_dtype', [torch.float32, torch.bfloat16])
def test_autocast_bfloat16_keeps_statistics_in_float32(input_dtype):
    block = CEBlock(16)
    x = (torch.randn(2, 16, 5, 5) + 0.3 * torch.randn(2, 1, 5, 5)).to(
        input_dtype)
    fp32_block = copy.deepcopy(block)
    fp32_block(x.float())

    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = block(x)
        wm = block._whitening_matrix(x)
    assert out.dtype == input_dtype
    assert torch.isfinite(out).all()
    assert wm.dtype == torch.float32
    assert block.running_wm.dtype == torch.float32
    # Same statistics as a float32 run, to float32 precision ...
    torch.testing.assert_close(block.running_wm, fp32_block.running_wm,
                               rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(block.running_scale, fp32_block.running_scale,
                               rtol=1e-5, atol=1e-6)
    # ... which a bfloat16 computation would not reach (the test can fail).
    control = _wm_with_autocast_left_on(x.float(), block)
    assert (control - wm[:1]).abs().max() > 1e-3
    # The output itself is close to the float32 output.
    ref = reference_ce(block, x.float(), train=True)['out']
    torch.testing.assert_close(out.double(), ref.to(input_dtype).double(),
                               rtol=5e-2, atol=5e-2)


# --------------------------------------------------------------------------
# Running statistics, eval mode
# --------------------------------------------------------------------------
@pytest.mark.parametrize('momentum', [0.1, 0.3])  # m != 1 - m
def test_running_buffers_follow_the_momentum_rule(momentum):
    block = CEBlock(16, group_size=8, momentum=momentum)
    x1 = torch.randn(2, 16, 4, 5)
    x2 = torch.randn(3, 16, 3, 3) * 3
    expected_wm = torch.eye(8, dtype=torch.float64).expand(2, 8, 8)
    expected_s = 1.0
    for x in (x1, x2):
        ref = reference_ce(block, x, train=True)
        block(x)
        expected_wm = (1 - momentum) * expected_wm + momentum * ref['wm']
        expected_s = (1 - momentum) * expected_s + momentum * ref['s']
        torch.testing.assert_close(block.running_wm.double(), expected_wm,
                                   rtol=1e-5, atol=1e-6)
        assert block.running_scale.item() == pytest.approx(expected_s,
                                                           rel=1e-5)
    # Eval uses the running buffers and does not change them.
    block.eval()
    before = [b.clone() for b in block.buffers()]
    out = block(x1)
    ref = reference_ce(block, x1, train=False)
    torch.testing.assert_close(out.double(), ref['out'], rtol=1e-4,
                               atol=1e-5)
    for b0, b1 in zip(before, block.buffers()):
        assert torch.equal(b0, b1)
    block.train()
    assert not torch.allclose(block(x1), out)


def test_eval_output_of_a_sample_ignores_the_rest_of_the_batch():
    block = CEBlock(16, group_size=8)
    for _ in range(3):
        block(torch.randn(4, 16, 5, 5))
    a, b = torch.randn(1, 16, 5, 5), torch.randn(1, 16, 5, 5) * 4
    block.eval()
    alone = block(a)
    together = block(torch.cat([a, b]))[:1]
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-6)
    # In training mode the batch statistics couple the samples.
    block.train()
    assert not torch.allclose(block(torch.cat([a, b]))[:1], block(a),
                              atol=1e-3)


def test_state_dict_round_trip():
    block = CEBlock(32, group_size=8, pool=True)
    with torch.no_grad():
        block.theta.fill_(0.7)
    for _ in range(2):
        block(torch.randn(2, 32, 6, 6))
    state = block.state_dict()
    assert {'theta', 'fc1.weight', 'ln.weight', 'ln.bias', 'fc2.weight',
            'running_wm', 'running_scale'} <= set(state)

    fresh = CEBlock(32, group_size=8, pool=True)
    fresh.load_state_dict(state, strict=True)
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, state[key]), key
    x = torch.randn(2, 32, 5, 7)
    block.eval()
    fresh.eval()
    torch.testing.assert_close(fresh(x), block(x), rtol=0, atol=0)


# --------------------------------------------------------------------------
# Configuration errors
# --------------------------------------------------------------------------
@pytest.mark.parametrize('kwargs,exc,match', [
    (dict(in_channels=0), ValueError, r'CEBlock: in_channels .*got 0'),
    (dict(in_channels=2.0), TypeError, r'CEBlock: in_channels .*float'),
    (dict(in_channels=True), TypeError, r'CEBlock: in_channels .*bool'),
    (dict(in_channels=8, ratio=0), ValueError, r'CEBlock: ratio .*got 0'),
    (dict(in_channels=8, ratio='4'), TypeError, r'CEBlock: ratio .*str'),
    (dict(in_channels=8, group_size=0), ValueError,
     r'CEBlock: group_size .*got 0'),
    (dict(in_channels=8, ns_iters=-1), ValueError,
     r'CEBlock: ns_iters .*>= 0.*got -1'),
    (dict(in_channels=8, eps=0.0), ValueError, r'CEBlock: eps .*got 0.0'),
    (dict(in_channels=8, eps='1e-5'), TypeError, r'CEBlock: eps .*str'),
    (dict(in_channels=8, momentum=1.5), ValueError,
     r'CEBlock: momentum must be a float in \[0.0, 1.0\], got 1.5'),
    (dict(in_channels=8, momentum=-0.1), ValueError,
     r'CEBlock: momentum .*got -0.1'),
    (dict(in_channels=8, pool='yes'), TypeError, r'CEBlock: pool .*bool'),
    (dict(in_channels=8, unbiased_var=1), TypeError,
     r'CEBlock: unbiased_var must be a bool, got int 1'),
    (dict(in_channels=8, trace_rescale=None), TypeError,
     r'CEBlock: trace_rescale .*None'),
])
def test_configuration_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        CEBlock(**kwargs)


def test_wrong_input_shape_raises():
    block = CEBlock(8)
    with pytest.raises(ValueError, match=r'CEBlock: expected input of shape '
                       r'\(N, 8, H, W\), got \(2, 4, 3, 3\)'):
        block(torch.randn(2, 4, 3, 3))
    with pytest.raises(ValueError, match=r'got \(2, 8, 3\)'):
        block(torch.randn(2, 8, 3))


# --------------------------------------------------------------------------
# Registry and hosts
# --------------------------------------------------------------------------
def test_builds_by_plain_name_from_root():
    block = build_from_root(dict(type='CEBlock', in_channels=32, ratio=8,
                                 group_size=4, pool=True))
    assert isinstance(block, CEBlock)
    assert (block.ratio, block.group_size, block.pool) == (8, 4, True)
    assert block(torch.randn(2, 32, 3, 3)).shape == (2, 32, 3, 3)


def test_runs_as_mmdet_resnet_plugin():
    pytest.importorskip('mmdet', reason='host test needs mmdet')
    backbone, outs = run_as_mmdet_plugin(dict(type='CEBlock'),
                                         input_hw=(64, 48))
    assert all(torch.isfinite(o).all() for o in outs)
    blocks = [m for m in backbone.modules() if isinstance(m, CEBlock)]
    assert [b.in_channels for b in blocks] == [256] * 3
    assert all(b.running_scale.item() != 1.0 for b in blocks)


def _mmdet_resnet_with_ce(**kwargs):
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    return MMDET_MODELS.build(
        dict(type='ResNet', depth=50, base_channels=8, out_indices=(3, ),
             plugins=[dict(cfg=dict(type='CEBlock'),
                           stages=(False, False, False, True),
                           position='after_conv3')], **kwargs))


def test_host_with_norm_eval_and_zero_init_residual():
    """Documented choice: ``norm_eval=True`` freezes the host's BNs only; CE
    follows the host's train/eval mode."""
    pytest.importorskip('mmdet', reason='host test needs mmdet')
    from torch.nn.modules.batchnorm import _BatchNorm
    backbone = _mmdet_resnet_with_ce(norm_eval=True, zero_init_residual=True)
    backbone.init_weights()  # zero_init_residual: norm3 weights are 0
    blocks = [m for m in backbone.modules() if isinstance(m, CEBlock)]
    assert len(blocks) == 3
    backbone.train()
    assert all(not m.training for m in backbone.modules()
               if isinstance(m, _BatchNorm))
    assert all(b.training for b in blocks)

    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    (out, ) = backbone(x)
    out.pow(2).mean().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
    for block in blocks:
        # CE saw the zeros of the zero-initialised BN and stayed finite ...
        assert block.running_scale.item() == pytest.approx(
            0.9 + 0.1 * math.sqrt(block.eps))
        for name, param in block.named_parameters():
            assert param.grad is not None, name
            assert torch.isfinite(param.grad).all(), name
        # ... and updated its running statistics while the BNs were frozen.
        assert block.running_scale.item() != 1.0

    # Give the BNs in front of CE non-zero weights and let CE collect
    # non-trivial running statistics.
    with torch.no_grad():
        for module in backbone.layer4:
            module.norm3.weight.fill_(1.0)
        for _ in range(2):
            backbone(torch.randn(2, 3, 64, 64))

    a, b = torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64) * 3
    with torch.no_grad():
        # Training mode: CE's batch statistics couple the samples ...
        (alone, ) = backbone(a)
        (together, ) = backbone(torch.cat([a, b]))
        coupling = float((together[:1] - alone).abs().max())
        # ... eval mode: each sample's output is its own.
        backbone.eval()
        assert all(not blk.training for blk in blocks)
        before = [blk.running_wm.clone() for blk in blocks]
        (alone, ) = backbone(a)
        (together, ) = backbone(torch.cat([a, b]))
    # Batch 1 and batch 2 may run other convolution kernels (another
    # blocking, another CPU), so float32 rounding through 16 bottlenecks can
    # differ: allowed up to 1e-4 of the output's scale, two orders of
    # magnitude below the coupling that batch statistics cause.
    bound = 1e-4 * float(alone.abs().max())
    assert coupling > 100 * bound, (coupling, bound)
    assert float((together[:1] - alone).abs().max()) <= bound
    for block, wm in zip(blocks, before):
        assert torch.equal(block.running_wm, wm)


def _released_pooled_whitening(u, group_size, eps, iters):
    """The released code's pooled BD (float64): 2x2 max-pool, covariance of
    the pooled maps divided by the *unpooled* count N*H*W, eps * I,
    trace-normalised, Newton-Schulz from I."""
    n, c, h, w = u.shape
    x = torch.nn.functional.max_pool2d(u.double(), 2, 2)
    g = c // group_size
    xg = x.reshape(n, g, group_size, -1).permute(1, 2, 0, 3).reshape(
        g, group_size, -1)
    xc = xg - xg.mean(-1, keepdim=True)
    sigma = eps * torch.eye(group_size, dtype=torch.float64) + \
        xc @ xc.transpose(1, 2) / (n * h * w)
    sigma_n = sigma / sigma.diagonal(dim1=1, dim2=2).sum(-1).view(g, 1, 1)
    p = torch.eye(group_size, dtype=torch.float64).expand(g, -1, -1)
    for _ in range(iters):
        p = 1.5 * p - 0.5 * p @ p @ p @ sigma_n
    return p


def test_pooled_covariance_count_differs_from_released_by_eps_only():
    """The Note's claim: with pool=True the released whitening equals ours
    with eps scaled by M / M_p (4 for even maps), and differs from ours at
    the same eps."""
    u = torch.randn(2, 16, 6, 8, dtype=torch.float64) * 0.01  # eps matters
    eps = 1e-5
    released = _released_pooled_whitening(u, 8, eps, 3)
    scaled = CEBlock(16, group_size=8, pool=True, eps=4 * eps).double()
    same_eps = CEBlock(16, group_size=8, pool=True, eps=eps).double()
    torch.testing.assert_close(scaled._whitening_matrix(u), released,
                               rtol=1e-10, atol=1e-12)
    assert (same_eps._whitening_matrix(u) - released).abs().max() > 1e-3
