# Faster R-CNN, ResNet-101 C4, COCO 2017: GE-theta+ blocks (global extent, 7x7
# gather) after conv3 of every stage-4 bottleneck.
#
# Recipe: mmdet's faster-rcnn_r50-caffe_c4-1x_coco with R-101
# (12 epochs, lr 0.02, batch 16), see the base file.
# Expected: no number in the source documents for this block on
# detection; compare with faster_rcnn_r101_baseline.py (C3 paper: FRCNN
# 33.9, + SE 34.3, + C3 34.8 COCO mAP).
#
# Blocks: stage 4 is the RoI shared head (PluginResLayer, run per RoI on
# 14x14 RoIAlign features -> 7x7); stem + stages 1-3 frozen.
# Set for 8 GPUs, 2 images per GPU (total batch 16):
#   tools/dist_train.sh configs/faster_rcnn_r101_ge.py 8
_base_ = [
    './_base_/detection/faster_rcnn_r101_c4_coco.py',
    './_base_/blocks/ge.py'
]
model = dict(
    roi_head=dict(shared_head=dict(plugins=_base_.ge_stage4_plugins)))
