# Quickstart segmentation C3 variant: the baseline above plus a C3 block after
# conv3 of every stage-4 bottleneck. 128x128 crops give 16x16 stage-4 maps
# (output stride 8), and the sliding-window test uses 128x128 windows, so the
# block's grid is (16, 16) in training and testing.
_base_ = [
    '../_base_/deeplabv2_quickstart_synthetic.py', '../_base_/blocks/c3.py'
]
model = dict(
    backbone=dict(plugins=[
        dict(
            cfg=dict(_base_.c3_block, grid_size=_base_.stage4_size),
            position='after_conv3',
            stages=(False, False, False, True))
    ]))
