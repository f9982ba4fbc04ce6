# CIFAR ResNet-20 on CIFAR-100, C3 on the stem output and on the outputs of stages 1 and 2 (grids 16/16/8, k = 8;
#   released-code settings: message includes j = i, ReLU after the residual sum).
#
# Reproduces:
#   seed 001 Table 1: CIFAR-100, row "ResNet-20 + NC": 0.35M params, 46.0M FLOPs, top-1 acc 69.34
#   seed 002 CIFAR-100 table, row "ResNet-20 + C3": 0.35M params, 46.0M FLOPs, top-1 acc 69.34
#   seed 000 Table 1: bottleneck ratio (ResNet-20), row "k = 8": top-1 acc 69.34
#
# Set for 1 GPU x 128 images (released C3 recipe, _base_/classification/cifar100_resnet.py):
#   python tools/train.py configs/resnet20_c3_cifar100.py
_base_ = [
    './_base_/classification/cifar100_resnet.py',
    './_base_/classification/cifar_blocks.py',
]
model = dict(backbone=dict(depth=20, plugins=_base_.c3_cifar_plugins))
