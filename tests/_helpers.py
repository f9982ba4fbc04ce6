"""Helpers shared by the tests: building blocks by name and inside a host."""
import torch


def build_from_root(cfg: dict):
    """Build a block by its plain name from mmengine's root MODELS registry."""
    import mmc3  # noqa: F401  (registers the blocks)
    from mmengine.registry import MODELS
    return MODELS.build(cfg)


def run_as_mmdet_plugin(block_cfg: dict, input_hw=(64, 64), batch: int = 2):
    """Build a shrunk mmdet ResNet-50 with ``block_cfg`` at ``after_conv3`` of
    stage 4, run one forward/backward and return ``(model, outputs)``.

    The backbone is built from mmdet's registry with a plain block ``type``,
    which is how a config reaches the block. Every parameter of every block
    must receive a finite, non-zero gradient (the backbone's weights are not
    initialised here, so no zero-initialised BN sits in front of a block).
    """
    import mmc3  # noqa: F401
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    backbone = MMDET_MODELS.build(
        dict(
            type='ResNet',
            depth=50,
            base_channels=8,
            norm_eval=False,
            init_cfg=None,
            plugins=[
                dict(cfg=block_cfg, stages=(False, False, False, True),
                     position='after_conv3')
            ]))
    backbone.train()
    x = torch.randn(batch, 3, *input_hw)
    outs = backbone(x)
    sum(o.float().pow(2).mean() for o in outs).backward()
    blocks = [m for name, m in backbone.named_modules()
              if type(m).__name__ == block_cfg['type']]
    assert len(blocks) == 3, 'one block per bottleneck of stage 4'
    for block in blocks:
        for pname, p in block.named_parameters():
            assert p.grad is not None, f'{pname} got no gradient'
            assert torch.isfinite(p.grad).all(), f'{pname} has a non-finite gradient'
            assert p.grad.abs().sum() > 0, f'{pname} got an all-zero gradient'
    return backbone, outs


#: Unit roundoff of float32 (2**-24): one rounding changes a value by at most
#: this fraction of it.
FLOAT32_UNIT_ROUNDOFF = torch.finfo(torch.float32).eps / 2


def float32_sum_bound(terms: int, magnitude: float) -> float:
    """Largest rounding error of a float32 sum of ``terms`` values whose
    absolute values add up to at most ``magnitude``, in any summation order
    (Higham, "Accuracy and Stability of Numerical Algorithms", 2nd ed.,
    eq. 4.4: ``gamma_n * sum |x_i|`` with ``gamma_n = n u / (1 - n u)``).

    Two float32 computations of one sum that differ only in order (chunking,
    blocking, another CPU's vector width) differ by at most twice this. Use
    it instead of a tolerance tuned on one machine.
    """
    nu = terms * FLOAT32_UNIT_ROUNDOFF
    assert nu < 0.1, 'the bound needs n * u << 1'
    return nu / (1 - nu) * magnitude


def build_in_scope(scope: str, cfg: dict):
    """Build ``cfg`` from the registry of codebase ``scope`` ('mmdet',
    'mmseg') in that scope, as one of its configs does, whatever scope an
    earlier test left current (mmengine resolves a registry through the
    current default scope)."""
    import importlib

    from mmengine.registry import DefaultScope
    registry = importlib.import_module(f'{scope}.registry').MODELS
    with DefaultScope.overwrite_default_scope(scope):
        return registry.build(cfg)
