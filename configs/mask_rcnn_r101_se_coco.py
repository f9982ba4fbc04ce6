# Mask R-CNN, ResNet-101 C4, COCO 2017: SE blocks (ratio 16) after conv3 of
# every stage-4 bottleneck.
#
# Recipe: mmdet's mask-rcnn_r50-caffe-c4_1x_coco with R-101 and the CE
# paper's schedule (24 epochs, lr 0.02, steps at 16 and 22, 8 GPUs x 2
# images; Shao et al., ICML 2020, appendix G), see the base file.
# Expected: the source documents give the schedule but no box/mask AP
# for this setting; compare with mask_rcnn_r101_baseline_coco.py.
#
# Blocks: stage 4 is the RoI shared head (PluginResLayer, run per RoI on
# 14x14 RoIAlign features -> 7x7); stem + stages 1-3 frozen.
# Set for 8 GPUs, 2 images per GPU (total batch 16):
#   tools/dist_train.sh configs/mask_rcnn_r101_se_coco.py 8
_base_ = [
    './_base_/detection/mask_rcnn_r101_c4_coco.py',
    './_base_/blocks/se.py'
]
model = dict(
    roi_head=dict(shared_head=dict(plugins=_base_.se_stage4_plugins)))
