"""mmc3: channel-interaction blocks (C3, SE, CE, GE) for OpenMMLab.

Importing the package registers every block in mmengine's root ``MODELS``
registry and every host (plugin-aware backbones, heads) in the registry of
the codebase it serves, so configs only need
``custom_imports = dict(imports=['mmc3'], allow_failed_imports=False)``.
"""
from . import models  # noqa: F401  (registers everything)
from .version import __version__

__all__ = ['__version__', 'models']
