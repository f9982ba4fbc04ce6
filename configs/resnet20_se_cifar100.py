# CIFAR ResNet-20 on CIFAR-100, SE (reduction 8, no bias) after the last BN of every BasicBlock.
#
# Reproduces:
#   seed 001 Table 1: CIFAR-100, row "ResNet-20 + SE": 0.28M params, 41.8M FLOPs, top-1 acc 68.57
#   seed 002 CIFAR-100 table, row "ResNet-20 + SE": 0.28M params, 41.8M FLOPs, top-1 acc 68.57
#
# Set for 1 GPU x 128 images (released C3 recipe, _base_/classification/cifar100_resnet.py):
#   python tools/train.py configs/resnet20_se_cifar100.py
_base_ = [
    './_base_/classification/cifar100_resnet.py',
    './_base_/classification/cifar_blocks.py',
]
model = dict(backbone=dict(depth=20, plugins=_base_.se_cifar_plugins))
