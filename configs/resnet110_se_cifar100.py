# CIFAR ResNet-110 on CIFAR-100, SE (reduction 8, no bias) after the last BN of every BasicBlock.
#
# Reproduces:
#   seed 001 Table 1: CIFAR-100, row "ResNet-110 + SE": 1.76M params, 258.5M FLOPs, top-1 acc 72.47
#   seed 002 CIFAR-100 table, row "ResNet-110 + SE": 1.76M params, 258.5M FLOPs, top-1 acc 72.47
#
# Set for 1 GPU x 128 images (released C3 recipe, _base_/classification/cifar100_resnet.py):
#   python tools/train.py configs/resnet110_se_cifar100.py
_base_ = [
    './_base_/classification/cifar100_resnet.py',
    './_base_/classification/cifar_blocks.py',
]
model = dict(backbone=dict(depth=110, plugins=_base_.se_cifar_plugins))
