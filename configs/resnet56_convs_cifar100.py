# CIFAR ResNet-56 on CIFAR-100, the "+Convs" control: conv3x3(C->4C, bias)-ReLU-conv3x3(4C->C) at the three C3 positions.
#
# Reproduces:
#   no number in the seeds for this row (the seed gives the method, not a result)
#
# Set for 1 GPU x 128 images (released C3 recipe, _base_/classification/cifar100_resnet.py):
#   python tools/train.py configs/resnet56_convs_cifar100.py
_base_ = [
    './_base_/classification/cifar100_resnet.py',
    './_base_/classification/cifar_blocks.py',
]
model = dict(backbone=dict(depth=56, plugins=_base_.convs_cifar_plugins))
