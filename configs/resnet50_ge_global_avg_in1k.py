# Ablation (seed 003 Table 1): ResNet-50 + parameter-free GE-theta- (global extent, avg pooling)
# after the last BN of all 16 bottlenecks, on ImageNet-1k.
#
# Reproduces:
#   seed 003 Table 1: GE-theta- pooling (ResNet-50), row "(global, avg)": top-1 err 22.14, top-5 err 6.24
#
# Set for 8 GPUs x 32 images (mmpretrain's ResNet recipe; the seeds state none):
#   bash tools/dist_train.sh configs/resnet50_ge_global_avg_in1k.py 8
_base_ = [
    './_base_/classification/imagenet_resnet.py',
    './_base_/classification/imagenet_blocks.py',
]
model = dict(backbone=dict(depth=50, plugins=_base_.ge_global_avg_plugins))
