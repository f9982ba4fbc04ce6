# CIFAR ResNet-74 on CIFAR-100, no block.
#
# Reproduces:
#   seed 002 Model Size table, row "ResNet-74": 1.15M params
#
# Set for 1 GPU x 128 images (released C3 recipe, _base_/classification/cifar100_resnet.py):
#   python tools/train.py configs/resnet74_baseline_cifar100.py
_base_ = [
    './_base_/classification/cifar100_resnet.py',
    './_base_/classification/cifar_blocks.py',
]
model = dict(backbone=dict(depth=74))
