"""SE's and GE's input gradient formed in one pass (``GateLink``): the
gating product's backward hands its output gradient to the global
gather's backward, which adds both terms of the input's gradient at once.

Checked against the blocks restated in plain differentiable ops (float64):
that the link is taken where the gather saw the gated input, and is broken,
with the gradients still right, where a forward hook replaces the gate or
hands the gather another tensor; twice differentiated, backward twice on a
retained graph, and under a host's activation checkpointing.
"""
import pytest
import torch
import torch.nn.functional as F

import mmc3.models.blocks._layers as layers
from tests._helpers import build_from_root

LINKED = {
    'se': dict(type='SEBlock', in_channels=8, ratio=2),
    'ge-avg-global': dict(type='GEBlock', in_channels=8),
    'ge-theta-global': dict(type='GEBlock', in_channels=8, variant='theta',
                            extent='global', grid_size=(4, 3)),
    'ge-theta+global': dict(type='GEBlock', in_channels=8, variant='theta+',
                            extent='global', grid_size=(4, 3), ratio=2),
}
UNLINKED = {
    # the gather does not see the gated input as it is (resized), or is
    # not a global gather
    'ge-theta+global-resized': dict(type='GEBlock', in_channels=8,
                                    variant='theta+', extent='global',
                                    grid_size=(2, 3), ratio=2,
                                    size_mismatch='resize'),
    'ge-max-global': dict(type='GEBlock', in_channels=8, pooling='max'),
    'ge-theta+2': dict(type='GEBlock', in_channels=8, variant='theta+',
                       extent=2, ratio=2),
}


def _restated(block, x: torch.Tensor) -> torch.Tensor:
    """The block in plain ops on its own parameters (``nn.Conv2d`` and
    ``F.batch_norm`` in training mode), autograd differentiating it."""
    if block.__class__.__name__ == 'SEBlock':
        s = x.mean(dim=(2, 3), keepdim=True)
        s = F.conv2d(F.relu(F.conv2d(s, block.fc1.weight, block.fc1.bias)),
                     block.fc2.weight, block.fc2.bias)
        return x * torch.sigmoid(s)
    if block.variant == 'theta-' and block.pooling == 'max':
        return x * torch.sigmoid(x.amax(dim=(2, 3), keepdim=True))
    if block.variant == 'theta-':
        return x * torch.sigmoid(x.mean(dim=(2, 3), keepdim=True))
    g = x
    if block.extent == 'global' and tuple(x.shape[2:]) != block.grid_size:
        g = F.adaptive_avg_pool2d(g, block.grid_size)
    n_convs = len(block.gather_convs)
    for i, (conv, norm) in enumerate(zip(block.gather_convs,
                                         block.gather_norms)):
        g = F.conv2d(g, conv.weight, stride=conv.stride,
                     padding=conv.padding, groups=g.shape[1])
        g = F.batch_norm(g, None, None, norm.weight, norm.bias,
                         training=True, eps=norm.eps)
        if i < n_convs - 1:
            g = F.relu(g)
    if block.variant == 'theta+':
        g = F.conv2d(F.relu(F.conv2d(F.relu(g), block.fc1.weight,
                                     block.fc1.bias)),
                     block.fc2.weight, block.fc2.bias)
    gate = torch.sigmoid(g)
    if gate.shape[2:] != x.shape[2:]:
        gate = F.interpolate(gate, size=x.shape[2:], mode='nearest')
    return x * gate


def _build(cfg):
    torch.manual_seed(0)
    block = build_from_root(cfg).double().train()
    for p in block.parameters():  # no parameter left at a trivial value
        p.data.normal_(0, 0.5)
    return block


def _inputs(shape=(5, 8, 4, 3)):
    torch.manual_seed(1)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    return x, torch.randn(*shape, dtype=torch.float64)


def _count_fused(monkeypatch):
    """Count the calls of the one-pass input gradient."""
    calls = []
    fused = layers._gated_plus

    def counted(*args):
        calls.append(1)
        return fused(*args)

    monkeypatch.setattr(layers, '_gated_plus', counted)
    return calls


def _assert_grads_equal(block, x, up, out=None):
    params = list(block.parameters())
    out = block(x) if out is None else out
    ours = torch.autograd.grad(out, [x] + params, up)
    ref = torch.autograd.grad(_restated(block, x), [x] + params, up)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize('chunk', [12, 3 * 8 * 12, 2**20])
