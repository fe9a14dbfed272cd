"""Tiny long-tailed datasets built from real handwritten digits.

Generators that write the *real* on-disk formats of the benchmarks used by
lt_mm, so tests and the quickstart exercise the unmodified OpenMMLab
dataset classes in seconds:

* :func:`make_imagenet_lt` - ImageNet-LT list files + JPEG folders;
* :func:`make_ade20k` - ADEChallengeData2016 images/annotations;
* :func:`make_lvis` - LVIS v1 json + COCO-2017 style image folders.

Only numpy, Pillow and scikit-learn are needed (no torch, no OpenMMLab);
all generators are deterministic given ``seed``.
"""
from .ade20k import make_ade20k
from .digits import colourise, load_digit_images, textured_background
from .imagenet_lt import long_tailed_counts, make_imagenet_lt
from .lvis import frequency_letter, make_lvis

__all__ = [
    'load_digit_images', 'colourise', 'textured_background',
    'make_imagenet_lt', 'long_tailed_counts', 'make_ade20k', 'make_lvis',
    'frequency_letter'
]
