# ImageNet with the seeds' ResNeXt-50: 4 groups of width 32 (34.93M
# parameters, 5.89 GFLOPs in seed 001; not 32x4d) and the recipe of
# imagenet_resnet.py. Configs add `plugins`.
_base_ = ['./imagenet_resnet.py']
model = dict(
    backbone=dict(
        type='PluginResNeXt', depth=50, groups=4, width_per_group=32))
