# ResNet-18 on ImageNet-1k, C3 on the outputs of stages 1-3 (RECONSTRUCTED placement,
#   see _base_/classification/imagenet_blocks.py for the arithmetic).
#
# Reproduces:
#   seed 002 ImageNet table, row "ResNet-18 + C3": 12.0M params, top-1 err 29.30, top-5 err 10.48
#
# Set for 8 GPUs x 32 images (mmpretrain's ResNet recipe; the seeds state none):
#   bash tools/dist_train.sh configs/resnet18_c3_in1k.py 8
_base_ = [
    './_base_/classification/imagenet_resnet.py',
    './_base_/classification/imagenet_blocks.py',
]
model = dict(backbone=dict(depth=18, plugins=_base_.c3_imagenet_plugins), head=dict(in_channels=512))
