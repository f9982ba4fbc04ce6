# Ablation (seed 000): ResNet-20 + C3 on CIFAR-100 with bottleneck ratio k = 1
# (k = 8 is resnet20_c3_cifar100.py).
#
# Reproduces:
#   seed 000 Table 1: bottleneck ratio (ResNet-20), row "k = 1": top-1 acc 69.20
#
# Set for 1 GPU x 128 images (released C3 recipe, _base_/classification/cifar100_resnet.py):
#   python tools/train.py configs/resnet20_c3_k1_cifar100.py
_base_ = [
    './_base_/classification/cifar100_resnet.py',
    './_base_/classification/cifar_blocks.py',
]
model = dict(backbone=dict(depth=20, plugins=_base_.c3_cifar_k1_plugins))
