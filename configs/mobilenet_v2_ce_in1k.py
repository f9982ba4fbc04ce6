# MobileNetV2 1.0x on ImageNet-1k, CE after the depthwise BN of every block (seed 004 Fig. 6a).
#
# Reproduces:
#   no number in the seeds for this row (the seed gives the method, not a result)
#
# Set for 8 GPUs x 32 images (seed 004 appendix G: 150 epochs, cosine, lr 0.05, wd 4e-5, label smoothing 0.1):
#   bash tools/dist_train.sh configs/mobilenet_v2_ce_in1k.py 8
_base_ = [
    './_base_/classification/imagenet_mobilenet_v2.py',
    './_base_/classification/imagenet_blocks.py',
]
model = dict(
    backbone=dict(plugins=_base_.ce_mobilenet_plugins),
    head=dict(loss=_base_.ce_label_smoothing_loss))
optim_wrapper = dict(optimizer=dict(lr=0.05, weight_decay=4e-5))
param_scheduler = dict(
    _delete_=True, type='CosineAnnealingLR', by_epoch=True, T_max=150,
    begin=0, end=150)
train_cfg = dict(max_epochs=150)
