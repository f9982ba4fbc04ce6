# CIFAR-100 with the seeds' Wide-ResNet: WRN-22-10 (the released code's
# "20": 3 post-activation BasicBlocks per stage, widths 160/320/640) and
# the recipe of cifar100_resnet.py. Configs add `plugins`.
_base_ = ['./cifar100_resnet.py']
model = dict(
    backbone=dict(
        _delete_=True,
        type='CifarWideResNet',
        depth=22,
        widen_factor=10,
        out_indices=(2, )),
    head=dict(in_channels=640))
