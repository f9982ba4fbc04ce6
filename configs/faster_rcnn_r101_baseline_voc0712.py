# Faster R-CNN, ResNet-101 C4, PASCAL VOC 07+12: no block (the plain ResNet-101
# C4 host).
#
# Recipe: mmdet's faster-rcnn_r50-caffe-c4_ms-18k_voc0712 with R-101
# (07+12 trainval, VOC07 test, 18k iterations, lr 0.02, batch 16).
# Expected (C3 paper, Yang et al., NeurIPS 2019, detection table, Pascal
# VOC mAP): FRCNN 74.6 (FRCNN 74.6, + SE 74.8, + C3 75.6).
# The paper gives no schedule; this recipe's absolute numbers differ,
# compare the gain over the baseline config.
#
# Host: stage 4 is the RoI shared head (PluginResLayer, run per RoI on
# 14x14 RoIAlign features -> 7x7); stem + stages 1-3 frozen.
# Set for 8 GPUs, 2 images per GPU (total batch 16):
#   tools/dist_train.sh configs/faster_rcnn_r101_baseline_voc0712.py 8
_base_ = './_base_/detection/faster_rcnn_r101_c4_voc0712.py'
