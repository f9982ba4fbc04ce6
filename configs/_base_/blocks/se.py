# SE (squeeze-and-excitation) block fragment, reusable by any config.
#
# Hu, Shen, Sun, "Squeeze-and-Excitation Networks", CVPR 2018: reduction
# ratio 16, gate placed after the last BN of the residual branch, before the
# residual sum (plugin position after_conv3), in every bottleneck.
#
# Variables (inherit this file in `_base_`, then use `_base_.<name>`):
#   se_block           the block cfg (works at any input size).
#   se_stage4_plugins  mmdet/mmseg ResNet `plugins` list: the block after
#                      conv3 of every bottleneck of stage 4. The 4-tuple
#                      `stages` fits a 4-stage backbone and mmc3's
#                      `PluginResLayer` RoI head (which reads the entry of its
#                      own stage).
#
# Usage in a detector:  model = dict(roi_head=dict(shared_head=dict(
#                           plugins=_base_.se_stage4_plugins)))
# in a backbone:        model = dict(backbone=dict(
#                           plugins=_base_.se_stage4_plugins))
# Needs: custom_imports = dict(imports=['mmc3'], allow_failed_imports=False)
se_block = dict(type='SEBlock', ratio=16)
se_stage4_plugins = [
    dict(
        cfg=se_block,
        position='after_conv3',
        stages=(False, False, False, True))
]
