"""Outputs and gradients of C3 and CE against differentiable restatements of
their equations (autograd through plain torch ops on the blocks' own
parameters, float64), so that a faster implementation cannot change what
the blocks compute or how they learn: the input's gradient and every
parameter's, for a random upstream gradient, in every option branch the
optimised code paths take.

The restatements share no code with the blocks: C3 is ``x + Dec(softmax
message of Enc(x))`` with the ``C x C`` softmax formed explicitly; CE is
``lam * P u + (1 - lam) * (g / s) * u`` with the covariance, Newton-Schulz
and the IR gate written out.
"""
import math

import pytest
import torch
import torch.nn.functional as F

import mmc3.models.blocks._layers as layers
from tests._helpers import build_from_root, float32_sum_bound


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest difference relative to the largest entry of ``b``."""
    a, b = a.detach(), b.detach()
    return float((a.double() - b).abs().max() / b.abs().max().clamp_min(
        1e-300))


def _grads(fn, x, params, upstream):
    """Output and gradients of ``fn(x)`` (x first, then params)."""
    out = fn(x)
    grads = torch.autograd.grad(out, [x] + params, upstream,
                                allow_unused=True)
    return out, grads


def _assert_matches_restated(block, restated, x, upstream, tol, first):
    """Output and every gradient (``first`` names the input's) of ``block``
    within ``tol`` relative of ``restated`` on the block's parameters; a
    parameter the restatement does not reach must get no gradient."""
    params = list(block.parameters())
    out, grads = _grads(block, x, params, upstream)
    ref, ref_grads = _grads(restated, x, params, upstream)
    assert _relative(out, ref) <= tol
    for name, g, r in zip([first] + [n for n, _ in block.named_parameters()],
                          grads, ref_grads):
        if r is None:
            assert g is None or float(g.abs().max()) == 0, name
            continue
        assert _relative(g, r) <= tol, name


# --------------------------------------------------------------------------
# C3
# --------------------------------------------------------------------------
def c3_restated(block, x: torch.Tensor) -> torch.Tensor:
    """The C3 block's forward in float64 from its equations (grid = input
    size, or nearest resizing there and back)."""
    n, c, h, w = x.shape
    grid = block.grid_size
    xg = F.interpolate(x, size=grid, mode='nearest') if grid != (h, w) else x
    enc, dec = block.encoder, block.decoder
    z = F.linear(F.relu(F.linear(xg.flatten(2), enc.fc_in.weight,
                                 enc.fc_in.bias)),
                 enc.fc_out.weight, enc.fc_out.bias)  # (N, C, P)
    if block.message_passing:
        gs = block.group_size or c
        zz = z.reshape(n * (c // gs), gs, -1)
        v = zz.mean(dim=2)
        scores = -(v[:, :, None] - v[:, None, :])**2
        if block.exclude_self:
            scores = scores.masked_fill(
                torch.eye(gs, dtype=torch.bool), -math.inf)
        z = torch.bmm(torch.softmax(scores, dim=2), zz).reshape(z.shape)
    xbar = F.linear(F.relu(F.linear(z, dec.fc_in.weight, dec.fc_in.bias)),
                    dec.fc_out.weight, dec.fc_out.bias).reshape(n, c, *grid)
    if grid != (h, w):
        xbar = F.interpolate(xbar, size=(h, w), mode='nearest')
    out = x + xbar
    return F.relu(out) if block.post_act else out


C3_CASES = [
    # (channels, input hw, block options): dense and fast messages, groups,
    # both exclude_self settings, the ablations, resizing, post_act
    (6, (3, 4), dict(grid_size=(3, 4), ratio=2, message_impl='dense')),
    (6, (3, 4), dict(grid_size=(3, 4), ratio=2, exclude_self=False,
                     message_impl='dense')),
    (8, (3, 3), dict(grid_size=3, ratio=2, group_size=4,
                     message_impl='dense', post_act=True)),
    (6, (4, 4), dict(grid_size=2, ratio=1, message_impl='dense')),
    (6, (3, 3), dict(grid_size=3, ratio=2, message_passing=False)),
    (256, (3, 3), dict(grid_size=3, ratio=2, message_impl='fast',
                       message_tol=1e-10)),
    (256, (3, 3), dict(grid_size=3, ratio=2, message_impl='fast',
                       exclude_self=False, group_size=128,
                       message_tol=1e-10)),
]


@pytest.mark.parametrize('c, hw, cfg', C3_CASES)
@pytest.mark.parametrize('spread', [0.1, 3.0])
def test_c3_output_and_gradients_match_the_equations(c, hw, cfg, spread):
    """float64: the block (default settings of the implementation) equals
    the restated equations to 1e-9 relative, output and gradients; the
    spreads exercise both fast-message strategies (centred and binned)."""
    torch.manual_seed(0)
    block = build_from_root(dict(type='C3Block', in_channels=c,
                                 **cfg)).double()
    x = (torch.randn(2, c, *hw, dtype=torch.float64)
         + spread * torch.randn(2, c, 1, 1, dtype=torch.float64))
    x.requires_grad_(True)
    upstream = torch.randn(2, c, *hw, dtype=torch.float64)
    _assert_matches_restated(block, lambda t: c3_restated(block, t), x,
                             upstream, 1e-9, 'x')


@pytest.mark.parametrize('exclude_self', [True, False])
def test_c3_float32_at_2048_channels_matches_the_equations(exclude_self):
    """float32 at the C4 head's width (2048 channels, 7x7, the fast
    message): output and every gradient within 1e-5 of the float64
    equations, relative to the largest entry. Float32 rounding of the
    block's sums (at most 2048 terms of numbers of one sign) is ~1e-6 of
    that scale; 1e-5 also holds the fast message to its tolerance."""
    torch.manual_seed(1)
    block = build_from_root(dict(type='C3Block', in_channels=2048,
                                 grid_size=7, exclude_self=exclude_self))
    x = torch.randn(2, 2048, 7, 7, requires_grad=True)
    upstream = torch.randn(2, 2048, 7, 7)
    out, grads = _grads(block, x, list(block.parameters()), upstream)
    block64 = build_from_root(dict(type='C3Block', in_channels=2048,
                                   grid_size=7, exclude_self=exclude_self))
    block64.load_state_dict(block.state_dict())
    block64.double()
    x64 = x.detach().double().requires_grad_(True)
    ref, ref_grads = _grads(lambda t: c3_restated(block64, t), x64,
                            list(block64.parameters()), upstream.double())
    assert _relative(out, ref) <= 1e-5
    for name, g, r in zip(['x'] + [n for n, _ in block.named_parameters()],
                          grads, ref_grads):
        assert _relative(g, r) <= 1e-5, name


# --------------------------------------------------------------------------
# CE
# --------------------------------------------------------------------------
def ce_restated(block, u: torch.Tensor, parts: bool = False):
    """CEBlock's training-mode forward from its equations (no pooling); with
    ``parts`` the branches ``(bd, ir, lam)`` instead."""
    n, c, h, w = u.shape
    p = h * w
    flat = u.reshape(n, c, p)
    dev = flat - flat.mean(dim=2, keepdim=True)
    denom = max(p - 1, 1) if block.unbiased_var else p
    var = (dev * dev).sum(dim=2) / denom  # (N, C)
    hid = F.layer_norm(var @ block.fc1.weight.t(), (block.fc1.out_features, ),
                       block.ln.weight, block.ln.bias, block.ln.eps)
    gate = torch.sigmoid(F.relu(hid) @ block.fc2.weight.t())
    s = torch.sqrt(var.mean() + block.eps)
    ir = u * (gate / s)[:, :, None, None]
    d = block.group_size
    xs = u.reshape(n, c // d, d, p).permute(1, 2, 0, 3).reshape(c // d, d, -1)
    xc = xs - xs.mean(dim=2, keepdim=True)
    eye = torch.eye(d, dtype=u.dtype)
    sigma = xc @ xc.transpose(1, 2) / xs.shape[2] + block.eps * eye
    tr = sigma.diagonal(dim1=1, dim2=2).sum(-1)[:, None, None]
    sigma_n = sigma / tr
    pk = eye.expand_as(sigma)
    for _ in range(block.ns_iters):
        pk = 1.5 * pk - 0.5 * pk @ pk @ pk @ sigma_n
    if block.trace_rescale:
        pk = pk / tr.sqrt()
    bd = torch.einsum('gij,ngjp->ngip', pk,
                      u.reshape(n, c // d, d, p)).reshape(u.shape)
    lam = torch.sigmoid(block.theta)
    if parts:
        return bd, ir, lam
    return lam * bd + (1 - lam) * ir


CE_CASES = [
    dict(in_channels=32, group_size=8),
    dict(in_channels=32, group_size=16, unbiased_var=False),
    dict(in_channels=32, group_size=4, trace_rescale=True, ns_iters=2),
    dict(in_channels=48, group_size=16, ratio=8, ns_iters=0),
]


@pytest.mark.parametrize('cfg', CE_CASES, ids=lambda c: str(sorted(c.items())))
@pytest.mark.parametrize('shape', [(3, 5, 6), (4, 1, 1), (2, 7, 7)])
def test_ce_output_and_gradients_match_the_equations(cfg, shape):
    """float64, training mode: output, the input's gradient and every
    parameter's gradient equal the restated equations to 1e-9 relative."""
    torch.manual_seed(0)
    block = build_from_root(dict(type='CEBlock', **cfg)).double().train()
    with torch.no_grad():
        block.theta.fill_(0.3)
        block.ln.weight.uniform_(0.5, 1.5)
        block.ln.bias.uniform_(-0.5, 0.5)
    n, h, w = shape
    c = cfg['in_channels']
    u = (torch.randn(n, c, h, w, dtype=torch.float64) * 1.5 + 0.3)
    u.requires_grad_(True)
    upstream = torch.randn(n, c, h, w, dtype=torch.float64)
    _assert_matches_restated(block, lambda t: ce_restated(block, t), u,
                             upstream, 1e-9, 'u')


