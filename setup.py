"""lt_mm: long-tail recognition methods (DisAlign, TDE, Decoupling, CDT) for
OpenMMLab 2.x (mmpretrain, mmsegmentation, mmdetection).

Install the whole stack with ``bash tools/install.sh`` (it builds mmcv with
ops, which PyPI only ships as an sdist); ``pip install -e .`` installs lt_mm
alone on top of an existing OpenMMLab environment.
"""
import os.path as osp
from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def parse_requirements(fname):
    """Read a requirements/*.txt file, skipping comments."""
    out = []
    with open(osp.join(HERE, 'requirements', fname)) as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if line:
                out.append(line)
    return out


def get_version():
    ns = {}
    with open(osp.join(HERE, 'lt_mm', 'version.py')) as f:
        exec(f.read(), ns)
    return ns['__version__']


setup(
    name='lt_mm',
    version=get_version(),
    description='Long-tail recognition (DisAlign, TDE, Decoupling, CDT) '
    'for mmpretrain, mmsegmentation and mmdetection',
    long_description=open(osp.join(HERE, 'README.md')).read(),
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('tests', 'tests.*', 'configs', 'tools')),
    include_package_data=True,
    package_data={'lt_mm.core': ['data/*.json']},
    python_requires='>=3.10',  # torch 2.14 and faster-coco-eval
    install_requires=['numpy', 'torch'],
    extras_require={
        'mim': parse_requirements('mminstall.txt'),
        'runtime': parse_requirements('runtime.txt'),
        'tests': parse_requirements('tests.txt'),
        'optional': parse_requirements('optional.txt'),
    },
    license='Apache License 2.0',
    zip_safe=False,
)
