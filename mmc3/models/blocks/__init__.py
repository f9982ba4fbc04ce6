"""The four channel-interaction blocks, registered in mmengine's root MODELS.

A plain ``type='C3Block'`` (``'SEBlock'``, ``'CEBlock'``, ``'GEBlock'``)
resolves from mmdet, mmseg and mmpretrain configs alike, because every
codebase's registry falls back to its root. ``ConvPairBlock`` is the C3
papers' "+Convs" control.
"""
from .channel_equilibrium import CEBlock
from .conv_pair import ConvPairBlock
from .cross_channel import C3Block
from .gather_excite import GEBlock
from .squeeze_excite import SEBlock

__all__ = ['C3Block', 'SEBlock', 'CEBlock', 'GEBlock', 'ConvPairBlock']
