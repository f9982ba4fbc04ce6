# Ablation (seed 003 Table 1): ResNet-50 + parameter-free GE-theta- (extent 4, max pooling)
# after the last BN of all 16 bottlenecks, on ImageNet-1k.
#
# Reproduces:
#   seed 003 Table 1: GE-theta- pooling (ResNet-50), row "(E4, max)": top-1 err 23.10, top-5 err 6.39
#
# Set for 8 GPUs x 32 images (mmpretrain's ResNet recipe; the seeds state none):
#   bash tools/dist_train.sh configs/resnet50_ge_e4_max_in1k.py 8
_base_ = [
    './_base_/classification/imagenet_resnet.py',
    './_base_/classification/imagenet_blocks.py',
]
model = dict(backbone=dict(depth=50, plugins=_base_.ge_e4_max_plugins))
