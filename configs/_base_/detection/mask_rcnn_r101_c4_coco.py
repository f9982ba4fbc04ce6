# Mask R-CNN with a ResNet-101 C4 host, COCO: the common base of
# configs/mask_rcnn_r101_{baseline,se,c3,ce,ge}_coco.py.
#
# Why C4 (not FPN): the blocks go where the detection experiments put them,
# stage 4 of ResNet-101 with the lower layers fixed. In the C4 design stage 4
# is the RoI shared head, so Faster and Mask R-CNN share one host
# (PluginResLayer), one set of block fragments and the same 7x7 stage-4 maps.
#
# Delta over mmdet's mask-rcnn_r50-caffe-c4_1x_coco:
# - the ResNet-101 C4 host of ./r101_c4_host.py: R-101 caffe weights,
#   stem + stages 1-3 frozen, stage 4 = PluginResLayer (blocks added by each
#   leaf config). The upstream Mask R-CNN C4 model loads no pretrained
#   weights into the shared head; here stage 4 loads the ImageNet checkpoint,
#   as in the Faster R-CNN C4 recipe;
# - the CE paper's Mask R-CNN schedule (Shao et al., ICML 2020, appendix G):
#   24 epochs, lr 0.02, x0.1 after epochs 16 and 22, 8 GPUs x 2 images.
# Batch: 2 images per GPU; with 8 GPUs (tools/dist_train.sh CFG 8) that is the
# total batch of 16 for lr 0.02.
_base_ = [
    'mmdet::mask_rcnn/mask-rcnn_r50-caffe-c4_1x_coco.py',
    './r101_c4_host.py'
]
custom_imports = dict(imports=['mmc3'], allow_failed_imports=False)

model = _base_.r101_c4_host

train_dataloader = dict(batch_size=2)
max_epochs = 24
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=500),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[16, 22],
        gamma=0.1)
]
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.0001))
auto_scale_lr = dict(enable=False, base_batch_size=16)
