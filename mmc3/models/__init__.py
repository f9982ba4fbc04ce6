"""Blocks (registered in mmengine's root MODELS) and the hosts that carry them."""
from . import blocks  # noqa: F401
from . import detection  # noqa: F401
from . import segmentation  # noqa: F401

__all__ = ['blocks', 'detection', 'segmentation']
