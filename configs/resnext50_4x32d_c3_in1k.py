# ResNeXt-50 with 4 groups of width 32 (the seeds' 34.93M baseline, not 32x4d) on ImageNet-1k,
# C3 on the outputs of stages 1-3 (RECONSTRUCTED placement,
#   see _base_/classification/imagenet_blocks.py for the arithmetic).
#
# Reproduces:
#   seed 001 Table 2: ImageNet, row "ResNeXt-50 + NC": 35.29M params, 5.89G FLOPs, top-1 err 22.51, top-5 err 6.23
#   seed 002 ImageNet table, row "ResNeXt-50 + C3": 35.3M params, top-1 err 22.51, top-5 err 6.23
#
# Set for 8 GPUs x 32 images (mmpretrain's ResNet recipe; the seeds state none):
#   bash tools/dist_train.sh configs/resnext50_4x32d_c3_in1k.py 8
_base_ = [
    './_base_/classification/imagenet_resnext50_4x32d.py',
    './_base_/classification/imagenet_blocks.py',
]
model = dict(backbone=dict(plugins=_base_.c3_imagenet_plugins))
