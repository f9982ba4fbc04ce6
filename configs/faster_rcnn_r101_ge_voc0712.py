# Faster R-CNN, ResNet-101 C4, PASCAL VOC 07+12: GE-theta+ blocks (global
# extent, 7x7 gather) after conv3 of every stage-4 bottleneck.
#
# Recipe: mmdet's faster-rcnn_r50-caffe-c4_ms-18k_voc0712 with R-101
# (07+12 trainval, VOC07 test, 18k iterations, lr 0.02, batch 16).
# Expected: no number in the source documents for this block on
# detection; compare with faster_rcnn_r101_baseline_voc0712.py (C3
# paper: FRCNN 74.6, + SE 74.8, + C3 75.6 VOC mAP).
#
# Blocks: stage 4 is the RoI shared head (PluginResLayer, run per RoI on
# 14x14 RoIAlign features -> 7x7); stem + stages 1-3 frozen.
# Set for 8 GPUs, 2 images per GPU (total batch 16):
#   tools/dist_train.sh configs/faster_rcnn_r101_ge_voc0712.py 8
_base_ = [
    './_base_/detection/faster_rcnn_r101_c4_voc0712.py',
    './_base_/blocks/ge.py'
]
model = dict(
    roi_head=dict(shared_head=dict(plugins=_base_.ge_stage4_plugins)))
