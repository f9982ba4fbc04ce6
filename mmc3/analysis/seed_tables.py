"""The classification tables of the source documents (``seeds/``), as data.

Each :class:`SeedRow` is one row of a seed table: the config that builds
its model, the parameter and FLOP counts the seed prints (as printed, with
their unit), and the metric. ``tools/analysis_tools/model_complexity.py
--seed-tables`` sets our counts beside these; the config tests check that
every row has its config and that the config header quotes the metric.

Seeds (``../shared/seeds`` beside the project; file prefixes):

- ``001`` C3 author response: Table 1 (CIFAR-100: params, FLOPs, accuracy)
  and Table 2 (ImageNet ResNeXt-50 / MobileNet-v2: params, FLOPs, top-1 /
  top-5 error).
- ``002`` C3 poster: CIFAR-100 table (ResNet-20/56/110, WRN: params in M,
  FLOPs, accuracy), ImageNet table (ResNet-18/50/101, ResNeXt-50: params in
  M, top-1 / top-5 error), "Model Size" table, Enc-Dec / Mess. Passing
  ablation.
- ``000`` C3 supplementary: bottleneck-ratio ablation on ResNet-20.
- ``003`` GE supplementary Table 1: pooling ablation of GE-theta- on
  ResNet-50 (top-1 / top-5 error).
"""
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple


@dataclass(frozen=True)
class SeedRow:
    """One row of a seed table.

    ``params`` and ``flops`` are the printed strings (``'0.28M'``,
    ``'41.7M'``, ``'3.84G'``; ``None`` where the table has no column), so
    that the agreement is judged at the printed precision.
    ``metric`` is ``(name, value)``: CIFAR tables give top-1 accuracy (%),
    ImageNet tables top-1 and top-5 error (%).
    """

    table: str
    row: str
    config: str
    params: Optional[str] = None
    flops: Optional[str] = None
    metric: Tuple[Tuple[str, float], ...] = ()


def _cifar(table, row, config, params, flops, acc):
    return SeedRow(table, row, config, params, flops,
                   (('top-1 acc', acc), ) if acc is not None else ())


def _in1k(table, row, config, params, flops, top1, top5):
    return SeedRow(table, row, config, params, flops,
                   (('top-1 err', top1), ('top-5 err', top5)))


_T1 = '001 Table 1: CIFAR-100'
_T2 = '001 Table 2: ImageNet'
_P1 = '002 CIFAR-100 table'
_P2 = '002 ImageNet table'
_PS = '002 Model Size table'
_PA = '002 Enc-Dec / Mess. Passing ablation'
_K = '000 Table 1: bottleneck ratio (ResNet-20)'
_GE = '003 Table 1: GE-theta- pooling (ResNet-50)'

