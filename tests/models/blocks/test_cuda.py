"""Every block, and both message-passing paths, on CUDA where it exists:
the same values and gradients as on the CPU. Skipped with a reason on a host
without CUDA; ``tools/misc/gpu_check.sh`` runs them on a GPU machine.

TF32 is switched off for these comparisons (cuDNN convolutions use it by
default on Ampere and later, which rounds to 10 mantissa bits).
"""
import copy

import pytest
import torch

from tests._helpers import build_from_root

requires_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason='needs CUDA (on a GPU machine: bash tools/misc/gpu_check.sh)')

# every option branch that changes what runs on the device
BLOCKS = {
    'se': dict(type='SEBlock', ratio=4),
    'c3-dense': dict(type='C3Block', grid_size=(5, 6), message_impl='dense'),
    'c3-fast': dict(type='C3Block', grid_size=(5, 6), message_impl='fast'),
    'c3-literal': dict(type='C3Block', grid_size=(5, 6), factorize=False),
    'c3-groups-released': dict(type='C3Block', grid_size=(5, 6),
                               group_size=8, exclude_self=False,
                               post_act=True),
    'c3-resize-bilinear': dict(type='C3Block', grid_size=(3, 4),
                               resize_mode='bilinear'),
    'c3-resize-area': dict(type='C3Block', grid_size=(2, 3),
                           resize_mode='area'),
    'ce': dict(type='CEBlock', group_size=8),
    'ce-pool-trace': dict(type='CEBlock', group_size=8, pool=True,
                          trace_rescale=True),
    'ge-avg': dict(type='GEBlock', extent=2),
    'ge-max-global': dict(type='GEBlock', extent='global', pooling='max'),
    'ge-theta-4': dict(type='GEBlock', variant='theta', extent=4),
    'ge-theta+global': dict(type='GEBlock', variant='theta+',
                            extent='global', grid_size=(5, 6), ratio=4),
    'ge-theta+resize': dict(type='GEBlock', variant='theta+',
                            extent='global', grid_size=(3, 3), ratio=4,
                            size_mismatch='resize'),
}


@pytest.fixture
def no_tf32():
    matmul = torch.backends.cuda.matmul.allow_tf32
    cudnn = torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = matmul
    torch.backends.cudnn.allow_tf32 = cudnn


def _close(a: torch.Tensor, b: torch.Tensor, name: str) -> None:
    """Float32 on two devices sums in other orders: within 1e-4 of the
    values' scale (the suite's bound for float32 against a reference)."""
    scale = float(b.abs().max()) or 1.0
    err = float((a.cpu() - b).abs().max())
    assert err <= 1e-4 * scale, f'{name}: {err} > 1e-4 * {scale}'


@requires_cuda
@pytest.mark.parametrize('train', [True, False])
@pytest.mark.parametrize('name', sorted(BLOCKS))
def test_block_on_cuda_matches_cpu(name, train, no_tf32):
    cpu = build_from_root(dict(BLOCKS[name], in_channels=16)).train(train)
    gpu = copy.deepcopy(cpu).cuda().train(train)
    x = torch.randn(2, 16, 5, 6) + 0.5
    xc = x.cuda().requires_grad_(True)
    x.requires_grad_(True)
    out_cpu, out_gpu = cpu(x), gpu(xc)
    assert out_gpu.device.type == 'cuda'
    _close(out_gpu.detach(), out_cpu.detach(), 'output')
    cot = torch.randn_like(out_cpu)
    (out_cpu * cot).sum().backward()
    (out_gpu * cot.cuda()).sum().backward()
    _close(xc.grad, x.grad, 'input gradient')
    gpu_params = dict(gpu.named_parameters())
    for pname, p in cpu.named_parameters():
        _close(gpu_params[pname].grad, p.grad, pname)
    for (bname, b), b_gpu in zip(cpu.named_buffers(), gpu.buffers()):
        if b.is_floating_point():
            _close(b_gpu, b, bname)


@requires_cuda
@pytest.mark.parametrize('exclude_self', [True, False])
@pytest.mark.parametrize('spread', [2.0, 0.1])  # binned, centred
def test_fast_and_dense_messages_agree_on_cuda(exclude_self, spread,
                                               no_tf32):
    from mmc3.models.blocks.message import dense_message, fast_message
    torch.manual_seed(0)
    v = torch.randn(4, 2048, 1) * spread
    z = (torch.randn(4, 2048, 49) + v).cuda().requires_grad_(True)
    cot = torch.randn_like(z)
    fast = fast_message(z, exclude_self)
    (fast * cot).sum().backward()
    grad_fast, z.grad = z.grad, None
    dense = dense_message(z, exclude_self, None)
    (dense * cot).sum().backward()
    scale = float(z.detach().abs().max())
    assert float((fast - dense).abs().max()) <= 1e-5 * scale + 1e-6 * scale
    _close(grad_fast, z.grad.cpu(), 'gradient')


@requires_cuda
def test_auto_is_dense_on_cuda_and_bounded():
    from mmc3.models.blocks.message import choose_message_impl
    assert choose_message_impl(2048, 49, torch.device('cuda')) == 'dense'


@requires_cuda
def test_c3_at_2048_channels_fused_and_under_autocast_on_cuda(no_tf32):
    """The fused ends (float32) and the autograd factorized path (taken
    under CUDA autocast) on the GPU against the CPU's float32 block."""
    torch.manual_seed(0)
    cpu = build_from_root(dict(type='C3Block', in_channels=2048,
                               grid_size=7))
    gpu = copy.deepcopy(cpu).cuda()
    x = torch.randn(4, 2048, 7, 7)
    ref = cpu(x).detach()
    _close(gpu(x.cuda()).detach(), ref, 'fused output')
    with torch.autocast('cuda', dtype=torch.float16):
        half = gpu(x.cuda()).float().detach()
    scale = float(ref.abs().max())
    assert float((half.cpu() - ref).abs().max()) <= 1e-2 * scale