@pytest.mark.parametrize('name', sorted(LINKED))
def test_linked_blocks_form_the_input_gradient_in_one_pass(
        monkeypatch, name, chunk):
    """One fused input gradient per backward, in chunks of one map, of a
    ragged 3 samples and of everything; the input's and every parameter's
    gradient equal the plain restatement's."""
    monkeypatch.setattr(layers, 'CHUNK_ELEMENTS', chunk)
    calls = _count_fused(monkeypatch)
    block = _build(LINKED[name])
    x, up = _inputs()
    _assert_grads_equal(block, x, up)
    assert len(calls) == 1


@pytest.mark.parametrize('name', sorted(UNLINKED))
def test_other_gathers_keep_autograd_sum_of_both_terms(monkeypatch, name):
    calls = _count_fused(monkeypatch)
    block = _build(UNLINKED[name])
    x, up = _inputs()
    _assert_grads_equal(block, x, up)
    assert calls == []


@pytest.mark.parametrize('name', sorted(LINKED))
def test_a_gate_replaced_by_a_hook_breaks_the_link(monkeypatch, name):
    """A forward hook on ``gate`` that returns a gate not computed from
    the gather: the gather's backward never runs, so the gating product
    must form the input's gradient itself."""
    calls = _count_fused(monkeypatch)
    block = _build(LINKED[name])
    x, up = _inputs()
    other = torch.rand(5, 8, 1, 1, dtype=torch.float64, requires_grad=True)
    block.gate.register_forward_hook(lambda m, i, o: other * 1.0)
    gx, gother = torch.autograd.grad(block(x), (x, other), up)
    torch.testing.assert_close(gx, up * other, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gother, (up * x).sum((2, 3), keepdim=True),
                               rtol=1e-12, atol=1e-12)
    assert calls == []


@pytest.mark.parametrize('name', sorted(LINKED))
def test_a_gather_input_replaced_by_a_hook_breaks_the_link(
        monkeypatch, name):
    """A forward pre-hook that hands the gather ``2 x`` (same shape):
    the gather's gradient belongs to that tensor, not to the gated ``x``."""
    calls = _count_fused(monkeypatch)
    block = _build(LINKED[name])
    gather = block.squeeze if name == 'se' else (
        block.pool if name == 'ge-avg-global' else block.gather_convs[0])
    gather.register_forward_pre_hook(lambda m, args: (2 * args[0], ) +
                                     tuple(args[1:]))
    x, up = _inputs()
    out = block(x)
    doubled = x.detach().requires_grad_()

    def restated(t):
        # the restatement with the gather fed 2 t and the gate applied to t
        return _restated(block, 2 * t) / 2

    (gx, ) = torch.autograd.grad(out, (x, ), up)
    (ref, ) = torch.autograd.grad(restated(doubled), (doubled, ), up)
    torch.testing.assert_close(gx, ref, rtol=1e-10, atol=1e-12)
    assert calls == []


@pytest.mark.parametrize('name', sorted(LINKED))
def test_linked_blocks_are_twice_differentiable(name):
    block = _build(LINKED[name])
    x, _ = _inputs((3, 8, 4, 3))
    assert torch.autograd.gradgradcheck(block, (x, ))


@pytest.mark.parametrize('name', sorted(LINKED))
def test_backward_twice_on_a_retained_graph(name):
    block = _build(LINKED[name])
    x, up = _inputs()
    out = block(x)
    first = torch.autograd.grad(out, x, up, retain_graph=True)[0]
    second = torch.autograd.grad(out, x, up)[0]
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    _assert_grads_equal(block, x, up)


@pytest.mark.parametrize('name', ['se', 'ge-theta+global'])
def test_under_the_hosts_activation_checkpointing(name):
    """An mmdet ResNet stage with ``with_cp=True`` (reentrant
    checkpointing: forward without a graph, recomputed in the backward)
    gives the input and every parameter the gradients it gets without."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.registry import DefaultScope
    register_all_modules(init_default_scope=False)
    cfg = dict(LINKED[name])
    cfg.pop('in_channels')
    if 'grid_size' in cfg:
        cfg['grid_size'] = 2
    grads = []
    for with_cp in (False, True):
        torch.manual_seed(0)
        with DefaultScope.overwrite_default_scope('mmdet'):
            backbone = MODELS.build(dict(
                type='ResNet', depth=50, base_channels=4, num_stages=4,
                out_indices=(3, ), norm_eval=False, with_cp=with_cp,
                init_cfg=None,
                plugins=[dict(cfg=cfg, stages=(False, False, False, True),
                              position='after_conv3')])).double()
        backbone.train()  # mmdet's ResNet.train returns None
        x = torch.randn(4, 3, 64, 64, dtype=torch.float64,
                        requires_grad=True)
        backbone(x)[0].pow(2).sum().backward()
        grads.append([x.grad] + [p.grad for p in backbone.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
