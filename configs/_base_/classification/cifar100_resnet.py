# CIFAR-100 classification with a CIFAR ResNet: the released C3 code's recipe.
#
# Model: mmc3's CifarResNet (6n+2, 3x3 stem with 16 channels, stages of
# 16/32/64 channels, 1x1-conv+BN projection shortcuts), global average
# pooling, a linear head over 100 classes. Configs set `depth` (and
# `plugins`); Wide-ResNets replace the backbone (see wrn22_10_*.py).
# Data: mmpretrain's CIFAR-100 pipeline (random crop 32 with padding 4,
# horizontal flip), data in data/cifar100 (the python pickle release).
# Recipe (released C3 code): SGD momentum 0.9, lr 0.1, weight decay 1e-4,
# batch 128 on ONE GPU, 160 epochs, lr x0.1 at epochs 120 and 140, seed 1.
# Train:  python tools/train.py configs/resnet20_c3_cifar100.py
#         (--auto-scale-lr rescales lr for another total batch).
_base_ = [
    'mmpretrain::_base_/datasets/cifar100_bs16.py',
    'mmpretrain::_base_/schedules/cifar10_bs128.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmc3'], allow_failed_imports=False)
model = dict(
    type='ImageClassifier',
    backbone=dict(type='CifarResNet', depth=20, out_indices=(2, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=100,
        in_channels=64,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)))
train_dataloader = dict(batch_size=128)
val_dataloader = dict(batch_size=128)
test_dataloader = dict(batch_size=128)
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_evaluator = val_evaluator
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4))
param_scheduler = dict(
    type='MultiStepLR', by_epoch=True, milestones=[120, 140], gamma=0.1)
train_cfg = dict(by_epoch=True, max_epochs=160, val_interval=1)
auto_scale_lr = dict(base_batch_size=128)
randomness = dict(seed=1)
