# Quickstart classification C3 variant: the baseline plus the CIFAR-100
# experiments' three C3 blocks (stem output, stage 1 and stage 2 outputs,
# grids 16/16/8, released-code settings), as resnet20_c3_cifar100.py.
_base_ = [
    '../_base_/classification/digits_quickstart.py',
    '../_base_/classification/cifar_blocks.py',
]
model = dict(backbone=dict(plugins=_base_.c3_cifar_plugins))
