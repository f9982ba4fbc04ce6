# MobileNetV2 1.0x on ImageNet-1k, no block.
#
# Reproduces:
#   seed 001 Table 2: ImageNet, row "MobileNet-v2": 3.50M params, 0.32G FLOPs, top-1 err 28.12, top-5 err 9.71
#
# Set for 8 GPUs x 32 images (mmpretrain's MobileNetV2 recipe; the seeds state none):
#   bash tools/dist_train.sh configs/mobilenet_v2_baseline_in1k.py 8
_base_ = [
    './_base_/classification/imagenet_mobilenet_v2.py',
    './_base_/classification/imagenet_blocks.py',
]
model = dict(backbone=dict(plugins=None))
