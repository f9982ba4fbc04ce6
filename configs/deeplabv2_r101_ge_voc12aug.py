# DeepLab-v2, ResNet-101 (output stride 8), Pascal VOC 2012 + SBD aug, with
# a GE block (gather-excite, GE-theta+, global extent) after conv3 of every
# bottleneck of stage 4; stem and stages 1-3 frozen. Not in the C3 paper's
# segmentation table: an added baseline.
#
# The global gather is a depthwise conv whose kernel covers the whole map,
# so it is tied to one size: grid_size=(41, 41), the stage-4 map of a 321x321
# crop. Testing scores 321x321 sliding windows (stride 214, small images
# padded up), so every map the block sees is 41x41. Under norm_eval=True the
# gather's BN keeps its initial running statistics (a learnable affine).
#
# Run on 8 GPUs, 1 image per GPU (total batch 8, lr 2e-4, 25k iterations:
# the recipe's batch 10, lr 2.5e-4, 20k iterations rescaled linearly):
#   tools/dist_train.sh configs/deeplabv2_r101_ge_voc12aug.py 8
#   tools/dist_test.sh  configs/deeplabv2_r101_ge_voc12aug.py \
#       work_dirs/deeplabv2_r101_ge_voc12aug/iter_25000.pth 8
# The recipe's exact batch 10 (5 GPUs x 2 images; lr scaled to 2.5e-4):
#   tools/dist_train.sh configs/deeplabv2_r101_ge_voc12aug.py 5 \
#       --auto-scale-lr --cfg-options train_dataloader.batch_size=2 \
#       train_cfg.max_iters=20000
# Recipe, data layout and test mode: configs/_base_/deeplabv2_r101_voc12aug.py.
_base_ = [
    './_base_/deeplabv2_r101_voc12aug.py',
    './_base_/blocks/ge.py',
]
model = dict(
    backbone=dict(plugins=[
        dict(
            cfg=dict(_base_.ge_block, grid_size=_base_.stage4_size),
            position='after_conv3',
            stages=(False, False, False, True))
    ]))
