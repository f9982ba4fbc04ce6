# Faster R-CNN, ResNet-101 C4, PASCAL VOC 07+12: C3 blocks (7x7 grid, k = 8)
# after conv3 of every stage-4 bottleneck.
#
# Recipe: mmdet's faster-rcnn_r50-caffe-c4_ms-18k_voc0712 with R-101
# (07+12 trainval, VOC07 test, 18k iterations, lr 0.02, batch 16).
# Expected (C3 paper, Yang et al., NeurIPS 2019, detection table, Pascal
# VOC mAP): FRCNN + C3 75.6 (FRCNN 74.6, + SE 74.8, + C3 75.6).
# The paper gives no schedule; this recipe's absolute numbers differ,
# compare the gain over the baseline config.
#
# Blocks: stage 4 is the RoI shared head (PluginResLayer, run per RoI on
# 14x14 RoIAlign features -> 7x7); stem + stages 1-3 frozen.
# Set for 8 GPUs, 2 images per GPU (total batch 16):
#   tools/dist_train.sh configs/faster_rcnn_r101_c3_voc0712.py 8
_base_ = [
    './_base_/detection/faster_rcnn_r101_c4_voc0712.py',
    './_base_/blocks/c3.py'
]
model = dict(
    roi_head=dict(shared_head=dict(plugins=_base_.c3_stage4_plugins)))
