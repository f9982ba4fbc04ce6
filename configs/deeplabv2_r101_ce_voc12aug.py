# DeepLab-v2, ResNet-101 (output stride 8), Pascal VOC 2012 + SBD aug, with
# a CE block (channel equilibrium: IR r = 4 + BD whitening in groups of 16)
# after conv3 of every bottleneck of stage 4; stem and stages 1-3 frozen.
# Not in the C3 paper's segmentation table: an added baseline.
#
# CE follows the backbone's train/eval mode, not norm_eval: while training it
# whitens with batch statistics (one 41x41 crop per GPU: 1,681 samples per
# covariance) and updates running averages that it uses at test time.
#
# Run on 8 GPUs, 1 image per GPU (total batch 8, lr 2e-4, 25k iterations:
# the recipe's batch 10, lr 2.5e-4, 20k iterations rescaled linearly):
#   tools/dist_train.sh configs/deeplabv2_r101_ce_voc12aug.py 8
#   tools/dist_test.sh  configs/deeplabv2_r101_ce_voc12aug.py \
#       work_dirs/deeplabv2_r101_ce_voc12aug/iter_25000.pth 8
# The recipe's exact batch 10 (5 GPUs x 2 images; lr scaled to 2.5e-4):
#   tools/dist_train.sh configs/deeplabv2_r101_ce_voc12aug.py 5 \
#       --auto-scale-lr --cfg-options train_dataloader.batch_size=2 \
#       train_cfg.max_iters=20000
# Recipe, data layout and test mode: configs/_base_/deeplabv2_r101_voc12aug.py.
_base_ = [
    './_base_/deeplabv2_r101_voc12aug.py',
    './_base_/blocks/ce.py',
]
model = dict(backbone=dict(plugins=_base_.ce_stage4_plugins))
