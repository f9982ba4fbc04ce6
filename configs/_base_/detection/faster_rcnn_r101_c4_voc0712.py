# Faster R-CNN with a ResNet-101 C4 host, PASCAL VOC 07+12: the common base of
# configs/faster_rcnn_r101_{baseline,se,c3,ce,ge}_voc0712.py.
#
# Delta over mmdet's faster-rcnn_r50-caffe-c4_ms-18k_voc0712 (VOC2007+2012
# trainval, multi-scale 480-800 training, 18k iterations, SGD lr 0.02 with
# steps at 12k and 16k, batch 16; evaluated on VOC2007 test, mAP at IoU 0.5):
# - the ResNet-101 C4 host of ./r101_c4_host.py: R-101 caffe weights,
#   stem + stages 1-3 frozen, stage 4 = PluginResLayer RoI head (blocks added
#   by each leaf config) loading the stage-4 ImageNet weights.
# Batch: 2 images per GPU; with 8 GPUs (tools/dist_train.sh CFG 8) that is the
# recipe's total batch of 16 for lr 0.02.
_base_ = [
    'mmdet::pascal_voc/faster-rcnn_r50-caffe-c4_ms-18k_voc0712.py',
    './r101_c4_host.py'
]
custom_imports = dict(imports=['mmc3'], allow_failed_imports=False)

model = _base_.r101_c4_host

train_dataloader = dict(batch_size=2)
auto_scale_lr = dict(enable=False, base_batch_size=16)
