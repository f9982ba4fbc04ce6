# DeepLab-v2, ResNet-101 (output stride 8), Pascal VOC 2012 + SBD aug:
# the baseline of the C3 segmentation experiment, no block in stage 4.
#
# Reported on VOC 2012 val (single scale, no CRF): mIoU 75.2, mean accuracy
# 85.3 (C3 paper, segmentation table; author response Table 3).
#
# Run on 8 GPUs, 1 image per GPU (total batch 8, lr 2e-4, 25k iterations;
# the linear rescaling of the recipe's batch 10, lr 2.5e-4, 20k iterations):
#   tools/dist_train.sh configs/deeplabv2_r101_baseline_voc12aug.py 8
#   tools/dist_test.sh  configs/deeplabv2_r101_baseline_voc12aug.py \
#       work_dirs/deeplabv2_r101_baseline_voc12aug/iter_25000.pth 8
# The recipe's exact batch 10 (5 GPUs x 2 images; lr scaled to 2.5e-4):
#   tools/dist_train.sh configs/deeplabv2_r101_baseline_voc12aug.py 5 \
#       --auto-scale-lr --cfg-options train_dataloader.batch_size=2 \
#       train_cfg.max_iters=20000
# Data: data/VOCdevkit/VOC2012 with SegmentationClassAug and
# ImageSets/Segmentation/aug.txt as prepared by mmseg's
# tools/dataset_converters/voc_aug.py. Recipe details: see
# configs/_base_/deeplabv2_r101_voc12aug.py.
_base_ = './_base_/deeplabv2_r101_voc12aug.py'
