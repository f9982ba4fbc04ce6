# CIFAR ResNet-56 on CIFAR-100, no block.
#
# Reproduces:
#   seed 002 CIFAR-100 table, row "ResNet-56": 0.86M params, 128.2M FLOPs, top-1 acc 71.05
#   seed 002 Model Size table, row "ResNet-56": 0.86M params
#
# Set for 1 GPU x 128 images (released C3 recipe, _base_/classification/cifar100_resnet.py):
#   python tools/train.py configs/resnet56_baseline_cifar100.py
_base_ = [
    './_base_/classification/cifar100_resnet.py',
    './_base_/classification/cifar_blocks.py',
]
model = dict(backbone=dict(depth=56))