SEED_TABLES: List[SeedRow] = [
    # seed 001, Table 1 (CIFAR-100)
    _cifar(_T1, 'ResNet-20', 'resnet20_baseline_cifar100', '0.28M', '41.7M',
           67.73),
    _cifar(_T1, 'ResNet-20 + SE', 'resnet20_se_cifar100', '0.28M', '41.8M',
           68.57),
    _cifar(_T1, 'ResNet-20 + NC', 'resnet20_c3_cifar100', '0.35M', '46.0M',
           69.34),
    _cifar(_T1, 'ResNet-20 + Convs', 'resnet20_convs_cifar100', '0.39M',
           '104.8M', 68.58),
    _cifar(_T1, 'ResNet-110', 'resnet110_baseline_cifar100', '1.74M',
           '257.9M', 72.01),
    _cifar(_T1, 'ResNet-110 + SE', 'resnet110_se_cifar100', '1.76M',
           '258.5M', 72.47),
    _cifar(_T1, 'ResNet-110 + NC', 'resnet110_c3_cifar100', '1.81M',
           '262.2M', 73.36),
    _cifar(_T1, 'ResNet-110 + Convs', 'resnet110_convs_cifar100', '1.85M',
           '321.0M', 71.57),
    _cifar(_T1, 'Wide-ResNet', 'wrn22_10_baseline_cifar100', '26.9M',
           '3.84G', 77.96),
    _cifar(_T1, 'Wide-ResNet + SE', 'wrn22_10_se_cifar100', '27.3M', '3.84G',
           78.57),
    _cifar(_T1, 'Wide-ResNet + NC', 'wrn22_10_c3_cifar100', '26.9M', '3.87G',
           78.34),
    _cifar(_T1, 'Wide-ResNet + Convs', 'wrn22_10_convs_cifar100', '36.1M',
           '8.05G', 75.50),
    # seed 001, Table 2 (ImageNet)
    _in1k(_T2, 'ResNeXt-50', 'resnext50_4x32d_baseline_in1k', '34.93M',
          '5.89G', 23.85, 7.12),
    _in1k(_T2, 'ResNeXt-50 + SE', 'resnext50_4x32d_se_in1k', '37.45M',
          '5.90G', 22.90, 6.44),
    _in1k(_T2, 'ResNeXt-50 + NC', 'resnext50_4x32d_c3_in1k', '35.29M',
          '5.89G', 22.51, 6.23),
    _in1k(_T2, 'MobileNet-v2', 'mobilenet_v2_baseline_in1k', '3.50M',
          '0.32G', 28.12, 9.71),
    _in1k(_T2, 'MobileNet-v2 + SE', 'mobilenet_v2_se_in1k', '3.53M', '0.32G',
          26.66, 8.86),
    _in1k(_T2, 'MobileNet-v2 + NC', 'mobilenet_v2_c3_in1k', '3.51M', '0.32G',
          26.29, 9.09),
    # seed 002, CIFAR-100 table (params printed in M without the unit)
    _cifar(_P1, 'ResNet-20', 'resnet20_baseline_cifar100', '0.28M', '41.7M',
           67.73),
    _cifar(_P1, 'ResNet-20 + SE', 'resnet20_se_cifar100', '0.28M', '41.8M',
           68.57),
    _cifar(_P1, 'ResNet-20 + C3', 'resnet20_c3_cifar100', '0.35M', '46.0M',
           69.34),
    _cifar(_P1, 'ResNet-56', 'resnet56_baseline_cifar100', '0.86M', '128.2M',
           71.05),
    _cifar(_P1, 'ResNet-56 + SE', 'resnet56_se_cifar100', '0.87M', '128.5M',
           72.00),
    _cifar(_P1, 'ResNet-56 + C3', 'resnet56_c3_cifar100', '0.93M', '132.5M',
           72.27),
    _cifar(_P1, 'ResNet-110', 'resnet110_baseline_cifar100', '1.74M',
           '257.9M', 72.01),
    _cifar(_P1, 'ResNet-110 + SE', 'resnet110_se_cifar100', '1.76M',
           '258.5M', 72.47),
    _cifar(_P1, 'ResNet-110 + C3', 'resnet110_c3_cifar100', '1.81M',
           '262.2M', 73.36),
    _cifar(_P1, 'Wide-ResNet', 'wrn22_10_baseline_cifar100', '26.86M',
           '3.84G', 77.96),
    _cifar(_P1, 'Wide-ResNet + SE', 'wrn22_10_se_cifar100', '27.26M',
           '3.84G', 78.57),
    _cifar(_P1, 'Wide-ResNet + C3', 'wrn22_10_c3_cifar100', '26.93M',
           '3.87G', 78.34),
    # seed 002, ImageNet table
    _in1k(_P2, 'ResNet-18', 'resnet18_baseline_in1k', '11.7M', None, 30.28,
          10.52),
    _in1k(_P2, 'ResNet-18 + SE', 'resnet18_se_in1k', '11.8M', None, 30.15,
          10.72),
    _in1k(_P2, 'ResNet-18 + C3', 'resnet18_c3_in1k', '12.0M', None, 29.30,
          10.48),
    _in1k(_P2, 'ResNet-50', 'resnet50_baseline_in1k', '25.6M', None, 23.61,
          7.27),
    _in1k(_P2, 'ResNet-50 + SE', 'resnet50_se_in1k', '28.1M', None, 22.51,
          6.43),
    _in1k(_P2, 'ResNet-50 + C3', 'resnet50_c3_in1k', '25.9M', None, 23.19,
          6.60),
    _in1k(_P2, 'ResNet-101', 'resnet101_baseline_in1k', '44.6M', None, 22.48,
          6.18),
    _in1k(_P2, 'ResNet-101 + SE', 'resnet101_se_in1k', '49.3M', None, 22.14,
          6.14),
    _in1k(_P2, 'ResNet-101 + C3', 'resnet101_c3_in1k', '44.9M', None, 21.93,
          6.02),
    _in1k(_P2, 'ResNeXt-50', 'resnext50_4x32d_baseline_in1k', '34.9M', None,
          23.85, 7.12),
    _in1k(_P2, 'ResNeXt-50 + SE', 'resnext50_4x32d_se_in1k', '37.5M', None,
          22.90, 6.44),
    _in1k(_P2, 'ResNeXt-50 + C3', 'resnext50_4x32d_c3_in1k', '35.3M', None,
          22.51, 6.23),
    # seed 002, Model Size table (no accuracy column)
] + [
    _cifar(_PS, f'ResNet-{depth}{suffix}',
           f'resnet{depth}_{block}_cifar100', params, None, None)
    for depth, base, c3 in ((56, '0.86M', '0.93M'), (62, '0.96M', '1.03M'),
                            (74, '1.15M', '1.22M'), (86, '1.35M', '1.41M'),
                            (98, '1.54M', '1.61M'), (110, '1.74M', '1.80M'))
    for suffix, block, params in (('', 'baseline', base),
                                  (' + C3', 'c3', c3))
] + [
    # seed 002, ablation (accuracy only)
    _cifar(_PA, f'ResNet-{depth} {name}', f'resnet{depth}_c3_{tag}_cifar100',
           None, None, acc)
    for tag, name, accs in (('encdec', 'Enc-Dec only', (68.70, 71.95,
                                                          72.65)),
                            ('message', 'Mess. Passing only',
                             (69.13, 71.79, 72.74)))
    for depth, acc in zip((20, 56, 110), accs)
] + [
    # seed 000, bottleneck ratio k (k = 8 is the main ResNet-20 + C3)
    _cifar(_K, f'k = {k}', 'resnet20_c3_cifar100' if k == 8 else
           f'resnet20_c3_k{k}_cifar100', None, None, acc)
    for k, acc in ((1, 69.2), (2, 69.06), (4, 69.23), (8, 69.34),
                   (16, 69.05))
] + [
    # seed 003, Table 1 (GE-theta-, ResNet-50, error %)
    _in1k(_GE, 'ResNet-50', 'resnet50_baseline_in1k', None, None, 23.30,
          6.55),
    _in1k(_GE, '(E4, max)', 'resnet50_ge_e4_max_in1k', None, None, 23.10,
          6.39),
    _in1k(_GE, '(E4, avg)', 'resnet50_ge_e4_avg_in1k', None, None, 22.87,
          6.40),
    _in1k(_GE, '(global, max)', 'resnet50_ge_global_max_in1k', None, None,
          23.65, 6.62),
    _in1k(_GE, '(global, avg)', 'resnet50_ge_global_avg_in1k', None, None,
          22.14, 6.24),
]


def parse_count(text: str) -> Tuple[float, float]:
    """``'0.28M'`` -> ``(280000.0, 5000.0)``: the value and half a unit of
    its last printed digit (the agreement tolerance)."""
    scale = {'K': 1e3, 'M': 1e6, 'G': 1e9}[text[-1]]
    number = text[:-1]
    decimals = len(number.split('.')[1]) if '.' in number else 0
    return float(number) * scale, 0.5 * 10**-decimals * scale


def agrees(printed: str, measured: float) -> bool:
    """Whether ``measured`` rounds to ``printed`` at its precision."""
    value, half = parse_count(printed)
    return value - half <= measured < value + half


def rows_by_config() -> Dict[str, List[SeedRow]]:
    """Config name -> the seed rows it reproduces."""
    table: Dict[str, List[SeedRow]] = {}
    for row in SEED_TABLES:
        table.setdefault(row.config, []).append(row)
    return table
