"""Parameter and FLOP counts of models built from configs, without data.

``count_params`` is exact. FLOPs are multiply-accumulates of one image, as
the seeds count them, from one of two counters:

- ``'mmengine'`` (default): mmengine's ``FlopAnalyzer`` (a JIT trace that
  counts convolutions, linear layers, matrix products and einsums; element-
  wise ops, pooling, BN and activations count zero).
- ``'thop'``: ``thop`` 0.0.22, the counter the released C3 code's
  ``train.py`` calls. It hooks leaf modules of known types only and also
  counts BN (4 per element), ReLU (1) and pooling. mmc3's ``PointwiseConv``
  and ``FullMapDepthwiseConv`` are counted as the ``Conv2d`` they are,
  ``GlobalAvgPool`` as the ``AdaptiveAvgPool2d`` it is.

Every C3 block is switched to its literal steps with the dense message
(``message_impl='dense'``, ``factorize=False``) while counting, so its
encoder and decoder are counted as the four linear maps of the paper and
its message as the ``(C x C) @ (C x P)`` product it equals; the fast
implementation computes the same values with fewer operations (the
factorized path skips two of the maps, the fast message is a custom
autograd function that a trace cannot see into).
"""
import contextlib
import copy
from typing import Iterator, Optional, Tuple

import torch
import torch.nn as nn

COUNTERS = ('mmengine', 'thop')
CIFAR_SHAPE = (3, 32, 32)
IMAGENET_SHAPE = (3, 224, 224)


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not), each tensor counted once."""
    return sum(p.numel() for p in model.parameters())


def input_shape(cfg) -> Tuple[int, int, int]:
    """The image shape a classification config's model is counted at:
    32x32 for the CIFAR hosts, 224x224 otherwise."""
    backbone = cfg.model.get('backbone', {})
    kind = str(backbone.get('type', ''))
    return CIFAR_SHAPE if kind.startswith('Cifar') or \
        kind.endswith('_CIFAR') else IMAGENET_SHAPE


def build_model(cfg) -> nn.Module:
    """The config's model, built in its scope without downloads, in eval
    mode (weights as constructed: counts do not depend on them)."""
    from .runs import load_model
    return load_model(cfg)


@contextlib.contextmanager
def dense_messages(model: nn.Module) -> Iterator[int]:
    """Run every C3 block of ``model`` literally with its dense message;
    yields how many were switched, restores their settings on exit."""
    from mmc3.models.blocks import C3Block
    blocks = [m for m in model.modules() if isinstance(m, C3Block)]
    saved = [(m.message_impl, m.factorize) for m in blocks]
    try:
        for m in blocks:
            m.message_impl, m.factorize = 'dense', False
        yield len(blocks)
    finally:
        for m, (impl, factorize) in zip(blocks, saved):
            m.message_impl, m.factorize = impl, factorize


def _thop_flops(model: nn.Module, shape) -> float:
    try:
        import thop
        from thop.count_hooks import count_adap_avgpool, count_convNd
    except ImportError as err:
        raise RuntimeError(
            "counter 'thop' needs the thop package (0.0.22, the version the "
            'released C3 code uses): pip install --no-deps thop==0.0.22'
        ) from err
    from mmc3.models.blocks._layers import (FullMapDepthwiseConv,
                                            GlobalAvgPool, PointwiseConv)
    # thop adds buffers to every module it visits: count a copy
    probe = copy.deepcopy(model)
    custom = {PointwiseConv: count_convNd, FullMapDepthwiseConv: count_convNd,
              GlobalAvgPool: count_adap_avgpool}
    flops, _ = thop.profile(probe, (1, ) + tuple(shape), custom_ops=custom,
                            verbose=False)
    return float(flops)


def _mmengine_flops(model: nn.Module, shape) -> float:
    from mmengine.analysis import FlopAnalyzer
    inputs = torch.zeros((1, ) + tuple(shape))
    analyzer = FlopAnalyzer(model, inputs)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    return float(analyzer.total())


def count_flops(model: nn.Module, shape: Tuple[int, int, int],
                counter: str = 'mmengine') -> float:
    """Multiply-accumulates of ``model`` on one ``shape`` image."""
    if counter not in COUNTERS:
        raise ValueError(f'counter must be one of {COUNTERS}, got '
                         f'{counter!r}')
    with dense_messages(model), torch.no_grad():
        if counter == 'thop':
            return _thop_flops(model, shape)
        return _mmengine_flops(model, shape)


def format_count(value: Optional[float], unit: str) -> str:
    """``value`` in ``unit`` ('K', 'M' or 'G') with two decimals."""
    if value is None:
        return '-'
    scale = {'K': 1e3, 'M': 1e6, 'G': 1e9}[unit]
    return f'{value / scale:.2f}{unit}'
