# Wide-ResNet WRN-22-10 (the released code's "20": 3 blocks per stage, widths 160/320/640) on CIFAR-100,
# no block.
#
# Reproduces:
#   seed 001 Table 1: CIFAR-100, row "Wide-ResNet": 26.9M params, 3.84G FLOPs, top-1 acc 77.96
#   seed 002 CIFAR-100 table, row "Wide-ResNet": 26.86M params, 3.84G FLOPs, top-1 acc 77.96
#
# Set for 1 GPU x 128 images (released C3 recipe, _base_/classification/cifar100_resnet.py):
#   python tools/train.py configs/wrn22_10_baseline_cifar100.py
_base_ = [
    './_base_/classification/cifar100_wrn22_10.py',
    './_base_/classification/cifar_blocks.py',
]
