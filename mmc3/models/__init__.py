"""Blocks (registered in mmengine's root MODELS) and the hosts that carry them.

The blocks need torch and mmengine only. Each host package registers in its
codebase's registry when that codebase is installed: ``detection`` with
mmdet, ``segmentation`` with mmseg, ``classification`` with mmpretrain. A
codebase that is absent is skipped (an mmpretrain user needs neither mmdet
nor mmseg); one that is installed but fails to import raises its own
error.
"""
import importlib
import importlib.util

from . import blocks  # noqa: F401

#: host package -> the codebase it extends
HOST_PACKAGES = {
    'detection': 'mmdet',
    'segmentation': 'mmseg',
    'classification': 'mmpretrain',
}


def codebase_available(name: str) -> bool:
    """Whether the codebase ``name`` is installed and not blocked."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


#: the host packages imported (and so registered) in this process
registered_hosts = []
for _package, _codebase in HOST_PACKAGES.items():
    if codebase_available(_codebase):
        importlib.import_module(f'.{_package}', __name__)
        registered_hosts.append(_package)

__all__ = ['blocks', 'codebase_available', 'registered_hosts'] + \
    registered_hosts
