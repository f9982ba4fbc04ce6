# MobileNetV2 1.0x on ImageNet-1k, SE (reduction 16, no bias) after the projection BN of every block.
#
# Reproduces:
#   seed 001 Table 2: ImageNet, row "MobileNet-v2 + SE": 3.53M params, 0.32G FLOPs, top-1 err 26.66, top-5 err 8.86
#
# Set for 8 GPUs x 32 images (mmpretrain's MobileNetV2 recipe; the seeds state none):
#   bash tools/dist_train.sh configs/mobilenet_v2_se_in1k.py 8
_base_ = [
    './_base_/classification/imagenet_mobilenet_v2.py',
    './_base_/classification/imagenet_blocks.py',
]
model = dict(backbone=dict(plugins=_base_.se_mobilenet_plugins))
