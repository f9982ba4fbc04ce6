"""DeepLab-v2 decode head: atrous spatial pyramid pooling with summed scores.

Chen, Papandreou, Kokkinos, Murphy, Yuille, "DeepLab: Semantic Image
Segmentation with Deep Convolutional Nets, Atrous Convolution, and Fully
Connected CRFs", TPAMI 2018, arXiv 1606.00915, Sec. 3.3 and Fig. 7
(ASPP-L): four parallel 3x3 convolutions with dilation 6, 12, 18 and 24 map
the stage-4 features straight to class scores, and the four score maps are
summed. Released Caffe model: http://liangchiehchen.com/projects/DeepLabv2_resnet.html
(``fc1_voc12_c0`` .. ``fc1_voc12_c3``: Gaussian weights, std 0.01, zero
bias).

mmseg ships DeepLab-v3's ASPP (concatenation, BN, ReLU, a bottleneck and a
1x1 classifier) but not this head.
"""
from typing import List, Optional, Sequence, Union

import torch.nn as nn
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS
from torch import Tensor


@MODELS.register_module()
class DeepLabV2Head(BaseDecodeHead):
    """DeepLab-v2 ASPP classifier: the sum of dilated 3x3 convolutions.

    ``scores = sum_d Conv3x3_d(x)``, ``d`` in ``dilations``, each convolution
    with bias and ``padding = d`` (same size), without BN or ReLU.

    Shape:
        - Input: the backbone's outputs; the one picked by ``in_index`` is
          ``(N, in_channels, H, W)``.
        - Output: ``(N, num_classes, H, W)`` class scores (the base class
          upsamples them for the loss and for prediction).

    Args:
        in_channels (int): Channels of the chosen backbone output (2048 for
            ResNet-101 stage 4).
        dilations (Sequence[int]): Dilation (and padding) of each branch.
            Defaults to ``(6, 12, 18, 24)`` (ASPP-L).
        dropout_ratio (float): Dropout applied to the features before the
            branches. Defaults to 0 (DeepLab-v2's ResNet-101 has none).
        init_cfg (dict | list[dict]): Initialisation. Defaults to
            ``N(0, 0.01)`` weights and zero biases for every branch.
        **kwargs: Passed to mmseg's ``BaseDecodeHead`` (``num_classes``,
            ``in_index``, ``loss_decode``, ``align_corners``, ...), which
            also provides the losses and inference.

    Note:
        ``BaseDecodeHead`` always builds a 1x1 ``conv_seg`` classifier and
        names it in its default ``init_cfg``. Here the four branches are the
        classifier, so ``conv_seg`` is deleted (it would hold unused
        parameters, which break DDP) and the default ``init_cfg`` names the
        branches instead. ``channels`` is not an argument: the head has no
        intermediate features.
    """

    def __init__(self,
                 in_channels: Union[int, Sequence[int]],
                 dilations: Sequence[int] = (6, 12, 18, 24),
                 dropout_ratio: float = 0.,
                 init_cfg: Optional[Union[dict, List[dict]]] = dict(
                     type='Normal', std=0.01, bias=0,
                     override=dict(name='aspp')),
                 **kwargs) -> None:
        if 'channels' in kwargs:
            raise TypeError(
                'DeepLabV2Head: channels is not an argument (the dilated '
                'convolutions map the input straight to class scores), got '
                f'channels={kwargs["channels"]!r}')
        dilations = tuple(dilations)
        if not dilations or any(
                isinstance(d, bool) or not isinstance(d, int) or d < 1
                for d in dilations):
            raise ValueError('DeepLabV2Head: dilations must be a non-empty '
                             f'sequence of positive ints, got {dilations!r}')
        super().__init__(
            in_channels,
            channels=1,  # conv_seg is deleted below: its width is irrelevant
            dropout_ratio=dropout_ratio,
            init_cfg=init_cfg,
            **kwargs)
        del self.conv_seg
        self.dilations = dilations
        self.aspp = nn.ModuleList(
            nn.Conv2d(
                self.in_channels,
                self.out_channels,
                kernel_size=3,
                padding=d,
                dilation=d,
                bias=True) for d in dilations)

    def cls_seg(self, feat: Tensor) -> Tensor:
        """Classify every pixel: the sum of all branches' scores."""
        if self.dropout is not None:
            feat = self.dropout(feat)
        scores = self.aspp[0](feat)
        for conv in self.aspp[1:]:
            scores = scores + conv(feat)
        return scores

    def forward(self, inputs: List[Tensor]) -> Tensor:
        """Pick the configured backbone output and classify it."""
        return self.cls_seg(self._transform_inputs(inputs))
