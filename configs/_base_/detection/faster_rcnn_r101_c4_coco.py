# Faster R-CNN with a ResNet-101 C4 host, COCO: the common base of
# configs/faster_rcnn_r101_{baseline,se,c3,ce,ge}.py.
#
# Delta over mmdet's faster-rcnn_r50-caffe_c4-1x_coco (12 epochs, SGD lr 0.02,
# batch 16, 1333x800):
# - the ResNet-101 C4 host of ./r101_c4_host.py: R-101 caffe weights,
#   stem + stages 1-3 frozen, stage 4 = PluginResLayer RoI head (blocks added
#   by each leaf config) loading the stage-4 ImageNet weights.
# Batch: 2 images per GPU; with 8 GPUs (tools/dist_train.sh CFG 8) that is the
# recipe's total batch of 16 for lr 0.02.
_base_ = [
    'mmdet::faster_rcnn/faster-rcnn_r50-caffe_c4-1x_coco.py',
    './r101_c4_host.py'
]
custom_imports = dict(imports=['mmc3'], allow_failed_imports=False)

model = _base_.r101_c4_host

train_dataloader = dict(batch_size=2)
auto_scale_lr = dict(enable=False, base_batch_size=16)
