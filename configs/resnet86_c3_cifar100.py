# CIFAR ResNet-86 on CIFAR-100, C3 on the stem output and on the outputs of stages 1 and 2 (grids 16/16/8, k = 8;
#   released-code settings: message includes j = i, ReLU after the residual sum).
#
# Reproduces:
#   seed 002 Model Size table, row "ResNet-86 + C3": 1.41M params
#
# Set for 1 GPU x 128 images (released C3 recipe, _base_/classification/cifar100_resnet.py):
#   python tools/train.py configs/resnet86_c3_cifar100.py
_base_ = [
    './_base_/classification/cifar100_resnet.py',
    './_base_/classification/cifar_blocks.py',
]
model = dict(backbone=dict(depth=86, plugins=_base_.c3_cifar_plugins))
