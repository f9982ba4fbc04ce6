"""mmc3: channel-interaction blocks (C3, SE, CE, GE) for OpenMMLab."""
import glob
import os
import os.path as osp
import re

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def read_requirements(*names: str) -> list:
    """Requirement lines of ``requirements/<name>.txt``, comments dropped."""
    reqs = []
    for name in names:
        with open(osp.join(HERE, 'requirements', name + '.txt')) as f:
            for line in f:
                line = line.split('#', 1)[0].strip()
                if line:
                    reqs.append(line)
    return reqs


def read_version() -> str:
    with open(osp.join(HERE, 'mmc3', 'version.py')) as f:
        return re.search(r"__version__ = '([^']+)'", f.read()).group(1)


def add_mim_extension() -> list:
    """Fill ``mmc3/.mim`` before a wheel or sdist is built; return the
    package data it holds.

    mmengine resolves ``mmc3::<folder>/<file>`` in ``mmc3/.mim/configs`` and
    needs a folder in that path (mmengine 0.10.7), so every config goes to
    its family's folder as the model index says (``Config:
    configs/<family>/NAME.py``), with ``_base_/`` beside it; the metafiles
    and ``model-index.yml`` go along. Other commands (an editable install)
    leave it alone.
    """
    import shutil
    import sys
    mim = osp.join(HERE, 'mmc3', '.mim')
    if any(cmd in sys.argv for cmd in ('bdist_wheel', 'sdist', 'build_py')):
        if osp.lexists(mim):
            shutil.rmtree(mim)
        configs = osp.join(HERE, 'configs')
        os.makedirs(mim)
        shutil.copyfile(osp.join(HERE, 'model-index.yml'),
                        osp.join(mim, 'model-index.yml'))
        skip = shutil.ignore_patterns('__pycache__')
        shutil.copytree(osp.join(configs, 'metafiles'),
                        osp.join(mim, 'configs', 'metafiles'), ignore=skip)
        shutil.copytree(osp.join(configs, '_base_'),
                        osp.join(mim, 'configs', '_base_'), ignore=skip)
        for meta in glob.glob(osp.join(configs, 'metafiles', '*.yml')):
            with open(meta) as f:
                targets = re.findall(r'^ *Config: (configs/\S+)$', f.read(),
                                     re.M)
            for target in targets:
                folder, name = target.split('/')[1:]
                src = osp.join(configs, name)
                if folder == 'quickstart':
                    src = osp.join(configs, 'quickstart', name)
                dst = osp.join(mim, 'configs', folder)
                if folder != 'quickstart' and \
                        not osp.isdir(osp.join(dst, '_base_')):
                    shutil.copytree(osp.join(configs, '_base_'),
                                    osp.join(dst, '_base_'), ignore=skip)
                os.makedirs(dst, exist_ok=True)
                shutil.copyfile(src, osp.join(dst, name))
    return [osp.relpath(osp.join(root, f), osp.join(HERE, 'mmc3'))
            for root, _, files in os.walk(mim) for f in files]


setup(
    name='mmc3',
    version=read_version(),
    description='Cross-channel communication (C3), SE, CE and GE blocks for '
    'mmdet, mmsegmentation and mmpretrain',
    long_description=open(osp.join(HERE, 'README.md')).read(),
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('tests', 'configs', 'tools')),
    package_data={'mmc3': add_mim_extension()},
    python_requires='>=3.8',
    # ranges (keeps a user's CUDA torch and own stack); the exact CI pins are
    # requirements/torch.txt, mminstall.txt and runtime.txt
    install_requires=read_requirements('torch_supported', 'supported'),
    extras_require={'tests': read_requirements('tests')},
    license='Apache License 2.0',
    zip_safe=False,
)
