# C3 (cross-channel communication) block fragment, reusable by any config.
#
# Yang, Ren, Gan, Zhu, Parikh, "Cross-channel Communication Networks",
# NeurIPS 2019. Defaults follow the paper: encoder/decoder bottleneck k = 8
# ("d -> d/8 -> d"), message over j != i, residual without activation.
#
# Variables (inherit this file in `_base_`, then use `_base_.<name>`):
#   c3_block           the block cfg. grid_size=7 is the size of the maps in
#                      stage 4 of the Faster/Mask R-CNN C4 RoI head (14x14
#                      RoIAlign -> 7x7; every bottleneck's after_conv3 output
#                      there is 7x7), so nothing is resized. A host with other
#                      stage-4 sizes overrides it:
#                      dict(_base_.c3_block, grid_size=(h, w)).
#   c3_stage4_plugins  mmdet/mmseg ResNet `plugins` list: the block after
#                      conv3 (after the last BN, before the residual add) of
#                      every bottleneck of stage 4. The 4-tuple `stages` fits a
#                      4-stage backbone and mmc3's `PluginResLayer` RoI head
#                      (which reads the entry of its own stage).
#
# Usage in a detector:  model = dict(roi_head=dict(shared_head=dict(
#                           plugins=_base_.c3_stage4_plugins)))
# in a backbone:        model = dict(backbone=dict(
#                           plugins=_base_.c3_stage4_plugins))
# Needs: custom_imports = dict(imports=['mmc3'], allow_failed_imports=False)
c3_block = dict(type='C3Block', grid_size=7, ratio=8)
c3_stage4_plugins = [
    dict(
        cfg=c3_block,
        position='after_conv3',
        stages=(False, False, False, True))
]
