"""Blocks (registered in mmengine's root MODELS) and the hosts that carry them."""
from . import blocks  # noqa: F401

__all__ = ['blocks']
