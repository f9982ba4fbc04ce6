# ResNet-50 on ImageNet-1k, no block.
#
# Reproduces:
#   seed 002 ImageNet table, row "ResNet-50": 25.6M params, top-1 err 23.61, top-5 err 7.27
#   seed 003 Table 1: GE-theta- pooling (ResNet-50), row "ResNet-50": top-1 err 23.30, top-5 err 6.55
#
# Set for 8 GPUs x 32 images (mmpretrain's ResNet recipe; the seeds state none):
#   bash tools/dist_train.sh configs/resnet50_baseline_in1k.py 8
_base_ = [
    './_base_/classification/imagenet_resnet.py',
    './_base_/classification/imagenet_blocks.py',
]
model = dict(backbone=dict(depth=50))
