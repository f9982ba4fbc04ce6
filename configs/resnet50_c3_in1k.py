# ResNet-50 on ImageNet-1k, C3 on the outputs of stages 1-3 (RECONSTRUCTED placement,
#   see _base_/classification/imagenet_blocks.py for the arithmetic).
#
# Reproduces:
#   seed 002 ImageNet table, row "ResNet-50 + C3": 25.9M params, top-1 err 23.19, top-5 err 6.60
#
# Set for 8 GPUs x 32 images (mmpretrain's ResNet recipe; the seeds state none):
#   bash tools/dist_train.sh configs/resnet50_c3_in1k.py 8
_base_ = [
    './_base_/classification/imagenet_resnet.py',
    './_base_/classification/imagenet_blocks.py',
]
model = dict(backbone=dict(depth=50, plugins=_base_.c3_imagenet_plugins))
