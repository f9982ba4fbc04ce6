# DeepLab-v2 recipe shrunk for a CPU quickstart on the synthetic shapes set
# (tools/misc/generate_synthetic_data.py --size 160 128, VOC 2012 layout in
# $MMC3_QUICKSTART_DATA, default work_dirs/quickstart/data). Same model
# structure as
# configs/deeplabv2_r101_*_voc12aug.py (output stride 8, ASPP-L head, stem and
# stages 1-3 frozen, BN frozen, 10x/20x classifier learning rates, sliding-
# window test) with a ResNet-50 of base width 8, no pretrained weights,
# 128x128 crops (16x16 stage-4 maps: a C3 grid_size of (16, 16)) and a short
# schedule at a from-scratch learning rate.
_base_ = './deeplabv2_r101_voc12aug.py'

crop_size = (128, 128)
stage4_size = ((crop_size[0] + 7) // 8, (crop_size[1] + 7) // 8)  # 16 x 16
# the generated data: $MMC3_QUICKSTART_DATA (set by tools/quickstart.sh to
# $QUICKSTART_OUT/data), else work_dirs/quickstart/data
data_root = '{{$MMC3_QUICKSTART_DATA:work_dirs/quickstart/data}}/VOCdevkit/VOC2012'
model = dict(
    data_preprocessor=dict(size=crop_size, test_cfg=dict(size=crop_size)),
    backbone=dict(
        depth=50, stem_channels=8, base_channels=8, init_cfg=None),
    decode_head=dict(in_channels=256),
    test_cfg=dict(crop_size=crop_size, stride=(86, 86)))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(
        type='RandomResize',
        scale=(160, 160),  # the generated images' long side
        ratio_range=(0.5, 1.5),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(datasets=[
        dict(
            type='PascalVOCDataset',
            data_root=data_root,
            data_prefix=dict(
                img_path='JPEGImages', seg_map_path='SegmentationClass'),
            ann_file='ImageSets/Segmentation/train.txt',
            pipeline=train_pipeline),
    ]))
val_dataloader = dict(
    num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root))
test_dataloader = val_dataloader

max_iters = 200
optim_wrapper = dict(optimizer=dict(lr=0.01))
auto_scale_lr = dict(base_batch_size=4)
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(
    checkpoint=dict(interval=max_iters),
    logger=dict(interval=20))
# A fixed seed: without one mmengine draws a new seed per run, and two runs
# of the same quickstart gave mIoU 51.2 and 28.0. With it, a rerun on the
# same machine repeats the run (tests/tools/test_seg_e2e.py checks this).
randomness = dict(seed=0)
