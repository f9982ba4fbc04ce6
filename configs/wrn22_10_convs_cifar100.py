# Wide-ResNet WRN-22-10 (the released code's "20": 3 blocks per stage, widths 160/320/640) on CIFAR-100,
# the "+Convs" control: conv3x3(C->4C, bias)-ReLU-conv3x3(4C->C) at the three C3 positions.
#
# Reproduces:
#   seed 001 Table 1: CIFAR-100, row "Wide-ResNet + Convs": 36.1M params, 8.05G FLOPs, top-1 acc 75.50
#
# Set for 1 GPU x 128 images (released C3 recipe, _base_/classification/cifar100_resnet.py):
#   python tools/train.py configs/wrn22_10_convs_cifar100.py
_base_ = [
    './_base_/classification/cifar100_wrn22_10.py',
    './_base_/classification/cifar_blocks.py',
]
model = dict(backbone=dict(plugins=_base_.convs_cifar_plugins))
