# ResNeXt-50 with 4 groups of width 32 (the seeds' 34.93M baseline, not 32x4d) on ImageNet-1k,
# no block.
#
# Reproduces:
#   seed 001 Table 2: ImageNet, row "ResNeXt-50": 34.93M params, 5.89G FLOPs, top-1 err 23.85, top-5 err 7.12
#   seed 002 ImageNet table, row "ResNeXt-50": 34.9M params, top-1 err 23.85, top-5 err 7.12
#
# Set for 8 GPUs x 32 images (mmpretrain's ResNet recipe; the seeds state none):
#   bash tools/dist_train.sh configs/resnext50_4x32d_baseline_in1k.py 8
_base_ = [
    './_base_/classification/imagenet_resnext50_4x32d.py',
    './_base_/classification/imagenet_blocks.py',
]
