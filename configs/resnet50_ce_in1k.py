# ResNet-50 on ImageNet-1k, CE (r = 4, groups of 16) after the last BN of every block
#   and after the stem BN (released ResNet-v1-CE).
#
# Reproduces:
#   no number in the seeds for this row (the seed gives the method, not a result)
#
# Set for 8 GPUs x 32 images (seed 004 appendix G: mmpretrain's ResNet recipe + label smoothing 0.1):
#   bash tools/dist_train.sh configs/resnet50_ce_in1k.py 8
_base_ = [
    './_base_/classification/imagenet_resnet.py',
    './_base_/classification/imagenet_blocks.py',
]
model = dict(backbone=dict(depth=50, plugins=_base_.ce_bottleneck_plugins), head=dict(in_channels=2048, loss=_base_.ce_label_smoothing_loss))
