"""``import mmc3`` needs torch and mmengine only: with mmdet, mmseg and
mmpretrain made unimportable, every block builds from the root registry and
runs, and no host is registered."""
import subprocess
import sys

SCRIPT = r'''
import sys
for name in ('mmdet', 'mmseg', 'mmpretrain'):
    sys.modules[name] = None  # "import mmdet" now raises ImportError
import torch
import mmc3
from mmengine.registry import MODELS
assert mmc3.models.registered_hosts == [], mmc3.models.registered_hosts
for cfg in (dict(type='C3Block', grid_size=(3, 4)), dict(type='SEBlock'),
            dict(type='CEBlock'), dict(type='GEBlock', extent=2),
            dict(type='GEBlock', variant='theta+', extent='global',
                 grid_size=(3, 4))):
    block = MODELS.build(dict(cfg, in_channels=32))
    x = torch.randn(2, 32, 3, 4, requires_grad=True)
    out = block(x)
    out.sum().backward()
    assert out.shape == x.shape and torch.isfinite(x.grad).all(), cfg
loaded = sorted(m for m in sys.modules
                if m.split('.')[0] in ('mmdet', 'mmseg', 'mmpretrain')
                and sys.modules[m] is not None)
assert not loaded, loaded
assert MODELS.get('PluginResLayer') is None
print('blocks ok without mmdet, mmseg, mmpretrain')
'''


def test_blocks_import_and_run_without_the_codebases():
    proc = subprocess.run([sys.executable, '-c', SCRIPT],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert 'blocks ok without mmdet, mmseg, mmpretrain' in proc.stdout


def test_installed_codebases_register_their_hosts():
    import mmc3
    assert mmc3.models.registered_hosts == ['detection', 'segmentation',
                                            'classification']
    from mmdet.registry import MODELS as MMDET
    from mmpretrain.registry import MODELS as MMPRETRAIN
    from mmseg.registry import MODELS as MMSEG
    assert MMPRETRAIN.get('CifarResNet') is not None
    assert MMDET.get('PluginResLayer') is not None
    assert MMSEG.get('ChainedPluginResNetV1c') is not None
