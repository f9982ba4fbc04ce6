"""mmc3: channel-interaction blocks (C3, SE, CE, GE) for OpenMMLab.

Importing the package registers every block in mmengine's root ``MODELS``
registry (torch and mmengine are all the blocks need) and, for each
installed codebase (mmdet, mmseg), its hosts (plugin-aware backbones, heads)
in that codebase's registry, so configs only need
``custom_imports = dict(imports=['mmc3'], allow_failed_imports=False)``.
It also allow-lists the types of mmengine's training checkpoints for
``torch.load(weights_only=True)`` (see :mod:`mmc3.utils.checkpoint`), so
``load_from`` and ``resume`` work on torch >= 2.6 without unpickling
arbitrary code. And it lets mmengine resolve ``mmc3::family/NAME.py`` config
paths from an installed wheel (:mod:`mmc3.utils.mim`).
"""
from . import models  # noqa: F401  (registers everything)
from . import utils  # noqa: F401  (safe checkpoint allow-list)
from .utils.mim import register_mim_package
from .version import __version__

register_mim_package()

__all__ = ['__version__', 'models', 'utils']
