# ResNet-50 on ImageNet-1k, SE (reduction 16, no bias) in every block.
#
# Reproduces:
#   seed 002 ImageNet table, row "ResNet-50 + SE": 28.1M params, top-1 err 22.51, top-5 err 6.43
#
# Set for 8 GPUs x 32 images (mmpretrain's ResNet recipe; the seeds state none):
#   bash tools/dist_train.sh configs/resnet50_se_in1k.py 8
_base_ = [
    './_base_/classification/imagenet_resnet.py',
    './_base_/classification/imagenet_blocks.py',
]
model = dict(backbone=dict(depth=50, plugins=_base_.se_bottleneck_plugins))
