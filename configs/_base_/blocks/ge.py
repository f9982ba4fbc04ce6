# GE (gather-excite) block fragment, reusable by any config.
#
# Hu, Shen, Albanie, Sun, Vedaldi, "Gather-Excite: Exploiting Feature Context
# in Convolutional Neural Networks", NeurIPS 2018 (arXiv 1810.12348).
#
# Variant: GE-theta+ with global extent, the paper's best GE design (a
# depthwise gather over the whole map, then an SE-style 1x1 MLP C -> C/16 ->
# C). Its one practical drawback, a gather kernel tied to one input size, does
# not bite in the C4 RoI head: every stage-4 map there is 7x7 (14x14
# RoIAlign, stride 2), hence grid_size=7. Placement: after the last BN,
# before the residual sum (after_conv3), every bottleneck.
# Note: the host's norm_eval=True keeps every BN of the head in eval mode,
# the gather's BN included; it then acts as a learnable per-channel affine
# (running statistics stay at their initial values).
# Inputs of other sizes (segmentation backbones) need either
# dict(_base_.ge_block, grid_size=(h, w)) or the parameter-free global
# variant, which fits any size and was the best parameter-free setting
# (supplement Table 1: avg beats max):
#   dict(type='GEBlock', variant='theta-', extent='global', pooling='avg')
#
# Variables (inherit this file in `_base_`, then use `_base_.<name>`):
#   ge_block           the block cfg.
#   ge_stage4_plugins  mmdet/mmseg ResNet `plugins` list: the block after
#                      conv3 of every bottleneck of stage 4. The 4-tuple
#                      `stages` fits a 4-stage backbone and mmc3's
#                      `PluginResLayer` RoI head (which reads the entry of its
#                      own stage).
#
# Usage in a detector:  model = dict(roi_head=dict(shared_head=dict(
#                           plugins=_base_.ge_stage4_plugins)))
# Needs: custom_imports = dict(imports=['mmc3'], allow_failed_imports=False)
ge_block = dict(
    type='GEBlock', variant='theta+', extent='global', grid_size=7, ratio=16)
ge_stage4_plugins = [
    dict(
        cfg=ge_block,
        position='after_conv3',
        stages=(False, False, False, True))
]
