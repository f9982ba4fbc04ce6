# CE (channel equilibrium) block fragment, reusable by any config.
#
# Shao, Tang, Pan, Tan, Wang, Luo, "Channel Equilibrium Networks for Learning
# Deep Representation", ICML 2020 (arXiv 2003.00214): IR reduction r = 4,
# whitening groups of 16, 3 Newton-Schulz iterations (appendix B.1, G). CE
# follows a BN, before the residual sum and ReLU: plugin position
# after_conv3, every bottleneck. No 2x2 pooling before the covariance: the
# stage-4 maps of the C4 RoI head are only 7x7.
#
# Variables (inherit this file in `_base_`, then use `_base_.<name>`):
#   ce_block           the block cfg (works at any input size).
#   ce_stage4_plugins  mmdet/mmseg ResNet `plugins` list: the block after
#                      conv3 of every bottleneck of stage 4. The 4-tuple
#                      `stages` fits a 4-stage backbone and mmc3's
#                      `PluginResLayer` RoI head (which reads the entry of its
#                      own stage). Large backbone maps (segmentation) may want
#                      dict(_base_.ce_block, pool=True).
#
# Usage in a detector:  model = dict(roi_head=dict(shared_head=dict(
#                           plugins=_base_.ce_stage4_plugins)))
# in a backbone:        model = dict(backbone=dict(
#                           plugins=_base_.ce_stage4_plugins))
# Needs: custom_imports = dict(imports=['mmc3'], allow_failed_imports=False)
ce_block = dict(type='CEBlock', ratio=4, group_size=16, ns_iters=3)
ce_stage4_plugins = [
    dict(
        cfg=ce_block,
        position='after_conv3',
        stages=(False, False, False, True))
]
