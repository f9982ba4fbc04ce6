# Quickstart classification SE variant: the baseline plus the CIFAR
# experiments' SE (after the last BN of every BasicBlock, reduction 8, no
# bias), as resnet20_se_cifar100.py. Its gates are what
# tools/analysis_tools/feature_importance.py drops channels by.
_base_ = [
    '../_base_/classification/digits_quickstart.py',
    '../_base_/classification/cifar_blocks.py',
]
model = dict(backbone=dict(plugins=_base_.se_cifar_plugins))
