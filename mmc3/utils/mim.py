"""``mmc3::`` config paths for mmengine.

mmengine resolves ``_base_ = 'pkg::folder/file.py'`` and
``mmengine.hub.get_config('pkg::folder/file.py')`` only for the packages in
its fixed table ``mmengine.config.utils.MODULE2PACKAGE`` (mmdet, mmseg,
mmpretrain, ...; mmengine 0.10.7). :func:`register_mim_package` adds mmc3 to
it; importing :mod:`mmc3` calls it, so ``import mmc3`` (or
``custom_imports`` in an earlier config) must come before a config that
inherits ``mmc3::`` is read. The configs themselves are in the installed
package's ``.mim/configs/<family>/`` (filled by ``setup.py`` when a wheel is
built).
"""


def register_mim_package() -> bool:
    """Let mmengine resolve ``mmc3::`` paths (idempotent).

    Returns:
        bool: False if mmengine has no such table (another version), True
        otherwise.
    """
    try:
        from mmengine.config import utils
    except ImportError:
        return False
    table = getattr(utils, 'MODULE2PACKAGE', None)
    if not isinstance(table, dict):
        return False
    table.setdefault('mmc3', 'mmc3')
    return True
