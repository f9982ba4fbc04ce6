"""mmc3: channel-interaction blocks (C3, SE, CE, GE) for OpenMMLab."""
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


setup(
    name='mmc3',
    version=read_version(),
    description='Cross-channel communication (C3), SE, CE and GE blocks for '
    'mmdet, mmsegmentation and mmpretrain',
    long_description=open(osp.join(HERE, 'README.md')).read(),
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('tests', 'configs', 'tools')),
    python_requires='>=3.8',
    # ranges (keeps a user's CUDA torch and own stack); the exact CI pins are
    # requirements/torch.txt, mminstall.txt and runtime.txt
    install_requires=read_requirements('torch_supported', 'supported'),
    extras_require={'tests': read_requirements('tests')},
    license='Apache License 2.0',
    zip_safe=False,
)
