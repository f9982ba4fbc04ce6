# Quickstart classification on REAL images: scikit-learn's handwritten
# digits (1,797 8x8 images, 10 classes, shipped in the scikit-learn wheel),
# upsampled to 32x32 and written by tools/misc/prepare_digits.py as an image
# folder that mmpretrain's CustomDataset reads: <data>/digits/{train,test}/
# <class>/*.png, a fixed stratified split of 1,442 / 355 images.
# Model: the CIFAR ResNet-20 of the CIFAR-100 configs with a 10-class head;
# pipeline, model and metric (Accuracy) are mmpretrain's.
# Set for 2 processes x 64 images (tools/quickstart.sh trains it with
# tools/dist_train.sh ... 2), 400 iterations (about 35 epochs), SGD lr 0.1
# with cosine decay.
_base_ = ['./cifar100_resnet.py']
data_root = '{{$MMC3_QUICKSTART_DATA:work_dirs/quickstart/data}}/digits'
data_preprocessor = dict(
    num_classes=10, mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5],
    to_rgb=False)
model = dict(head=dict(num_classes=10, topk=(1, )))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomCrop', crop_size=32, padding=2),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
train_dataloader = dict(
    batch_size=64,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        data_root=data_root,
        data_prefix='train',
        pipeline=train_pipeline),
    sampler=dict(type='InfiniteSampler', shuffle=True))
val_dataloader = dict(
    batch_size=64,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        data_root=data_root,
        data_prefix='test',
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator
param_scheduler = dict(
    _delete_=True, type='CosineAnnealingLR', by_epoch=False, T_max=400,
    eta_min=1e-3)
train_cfg = dict(
    _delete_=True, type='IterBasedTrainLoop', max_iters=400,
    val_interval=400)
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(type='CheckpointHook', interval=400, by_epoch=False))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
