# ResNet-18 on ImageNet-1k, SE (reduction 16, no bias) in every block.
#
# Reproduces:
#   seed 002 ImageNet table, row "ResNet-18 + SE": 11.8M params, top-1 err 30.15, top-5 err 10.72
#
# Set for 8 GPUs x 32 images (mmpretrain's ResNet recipe; the seeds state none):
#   bash tools/dist_train.sh configs/resnet18_se_in1k.py 8
_base_ = [
    './_base_/classification/imagenet_resnet.py',
    './_base_/classification/imagenet_blocks.py',
]
model = dict(backbone=dict(depth=18, plugins=_base_.se_basic_plugins), head=dict(in_channels=512))
