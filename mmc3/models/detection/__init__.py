"""Detection hosts, registered in mmdet's MODELS.

- :class:`PluginResLayer`: the C4 RoI shared head (one ResNet stage run per
  RoI) with mmdet-``ResNet``-style block ``plugins``.
"""
from .plugin_res_layer import PluginResLayer

__all__ = ['PluginResLayer']
