"""The model index: every config has an entry and every entry a config,
the committed files are what tools/misc/model_index.py writes, the README's
config tables agree with the metafiles, and a built wheel serves
``mmc3::<family>/NAME.py`` configs to mmengine outside the clone."""
import glob
import itertools
import os.path as osp
import re
import subprocess
import sys

import pytest
import yaml

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def metafile_entries():
    with open(osp.join(ROOT, 'model-index.yml')) as f:
        index = yaml.safe_load(f)
    entries = []
    for path in index['Import']:
        with open(osp.join(ROOT, path)) as f:
            entries += yaml.safe_load(f)['Models']
    return entries


def test_every_config_has_one_entry_and_every_entry_a_config():
    configs = {osp.splitext(osp.basename(p))[0]
               for p in glob.glob(osp.join(ROOT, 'configs', '*.py'))
               + glob.glob(osp.join(ROOT, 'configs', 'quickstart', '*.py'))}
    names = [e['Name'] for e in metafile_entries()]
    assert len(names) == len(set(names)), 'a config listed twice'
    assert configs - set(names) == set(), 'configs without an entry'
    assert set(names) - configs == set(), 'entries without a config'
    for e in metafile_entries():
        folder, name = e['Config'].split('/')[1:]
        assert name == e['Name'] + '.py'
        assert folder in ('detection', 'segmentation', 'classification',
                          'quickstart')
        assert e['Weights'] == ''


def test_committed_index_is_what_the_generator_writes():
    proc = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'misc', 'model_index.py'),
         '--check'], cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    assert proc.returncode == 0, proc.stdout


def _expand(pattern):
    """``a{1,2}_{x,y}.py`` -> the four names, without ``.py``."""
    parts = re.split(r'\{([^}]*)\}', pattern)
    choices = [[p] if i % 2 == 0 else p.split(',')
               for i, p in enumerate(parts)]
    return [osp.splitext(''.join(c))[0] for c in itertools.product(*choices)]


def readme_rows():
    """{config name: the README Configs-table row that lists it}."""
    with open(osp.join(ROOT, 'README.md')) as f:
        text = f.read()
    start = text.index('## Configs')
    section = text[start:text.index('\n## ', start + 1)]
    rows = {}
    for line in section.splitlines():
        if not line.startswith('| `'):
            continue
        first = line.split(' | ')[0]
        for pattern in re.findall(r'`([^`]+\.py)`', first):
            for name in _expand(pattern):
                rows[name] = line
    return rows


def test_readme_config_tables_agree_with_the_metafiles():
    rows = readme_rows()
    checked = 0
    for e in metafile_entries():
        for result in e.get('Results', []):
            assert e['Name'] in rows, (
                f"{e['Name']} has the seeds' numbers but no README row")
            value = next(iter(result['Metrics'].values()))
            numbers = {float(n) for n in re.findall(
                r'(?<![\w.])\d+\.\d+', rows[e['Name']].split(' | ')[-1])}
            assert float(value) in numbers, (
                f"{e['Name']}: {result['Source']} gives {value}, the "
                f"README row says {rows[e['Name']].split(' | ')[-1]}")
            checked += 1
    assert checked >= 60  # the seeds give 70 numbers for our configs


@pytest.fixture(scope='module')
def installed_wheel(tmp_path_factory):
    """The clone built as a wheel and installed into a folder of its own
    (the stack's other packages are reused from this environment)."""
    tmp = tmp_path_factory.mktemp('wheel')
    for args in (['wheel', '--no-deps', '--no-build-isolation', '-q', ROOT,
                  '-w', str(tmp / 'dist')],):
        proc = subprocess.run([sys.executable, '-m', 'pip', *args],
                              stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        assert proc.returncode == 0, proc.stdout
    wheel = glob.glob(str(tmp / 'dist' / 'mmc3-*.whl'))[0]
    proc = subprocess.run(
        [sys.executable, '-m', 'pip', 'install', '-q', '--no-deps',
         '--target', str(tmp / 'site'), wheel], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    assert proc.returncode == 0, proc.stdout
    return tmp


def test_mmc3_configs_load_and_build_from_an_installed_wheel(
        installed_wheel, tmp_path):
    pytest.importorskip('mmdet', reason='mmdet is not installed')
    pytest.importorskip('mmpretrain', reason='mmpretrain is not installed')
    (tmp_path / 'my_detector.py').write_text(
        "_base_ = 'mmc3::detection/faster_rcnn_r101_c3.py'\n"
        'model = dict(roi_head=dict(bbox_head=dict(num_classes=3)))\n')
    script = '''
import mmc3
from mmengine.config import Config
from mmengine.hub import get_config
from mmc3.analysis.runs import load_model
print('package', mmc3.__file__)
cfg = Config.fromfile('my_detector.py')
model = load_model(cfg)
print('built', type(model).__name__,
      type(model.roi_head.shared_head).__name__,
      cfg.model.roi_head.bbox_head.num_classes)
for name in ('classification/resnet20_c3_cifar100.py',
             'segmentation/deeplabv2_r101_c3_voc12aug.py',
             'quickstart/resnet20_se_digits.py'):
    cfg = get_config('mmc3::' + name)
    print('hub', name, cfg.filename.split('.mim/')[1])
'''
    env = dict(__import__('os').environ,
               PYTHONPATH=str(installed_wheel / 'site'))
    proc = subprocess.run([sys.executable, '-c', script], cwd=tmp_path,
                          env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:]
    out = proc.stdout
    assert f"package {installed_wheel / 'site'}/mmc3/__init__.py" in out
    assert 'built FasterRCNN PluginResLayer 3' in out
    for name in ('classification/resnet20_c3_cifar100.py',
                 'segmentation/deeplabv2_r101_c3_voc12aug.py',
                 'quickstart/resnet20_se_digits.py'):
        assert f'hub {name} configs/{name}' in out
    # the clone's tools/train.py reads the same config (and stops at the
    # data it does not have)
    proc = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'train.py'),
         'my_detector.py'], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=600)
    assert proc.returncode != 0
    assert 'dataset path does not exist: data/coco/ ' \
        '(train_dataloader.dataset.data_root)' in proc.stdout, proc.stdout
