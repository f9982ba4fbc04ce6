# Block placements of the CIFAR-100 experiments (released C3 code, seeds
# 001/002), for mmc3's CifarResNet / CifarWideResNet `plugins`.
#
#   c3_cifar_block    C3 as the released code that produced the seeds'
#                     numbers runs it: k = 8, nearest resize, the message
#                     INCLUDES j = i (exclude_self=False) and a ReLU follows
#                     the residual sum (post_act=True). The paper's defaults
#                     differ on both (METHODS.md).
#   c3_cifar_plugins  three C3 blocks: on the stem output (16 ch, 32x32 map,
#                     16x16 grid), on stage 1's output (16 ch, 32x32 map,
#                     16x16 grid) and on stage 2's output (32 ch, 16x16 map,
#                     8x8 grid): +68,880 parameters at any depth and width.
#   se_cifar_plugins  SE after the last BN of every BasicBlock, before the
#                     add, reduction 8, no biases (what reproduces the seeds'
#                     SE parameter counts).
#   convs_cifar_plugins  the "+Convs" control (seed 001, Table 1): at the
#                     three C3 positions, conv3x3(C -> 4C, bias) - ReLU -
#                     conv3x3(4C -> C) with a residual sum.
# Ablations: c3_cifar_k{1,2,4,16}_plugins (bottleneck ratio, seed 000),
# c3_cifar_encdec_plugins (encoder/decoder only: message_passing=False) and
# c3_cifar_message_plugins (message passing only: encode_decode=False),
# seed 002.
c3_cifar_block = dict(
    type='C3Block',
    ratio=8,
    resize_mode='nearest',
    exclude_self=False,
    post_act=True)
c3_cifar_positions = [
    dict(position='after_stem'),
    dict(position='after_stage', stages=(True, False, False)),
    dict(position='after_stage', stages=(False, True, False)),
]
c3_cifar_grids = (16, 16, 8)
c3_cifar_plugins = [
    dict(p, cfg=dict(c3_cifar_block, grid_size=g))
    for p, g in zip(c3_cifar_positions, c3_cifar_grids)
]
c3_cifar_k1_plugins = [
    dict(p, cfg=dict(p['cfg'], ratio=1)) for p in c3_cifar_plugins]
c3_cifar_k2_plugins = [
    dict(p, cfg=dict(p['cfg'], ratio=2)) for p in c3_cifar_plugins]
c3_cifar_k4_plugins = [
    dict(p, cfg=dict(p['cfg'], ratio=4)) for p in c3_cifar_plugins]
c3_cifar_k16_plugins = [
    dict(p, cfg=dict(p['cfg'], ratio=16)) for p in c3_cifar_plugins]
c3_cifar_encdec_plugins = [
    dict(p, cfg=dict(p['cfg'], message_passing=False))
    for p in c3_cifar_plugins
]
c3_cifar_message_plugins = [
    dict(p, cfg=dict(p['cfg'], encode_decode=False))
    for p in c3_cifar_plugins
]
se_cifar_plugins = [
    dict(cfg=dict(type='SEBlock', ratio=8, bias=False),
         position='after_conv2')
]
convs_cifar_plugins = [
    dict(p, cfg=dict(type='ConvPairBlock', expansion=4))
    for p in c3_cifar_positions
]
