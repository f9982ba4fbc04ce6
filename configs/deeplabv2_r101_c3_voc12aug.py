# DeepLab-v2, ResNet-101 (output stride 8), Pascal VOC 2012 + SBD aug, with
# a C3 block (cross-channel communication, k = 8) after conv3 of every
# bottleneck of stage 4; stem and stages 1-3 frozen.
#
# Reported on VOC 2012 val (single scale, no CRF): mIoU 75.7, mean accuracy
# 86.0 (baseline 75.2 / 85.3, SE 75.6 / 85.6; C3 paper, segmentation table;
# author response Table 3).
#
# Grid: C3's encoder acts on each channel's flattened map, so the block owns
# a fixed grid. A 321x321 crop gives a 41x41 stage-4 map (output stride 8),
# hence grid_size=(41, 41). Testing scores 321x321 sliding windows (stride
# 214; images smaller than a window are padded up to it), so every stage-4
# map C3 sees, in training and in testing, is exactly 41x41 and is never
# resized. (A whole-image test would feed it e.g. 63x47 maps, resized to the
# grid and back.) Each block has 2 * (2 * 1681 * 210 + 210 + 1681) = 1.42M
# parameters, independent of the 2048 channels.
#
# Run on 8 GPUs, 1 image per GPU (total batch 8, lr 2e-4, 25k iterations:
# the recipe's batch 10, lr 2.5e-4, 20k iterations rescaled linearly):
#   tools/dist_train.sh configs/deeplabv2_r101_c3_voc12aug.py 8
#   tools/dist_test.sh  configs/deeplabv2_r101_c3_voc12aug.py \
#       work_dirs/deeplabv2_r101_c3_voc12aug/iter_25000.pth 8
# The recipe's exact batch 10 (5 GPUs x 2 images; lr scaled to 2.5e-4):
#   tools/dist_train.sh configs/deeplabv2_r101_c3_voc12aug.py 5 \
#       --auto-scale-lr --cfg-options train_dataloader.batch_size=2 \
#       train_cfg.max_iters=20000
# Recipe, data layout and test mode: configs/_base_/deeplabv2_r101_voc12aug.py.
_base_ = [
    './_base_/deeplabv2_r101_voc12aug.py',
    './_base_/blocks/c3.py',
]
model = dict(
    backbone=dict(plugins=[
        dict(
            cfg=dict(_base_.c3_block, grid_size=_base_.stage4_size),
            position='after_conv3',
            stages=(False, False, False, True))
    ]))
