# ResNeXt-50 with 4 groups of width 32 (the seeds' 34.93M baseline, not 32x4d) on ImageNet-1k,
# SE (reduction 16, no bias) in every block.
#
# Reproduces:
#   seed 001 Table 2: ImageNet, row "ResNeXt-50 + SE": 37.45M params, 5.90G FLOPs, top-1 err 22.90, top-5 err 6.44
#   seed 002 ImageNet table, row "ResNeXt-50 + SE": 37.5M params, top-1 err 22.90, top-5 err 6.44
#
# Set for 8 GPUs x 32 images (mmpretrain's ResNet recipe; the seeds state none):
#   bash tools/dist_train.sh configs/resnext50_4x32d_se_in1k.py 8
_base_ = [
    './_base_/classification/imagenet_resnext50_4x32d.py',
    './_base_/classification/imagenet_blocks.py',
]
model = dict(backbone=dict(plugins=_base_.se_bottleneck_plugins))
