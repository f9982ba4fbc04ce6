# Wide-ResNet WRN-22-10 (the released code's "20": 3 blocks per stage, widths 160/320/640) on CIFAR-100,
# C3 on the stem output and on the outputs of stages 1 and 2 (grids 16/16/8, k = 8;
#   released-code settings: message includes j = i, ReLU after the residual sum).
#
# Reproduces:
#   seed 001 Table 1: CIFAR-100, row "Wide-ResNet + NC": 26.9M params, 3.87G FLOPs, top-1 acc 78.34
#   seed 002 CIFAR-100 table, row "Wide-ResNet + C3": 26.93M params, 3.87G FLOPs, top-1 acc 78.34
#
# Set for 1 GPU x 128 images (released C3 recipe, _base_/classification/cifar100_resnet.py):
#   python tools/train.py configs/wrn22_10_c3_cifar100.py
_base_ = [
    './_base_/classification/cifar100_wrn22_10.py',
    './_base_/classification/cifar_blocks.py',
]
model = dict(backbone=dict(plugins=_base_.c3_cifar_plugins))
