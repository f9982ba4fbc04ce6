# ResNet-101 on ImageNet-1k, no block.
#
# Reproduces:
#   seed 002 ImageNet table, row "ResNet-101": 44.6M params, top-1 err 22.48, top-5 err 6.18
#
# Set for 8 GPUs x 32 images (mmpretrain's ResNet recipe; the seeds state none):
#   bash tools/dist_train.sh configs/resnet101_baseline_in1k.py 8
_base_ = [
    './_base_/classification/imagenet_resnet.py',
    './_base_/classification/imagenet_blocks.py',
]
model = dict(backbone=dict(depth=101))
