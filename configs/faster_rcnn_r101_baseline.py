# Faster R-CNN, ResNet-101 C4, COCO 2017: no block (the plain ResNet-101 C4
# host).
#
# Recipe: mmdet's faster-rcnn_r50-caffe_c4-1x_coco with R-101
# (12 epochs, lr 0.02, batch 16), see the base file.
# Expected (C3 paper, Yang et al., NeurIPS 2019, detection table, COCO
# mAP): FRCNN 33.9 (FRCNN 33.9, + SE 34.3, + C3 34.8). The
# paper gives no schedule; this recipe's absolute numbers differ (mmdet
# reports coco/bbox_mAP as a fraction), compare the gain over the
# baseline config.
#
# Host: stage 4 is the RoI shared head (PluginResLayer, run per RoI on
# 14x14 RoIAlign features -> 7x7); stem + stages 1-3 frozen.
# Set for 8 GPUs, 2 images per GPU (total batch 16):
#   tools/dist_train.sh configs/faster_rcnn_r101_baseline.py 8
_base_ = './_base_/detection/faster_rcnn_r101_c4_coco.py'
