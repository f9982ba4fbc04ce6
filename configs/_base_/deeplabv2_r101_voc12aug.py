# DeepLab-v2 recipe shared by configs/deeplabv2_r101_*_voc12aug.py.
#
# Chen et al., "DeepLab: Semantic Image Segmentation with Deep Convolutional
# Nets, Atrous Convolution, and Fully Connected CRFs", TPAMI 2018 (arXiv
# 1606.00915): ResNet-101 at output stride 8, ASPP-L head (four 3x3 convs,
# dilation 6/12/18/24, score maps summed), no CRF. Trained on VOC 2012 train
# + SBD ("train_aug"), evaluated on VOC 2012 val (1,449 images) by mIoU and
# mean accuracy.
#
# Layout for 8 GPUs x 1 image (total batch 8): the recipe's batch 10 does not
# divide over 8 GPUs, so the learning rate is scaled linearly (2.5e-4 x 8/10
# = 2e-4) and the schedule lengthened to the same number of images (20k x 10
# = 25k x 8, about 19 epochs). The exact batch-10 recipe (5 GPUs x 2) is one
# command line away (see the configs' headers; auto_scale_lr below).
#
# The backbone is frozen except stage 4 (stem and stages 1-3 fixed, every BN
# frozen: running statistics and affine parameters), as in the C3 and SE
# segmentation experiments. Blocks are added to stage 4 by the configs.
_base_ = [
    'mmseg::_base_/datasets/pascal_voc12_aug.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_20k.py',
]
custom_imports = dict(imports=['mmc3'], allow_failed_imports=False)

crop_size = (321, 321)
# the stage-4 map of a crop at output stride 8 (stride-2 stem conv, max-pool
# and stage 2, each rounding up): ceil(crop / 8) = 41 x 41. The grid of C3 and
# the gather of parametric global GE are this size.
stage4_size = ((crop_size[0] + 7) // 8, (crop_size[1] + 7) // 8)
# BN is frozen everywhere, so it never computes batch statistics and SyncBN
# would only add communication.
norm_cfg = dict(type='BN', requires_grad=False)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,  # after normalisation: pads with the mean colour, as DeepLab
    seg_pad_val=255,
    size=crop_size,
    # test images smaller than a window are padded up to it, so that every
    # sliding window (hence every stage-4 map) has the training size
    test_cfg=dict(size=crop_size))
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        # mmseg's ResNetV1c (deep stem, the stem of mmseg's pretrained
        # weights), with stacked plugins chained
        type='ChainedPluginResNetV1c',
        depth=101,
        stem_channels=64,
        base_channels=64,
        num_stages=4,
        out_indices=(3, ),
        strides=(1, 2, 1, 1),  # output stride 8
        dilations=(1, 1, 2, 4),
        contract_dilation=False,  # DeepLab-v2: every block of a stage dilated
        frozen_stages=3,
        norm_cfg=norm_cfg,
        norm_eval=True,
        style='pytorch',
        init_cfg=dict(
            type='Pretrained', checkpoint='open-mmlab://resnet101_v1c')),
    decode_head=dict(
        type='DeepLabV2Head',
        in_channels=2048,
        in_index=0,
        dilations=(6, 12, 18, 24),
        num_classes=21,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    # 321x321 windows, stride 214 (two thirds): on VOC (long side 500) 2x2
    # windows; scores of overlapping windows are averaged
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(214, 214)))

# Data: random scale 0.5-1.5 of the original image, 321x321 random crop
# (padded with the mean colour / ignore label when smaller), horizontal flip;
# no colour jitter. VOC images have a long side of 500 pixels, so rescaling
# the long side to 500 x [0.5, 1.5] is DeepLab-v2's scaling of the original.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(
        type='RandomResize',
        scale=(500, 500),
        ratio_range=(0.5, 1.5),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
# Test at the original size (no resize), whole image scored by windows.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
# train_aug = VOC 2012 train.txt (1,464 images, VOC labels) + aug.txt (the
# 9,118 SBD images outside VOC train/val, SBD labels in SegmentationClassAug)
# = 10,582 images, as written by mmseg's tools/dataset_converters/voc_aug.py.
# mmseg's own dataset dicts (dataset_train, dataset_aug of its
# pascal_voc12_aug base: same data_root, prefixes and lists), with this
# recipe's pipeline.
train_dataloader = dict(
    batch_size=1,
    num_workers=4,
    dataset=dict(
        type='ConcatDataset',
        datasets=[
            dict(_base_.dataset_train, pipeline=train_pipeline),
            dict(_base_.dataset_aug, pipeline=train_pipeline),
        ]))
val_dataloader = dict(batch_size=1, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
# aAcc, mIoU and mAcc (mean per-class accuracy)
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

# SGD, momentum 0.9, weight decay 5e-4, poly decay (power 0.9) to zero.
# Classifier (the four ASPP convs) at 10x the learning rate, its biases at
# 20x without weight decay, as DeepLab-v2's fc1_voc12_c* layers.
max_iters = 25000
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=2e-4, momentum=0.9, weight_decay=5e-4),
    clip_grad=None,
    paramwise_cfg=dict(
        custom_keys={
            'decode_head.aspp': dict(lr_mult=10.),
            'decode_head.aspp.0.bias': dict(lr_mult=20., decay_mult=0.),
            'decode_head.aspp.1.bias': dict(lr_mult=20., decay_mult=0.),
            'decode_head.aspp.2.bias': dict(lr_mult=20., decay_mult=0.),
            'decode_head.aspp.3.bias': dict(lr_mult=20., decay_mult=0.),
        }))
# `tools/train.py --auto-scale-lr` scales lr by (GPUs x batch_size) / 8.
auto_scale_lr = dict(enable=False, base_batch_size=8)
param_scheduler = [
    dict(type='PolyLR', eta_min=0., power=0.9, begin=0, by_epoch=False)
]  # `end` defaults to max_iters
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=5000)
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=5000))
