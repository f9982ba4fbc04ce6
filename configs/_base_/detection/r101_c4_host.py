# The ResNet-101 C4 host shared by the Faster and Mask R-CNN bases: a model
# delta over mmdet's R-50 caffe C4 recipes, used as
#     model = _base_.r101_c4_host
# (a dict variable, because two bases may not both define `model`).
# - ResNet-101 (caffe style, Detectron2's ImageNet weights) instead of R-50;
# - the backbone runs stem + stages 1-3 and all of them are frozen
#   (frozen_stages=3): "stage 4 of ResNet-101 with lower layers fixed";
# - stage 4 is the RoI shared head, mmc3's PluginResLayer: the upstream head
#   plus a `plugins` list (empty here; each leaf config adds its blocks) and
#   the same ImageNet checkpoint for the stage-4 weights. Stage 4, the RPN and
#   the RoI heads train; all BNs stay frozen (upstream requires_grad=False,
#   norm_eval=True).
r101_caffe = 'open-mmlab://detectron2/resnet101_caffe'
r101_c4_host = dict(
    backbone=dict(
        depth=101,
        frozen_stages=3,
        init_cfg=dict(type='Pretrained', checkpoint=r101_caffe)),
    roi_head=dict(
        shared_head=dict(
            type='PluginResLayer',
            depth=101,
            plugins=None,
            init_cfg=dict(type='Pretrained', checkpoint=r101_caffe))))
