# CIFAR ResNet-110 on CIFAR-100, no block.
#
# Reproduces:
#   seed 001 Table 1: CIFAR-100, row "ResNet-110": 1.74M params, 257.9M FLOPs, top-1 acc 72.01
#   seed 002 CIFAR-100 table, row "ResNet-110": 1.74M params, 257.9M FLOPs, top-1 acc 72.01
#   seed 002 Model Size table, row "ResNet-110": 1.74M params
#
# Set for 1 GPU x 128 images (released C3 recipe, _base_/classification/cifar100_resnet.py):
#   python tools/train.py configs/resnet110_baseline_cifar100.py
_base_ = [
    './_base_/classification/cifar100_resnet.py',
    './_base_/classification/cifar_blocks.py',
]
model = dict(backbone=dict(depth=110))
