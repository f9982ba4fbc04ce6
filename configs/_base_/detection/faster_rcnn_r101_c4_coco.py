# Faster R-CNN with a ResNet-101 C4 host, COCO: the common base of
# configs/faster_rcnn_r101_{baseline,se,c3,ce,ge}.py.
#
# Delta over mmdet's faster-rcnn_r50-caffe_c4-1x_coco (12 epochs, SGD lr 0.02,
# batch 16, 1333x800):
# - ResNet-101 (caffe style, Detectron2's ImageNet weights) instead of R-50;
# - the backbone runs stem + stages 1-3 and all of them are frozen
#   (frozen_stages=3): "stage 4 of ResNet-101 with lower layers fixed";
# - stage 4 is the RoI shared head, mmc3's PluginResLayer: the upstream head
#   plus a `plugins` list (empty here; each leaf config adds its blocks) and
#   the same ImageNet checkpoint for the stage-4 weights. Stage 4, the RPN and
#   the box head train; all BNs stay frozen (upstream requires_grad=False,
#   norm_eval=True).
# Batch: 2 images per GPU; with 8 GPUs (tools/dist_train.sh CFG 8) that is the
# recipe's total batch of 16 for lr 0.02.
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50-caffe_c4-1x_coco.py'
custom_imports = dict(imports=['mmc3'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        depth=101,
        frozen_stages=3,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='open-mmlab://detectron2/resnet101_caffe')),
    roi_head=dict(
        shared_head=dict(
            type='PluginResLayer',
            depth=101,
            plugins=None,
            init_cfg=dict(
                type='Pretrained',
                checkpoint='open-mmlab://detectron2/resnet101_caffe'))))

train_dataloader = dict(batch_size=2)
auto_scale_lr = dict(enable=False, base_batch_size=16)
