# CIFAR ResNet-20 on CIFAR-100, the "+Convs" control: conv3x3(C->4C, bias)-ReLU-conv3x3(4C->C) at the three C3 positions.
#
# Reproduces:
#   seed 001 Table 1: CIFAR-100, row "ResNet-20 + Convs": 0.39M params, 104.8M FLOPs, top-1 acc 68.58
#
# Set for 1 GPU x 128 images (released C3 recipe, _base_/classification/cifar100_resnet.py):
#   python tools/train.py configs/resnet20_convs_cifar100.py
_base_ = [
    './_base_/classification/cifar100_resnet.py',
    './_base_/classification/cifar_blocks.py',
]
model = dict(backbone=dict(depth=20, plugins=_base_.convs_cifar_plugins))
