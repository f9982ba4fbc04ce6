# Ablation (seed 002): ResNet-20 + C3 on CIFAR-100, encoder/decoder only (message_passing=False: zbar = z).
#
# Reproduces:
#   seed 002 Enc-Dec / Mess. Passing ablation, row "ResNet-20 Enc-Dec only": top-1 acc 68.70
#
# Set for 1 GPU x 128 images (released C3 recipe, _base_/classification/cifar100_resnet.py):
#   python tools/train.py configs/resnet20_c3_encdec_cifar100.py
_base_ = [
    './_base_/classification/cifar100_resnet.py',
    './_base_/classification/cifar_blocks.py',
]
model = dict(backbone=dict(depth=20, plugins=_base_.c3_cifar_encdec_plugins))
