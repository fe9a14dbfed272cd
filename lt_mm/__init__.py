"""lt_mm: long-tail recognition methods for OpenMMLab 2.x.

Importing :mod:`lt_mm` (or :mod:`lt_mm.core`) never imports an OpenMMLab
toolbox; the adapters :mod:`lt_mm.cls`, :mod:`lt_mm.seg` and :mod:`lt_mm.det`
register into mmpretrain, mmsegmentation and mmdetection when imported
(configs do so through ``custom_imports``).
"""
from .version import __version__

__all__ = ['__version__']
