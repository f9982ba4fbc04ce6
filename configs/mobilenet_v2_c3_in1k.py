# MobileNetV2 1.0x on ImageNet-1k, C3 on the outputs of layers 4-6, 7x7 grids (RECONSTRUCTED
#   placement, see _base_/classification/imagenet_blocks.py).
#
# Reproduces:
#   seed 001 Table 2: ImageNet, row "MobileNet-v2 + NC": 3.51M params, 0.32G FLOPs, top-1 err 26.29, top-5 err 9.09
#
# Set for 8 GPUs x 32 images (mmpretrain's MobileNetV2 recipe; the seeds state none):
#   bash tools/dist_train.sh configs/mobilenet_v2_c3_in1k.py 8
_base_ = [
    './_base_/classification/imagenet_mobilenet_v2.py',
    './_base_/classification/imagenet_blocks.py',
]
model = dict(backbone=dict(plugins=_base_.c3_mobilenet_plugins))
