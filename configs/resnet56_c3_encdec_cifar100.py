# Ablation (seed 002): ResNet-56 + C3 on CIFAR-100, encoder/decoder only (message_passing=False: zbar = z).
#
# Reproduces:
#   seed 002 Enc-Dec / Mess. Passing ablation, row "ResNet-56 Enc-Dec only": top-1 acc 71.95
#
# Set for 1 GPU x 128 images (released C3 recipe, _base_/classification/cifar100_resnet.py):
#   python tools/train.py configs/resnet56_c3_encdec_cifar100.py
_base_ = [
    './_base_/classification/cifar100_resnet.py',
    './_base_/classification/cifar_blocks.py',
]
model = dict(backbone=dict(depth=56, plugins=_base_.c3_cifar_encdec_plugins))