@pytest.mark.parametrize('chunk', [1, 2 * 32 * 9, 2**20])
def test_ce_in_chunks_of_samples_matches_the_equations(monkeypatch, chunk):
    """The statistics and the input's gradient are formed a chunk of
    samples at a time (``CHUNK_ELEMENTS``): one sample per chunk, two with
    a ragged last chunk (5 samples), all at once; float64, 1e-9."""
    monkeypatch.setattr(layers, 'CHUNK_ELEMENTS', chunk)
    torch.manual_seed(1)
    block = build_from_root(dict(type='CEBlock', in_channels=32,
                                 group_size=8)).double().train()
    with torch.no_grad():
        block.theta.fill_(-0.4)
    u = (torch.randn(5, 32, 3, 3, dtype=torch.float64) + 0.7)
    u.requires_grad_(True)
    upstream = torch.randn(5, 32, 3, 3, dtype=torch.float64)
    _assert_matches_restated(block, lambda t: ce_restated(block, t), u,
                             upstream, 1e-9, 'u')


def ce_eval_restated(block, u: torch.Tensor) -> torch.Tensor:
    """CEBlock's eval-mode forward from its equations: the running
    whitening matrices and IR scale, the gate from the sample itself."""
    n, c, h, w = u.shape
    p = h * w
    flat = u.reshape(n, c, p)
    dev = flat - flat.mean(dim=2, keepdim=True)
    denom = max(p - 1, 1) if block.unbiased_var else p
    var = (dev * dev).sum(dim=2) / denom
    hid = F.layer_norm(var @ block.fc1.weight.t(), (block.fc1.out_features, ),
                       block.ln.weight, block.ln.bias, block.ln.eps)
    gate = torch.sigmoid(F.relu(hid) @ block.fc2.weight.t())
    ir = u * (gate / block.running_scale)[:, :, None, None]
    d = block.group_size
    bd = torch.einsum('gij,ngjp->ngip', block.running_wm,
                      u.reshape(n, c // d, d, p)).reshape(u.shape)
    lam = torch.sigmoid(block.theta)
    return lam * bd + (1 - lam) * ir


@pytest.mark.parametrize('theta_trains', [True, False])
def test_ce_eval_mode_gradients_match_the_equations(theta_trains):
    """In eval mode the shared part ``lam * running_wm`` only depends on
    ``theta``; with ``theta`` frozen it needs no gradient at all, and the
    input's and the IR branch's gradients are still those of the
    equations (float64, 1e-9)."""
    torch.manual_seed(3)
    block = build_from_root(dict(type='CEBlock', in_channels=32,
                                 group_size=8)).double()
    with torch.no_grad():
        block.theta.fill_(0.6)
        q = torch.randn(4, 8, 8, dtype=torch.float64) * 0.2
        block.running_wm.copy_(torch.eye(8, dtype=torch.float64) + q)
        block.running_scale.fill_(1.7)
    block.theta.requires_grad_(theta_trains)
    block.eval()
    u = torch.randn(3, 32, 5, 4, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(3, 32, 5, 4, dtype=torch.float64)
    params = [q for q in block.parameters() if q.requires_grad]
    out = block(u)
    grads = torch.autograd.grad(out, [u] + params, upstream)
    ref = ce_eval_restated(block, u)
    ref_grads = torch.autograd.grad(ref, [u] + params, upstream)
    assert _relative(out, ref) <= 1e-9
    for g, r in zip(grads, ref_grads):
        assert _relative(g, r) <= 1e-9


def test_ce_float32_at_the_roi_head_width_matches_the_equations():
    """float32 at 2048 channels (groups of 16, 7x7 maps): output and every
    gradient within 1e-5 of the float64 equations, relative to the largest
    entry; ``theta``'s gradient is one sum over all 200k elements of terms of
    both signs, so it is held to the float32 bound of that sum instead
    (Higham's ``gamma_n`` times the sum of the terms' magnitudes)."""
    torch.manual_seed(2)
    block = build_from_root(dict(type='CEBlock', in_channels=2048)).train()
    with torch.no_grad():
        block.theta.fill_(0.2)
    u = (torch.randn(4, 2048, 7, 7) + 0.5).requires_grad_(True)
    upstream = torch.randn(4, 2048, 7, 7)
    out, grads = _grads(block, u, list(block.parameters()), upstream)
    block64 = build_from_root(dict(type='CEBlock', in_channels=2048))
    block64.load_state_dict(block.state_dict())
    block64.double().train()
    u64 = u.detach().double().requires_grad_(True)
    ref, ref_grads = _grads(lambda t: ce_restated(block64, t), u64,
                            list(block64.parameters()), upstream.double())
    assert _relative(out, ref) <= 1e-5
    with torch.no_grad():
        bd, ir, lam = ce_restated(block64, u64, parts=True)
        # d out / d theta = lam (1 - lam) (bd - ir), summed against upstream
        terms = upstream.double() * (bd - ir) * lam * (1 - lam)
    for name, g, r in zip(['u'] + [n for n, _ in block.named_parameters()],
                          grads, ref_grads):
        if name == 'theta':
            bound = 2 * float32_sum_bound(terms.numel(),
                                          float(terms.abs().sum()))
            assert float((g.double() - r).abs()) <= bound
            continue
        assert _relative(g, r) <= 1e-5, name
