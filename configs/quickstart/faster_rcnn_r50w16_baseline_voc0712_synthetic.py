# Quickstart baseline: configs/faster_rcnn_r101_baseline_voc0712.py (Faster
# R-CNN, ResNet C4, stage 4 = mmc3's PluginResLayer RoI head) shrunk to train
# in a few minutes on two CPU processes on the synthetic shapes written by
#   python tools/misc/generate_synthetic_data.py \
#       --out work_dirs/quickstart/data --size 160 128
# (VOCdevkit/VOC2007 + VOC2012 trainval, VOC2007 test, 20 VOC classes).
# Run by tools/quickstart.sh:
#   tools/dist_train.sh configs/quickstart/faster_rcnn_r50w16_baseline_voc0712_synthetic.py 2
# The block variants inherit this file and add their stage-4 plugins, as the
# full configs do.
#
# What changes, and why:
# - width: base_channels 16 (stage-4 output 512 instead of 2048), ResNet-50
#   depth (stage 4 keeps its 3 bottlenecks, so the blocks' places are kept);
# - no ImageNet weights (no download): every stage trains and BN learns
#   (frozen random stages would give a fixed random feature extractor);
# - images at their generated size (160x128), anchors 16-64 px, fewer
#   proposals and RoIs;
# - a short iteration schedule (150 iterations) with warm-up, one evaluation
#   at the end;
# - the VOC2007 + VOC2012 ConcatDataset is restated with the shrunk pipeline
#   (ignore_keys=['dataset_type'] as in mmdet's voc0712 dataset base).
_base_ = '../faster_rcnn_r101_baseline_voc0712.py'
# the generated data: $MMC3_QUICKSTART_DATA (set by tools/quickstart.sh to
# $QUICKSTART_OUT/data), else work_dirs/quickstart/data
data_root = '{{$MMC3_QUICKSTART_DATA:work_dirs/quickstart/data}}/VOCdevkit/'
base_channels = 16
norm_cfg = dict(type='BN', requires_grad=True)
max_iters = 150

model = dict(
    backbone=dict(
        depth=50,
        base_channels=base_channels,
        frozen_stages=-1,
        norm_cfg=norm_cfg,
        norm_eval=False,
        init_cfg=None),
    rpn_head=dict(
        in_channels=base_channels * 4 * 4,
        feat_channels=base_channels * 4 * 4,
        anchor_generator=dict(scales=[1, 2, 4])),
    roi_head=dict(
        shared_head=dict(
            depth=50,
            base_channels=base_channels,
            norm_cfg=norm_cfg,
            norm_eval=False,
            init_cfg=None),
        bbox_roi_extractor=dict(out_channels=base_channels * 4 * 4),
        bbox_head=dict(in_channels=base_channels * 8 * 4)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=1000, max_per_img=200),
        rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=100)))

image_scale = (160, 128)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        _delete_=True,
        type='ConcatDataset',
        # VOCDataset records its year in the metainfo; the two years differ
        ignore_keys=['dataset_type'],
        datasets=[
            dict(
                type='VOCDataset',
                data_root=data_root,
                ann_file=f'VOC{year}/ImageSets/Main/trainval.txt',
                data_prefix=dict(sub_data_root=f'VOC{year}/'),
                filter_cfg=dict(filter_empty_gt=True, min_size=32),
                pipeline=train_pipeline) for year in (2007, 2012)
        ]))
val_dataloader = dict(
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=50),
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False,
         milestones=[int(max_iters * 0.8)], gamma=0.1)
]
optim_wrapper = dict(optimizer=dict(lr=0.02))
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(by_epoch=False, interval=max_iters))
# A fixed seed: without one mmengine draws a new seed per run, and two runs
# of the same quickstart gave mIoU 51.2 and 28.0. With it, a rerun on the
# same machine repeats the run (tests/tools/test_seg_e2e.py checks this).
randomness = dict(seed=0)
