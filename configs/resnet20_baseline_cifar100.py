# CIFAR ResNet-20 on CIFAR-100, no block.
#
# Reproduces:
#   seed 001 Table 1: CIFAR-100, row "ResNet-20": 0.28M params, 41.7M FLOPs, top-1 acc 67.73
#   seed 002 CIFAR-100 table, row "ResNet-20": 0.28M params, 41.7M FLOPs, top-1 acc 67.73
#
# Set for 1 GPU x 128 images (released C3 recipe, _base_/classification/cifar100_resnet.py):
#   python tools/train.py configs/resnet20_baseline_cifar100.py
_base_ = [
    './_base_/classification/cifar100_resnet.py',
    './_base_/classification/cifar_blocks.py',
]
model = dict(backbone=dict(depth=20))
