# ImageNet-1k classification with an mmc3 plugin ResNet: mmpretrain's
# ResNet recipe (resnet50_8xb32_in1k), which the C3 and GE seeds do not
# state for themselves: 8 GPUs x 32 images, SGD momentum 0.9, lr 0.1, weight
# decay 1e-4, 100 epochs, lr x0.1 at epochs 30, 60 and 90, 224x224 random
# resized crops. CE configs add the label smoothing of seed 004 appendix G
# (otherwise the same recipe). Configs set the backbone's depth, plugins
# and the head's in_channels (512 for ResNet-18, 2048 otherwise).
# Data: data/imagenet in mmpretrain's layout (train/, val/, meta/).
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs32.py',
    'mmpretrain::_base_/schedules/imagenet_bs256.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmc3'], allow_failed_imports=False)
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='PluginResNet', depth=50, num_stages=4, out_indices=(3, ),
        style='pytorch'),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=2048,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)))
