"""Every block returns a tensor of its own, not a view of another: mmdet's
and mmpretrain's bottlenecks add the identity to the block's output in
place (``out += identity``), and an in-place sum on a view makes autograd
copy the whole tensor forward and scatter its gradient into a zero-filled
one backward (``CopySlices``). The gradient through the in-place sum
equals the one through an out-of-place sum."""
import pytest
import torch

from tests._helpers import build_from_root

# every forward path of every block: C3 fused, factorized with a resize,
# literal (no factorization), identity ends, post-activation; CE fused,
# reference (pooled whitening) and eval; SE; the GE variants
BLOCKS = {
    'c3-fused': dict(type='C3Block', grid_size=(6, 7)),
    'c3-fused-post-act': dict(type='C3Block', grid_size=(6, 7), post_act=True),
    'c3-resized': dict(type='C3Block', grid_size=(3, 4)),
    'c3-literal': dict(type='C3Block', grid_size=(6, 7), factorize=False),
    'c3-literal-grouped': dict(type='C3Block', grid_size=(6, 7), factorize=False,
                               group_size=8),
    'c3-no-message': dict(type='C3Block', grid_size=(6, 7), message_passing=False),
    'c3-no-ends': dict(type='C3Block', encode_decode=False),
    'ce': dict(type='CEBlock', group_size=8),
    'ce-pool': dict(type='CEBlock', group_size=8, pool=True),
    'se': dict(type='SEBlock', ratio=4),
    'ge-': dict(type='GEBlock', extent=2),
    'ge-theta': dict(type='GEBlock', variant='theta', extent=2),
    'ge-theta+global': dict(type='GEBlock', variant='theta+',
                            extent='global', grid_size=(6, 7), ratio=4),
}


def _grads(block, x, identity, upstream, in_place):
    out = block(x)
    if in_place:
        out += identity
    else:
        out = out + identity
    return out, torch.autograd.grad(out, [x, identity] + list(
        block.parameters()), upstream, allow_unused=True)


@pytest.mark.parametrize('train', [True, False], ids=['train', 'eval'])
@pytest.mark.parametrize('name', sorted(BLOCKS))
def test_output_takes_the_residual_in_place(name, train):
    torch.manual_seed(0)
    block = build_from_root(dict(BLOCKS[name], in_channels=16)).double()
    block.train(train)
    x = torch.randn(3, 16, 6, 7, dtype=torch.float64, requires_grad=True)
    identity = torch.randn_like(x, requires_grad=True)
    upstream = torch.randn_like(x)

    out = block(x)
    assert out._base is None, f'{name} returns a view'
    out += identity
    assert out.grad_fn.name() != 'CopySlices', name

    # same block state for both passes (CE updates running averages)
    state = {k: v.clone() for k, v in block.state_dict().items()}
    ref, ref_grads = _grads(block, x, identity, upstream, in_place=False)
    block.load_state_dict(state)
    got, grads = _grads(block, x, identity, upstream, in_place=True)
    torch.testing.assert_close(got, ref, rtol=0, atol=0)
    for g, r in zip(grads, ref_grads):
        if r is None:
            assert g is None
        else:
            torch.testing.assert_close(g, r, rtol=0, atol=0)
