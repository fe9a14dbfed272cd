"""A tiny ImageNet-LT look-alike built from real handwritten digits.

ImageNet-LT (Liu et al., "Large-Scale Long-Tailed Recognition in an Open
World", CVPR 2019, Sec. 5) subsamples ImageNet-2012 so that the training
set is long-tailed while val/test are balanced, and ships list files with
one ``<relative path> <label>`` line per image. This module writes the same
on-disk layout with scikit-learn's handwritten digits as images, so that
configs written for ImageNet-LT run unchanged on a laptop in seconds.
"""
from __future__ import annotations

import os
import os.path as osp
from typing import Dict, List

import numpy as np

from .digits import (NUM_DIGIT_CLASSES, check_int, check_positive, colourise,
                     exponential_profile, indices_by_class, jitter_digit,
                     load_digit_images, random_ink_colour, save_jpeg,
                     textured_background)

#: Names of the list files, as published with ImageNet-LT.
LIST_FILES = {
    'train': 'ImageNet_LT_train.txt',
    'val': 'ImageNet_LT_val.txt',
    'test': 'ImageNet_LT_test.txt',
}


def long_tailed_counts(num_classes: int, max_per_class: int,
                       imbalance_ratio: float) -> List[int]:
    """Per-class training-set sizes of the exponential profile.

    ``n_c = floor(max_per_class * imbalance_ratio ** (-c / (C - 1)))``
    (Cui et al., CVPR 2019, Sec. 5 "exponential profile"), class 0 being
    the head: ``n_0 = max_per_class`` and
    ``n_{C-1} = floor(max_per_class / imbalance_ratio)``. A tolerance of
    1e-9 guards the floor against round-off (``100 * 50 ** -1`` is 2).

    Args:
        num_classes: C >= 2.
        max_per_class: size of the head class, >= 1.
        imbalance_ratio: ``n_0 / n_{C-1}`` >= 1.

    Returns:
        list[int]: C non-increasing counts, each >= 1.
    """
    num_classes = check_int('num_classes', num_classes, 2)
    max_per_class = check_int('max_per_class', max_per_class, 1)
    ratio = check_positive('imbalance_ratio', imbalance_ratio)
    if ratio < 1:
        raise ValueError(
            f'imbalance_ratio={imbalance_ratio!r} must be >= 1 (head / '
            'tail size); class 0 is the head class.')
    if max_per_class / ratio < 1 - 1e-9:
        raise ValueError(
            f'max_per_class={max_per_class} / imbalance_ratio={ratio} < 1 '
            'leaves the tail class without images; raise max_per_class to '
            f'at least {int(np.ceil(ratio))} or lower imbalance_ratio.')
    prof = exponential_profile(num_classes, max_per_class, ratio)
    return [int(np.floor(v + 1e-9)) for v in prof]


def make_imagenet_lt(root: str,
                     num_classes: int = 10,
                     imbalance_ratio: float = 50,
                     max_per_class: int = 100,
                     val_per_class: int = 5,
                     test_per_class: int = 20,
                     image_size: int = 32,
                     seed: int = 0) -> Dict:
    """Write a tiny long-tailed classification set in ImageNet-LT layout.

    Class ``c`` is handwritten digit ``c``. The training set follows the
    exponential profile of :func:`long_tailed_counts` (class 0 = head with
    ``max_per_class`` images, class ``C-1`` = tail with
    ``floor(max_per_class / imbalance_ratio)``); val and test are balanced
    with ``val_per_class`` / ``test_per_class`` images per class.

    The real digits of each class are shuffled (``seed``) and split without
    reuse: test first, then val, then train. If a class has fewer distinct
    digits left than its training count (about 175 digits exist per class,
    so only for ``max_per_class`` above roughly 150), the missing training
    images are *augmented copies* of that class's training digits (random
    shift of up to 2 px plus Gaussian grey noise, see
    :func:`~lt_mm.toydata.digits.jitter_digit`); val/test never contain
    augmented or training digits. The number of augmented images per class
    is returned as ``num_augmented``.

    Each image is the upscaled grey digit painted in a random bright colour
    over a random dark texture, saved as an RGB JPEG (quality 95).

    Files written (``<c>`` is the class index, paths in the lists are
    relative to ``root`` exactly like the published ImageNet-LT lists)::

        root/train/<c>/train_<c>_<k>.jpg   root/ImageNet_LT_train.txt
        root/val/<c>/val_<c>_<k>.jpg       root/ImageNet_LT_val.txt
        root/test/<c>/test_<c>_<k>.jpg     root/ImageNet_LT_test.txt
        root/classes.txt                   (one class name per line)

    with list lines such as ``train/3/train_3_0007.jpg 3``. Existing files
    with the same names are overwritten; nothing else is removed.

    Args:
        root: output folder (created if needed).
        num_classes: C in [2, 10].
        imbalance_ratio: head / tail training size, >= 1.
        max_per_class: training images of the head class.
        val_per_class: balanced val images per class, >= 1.
        test_per_class: balanced test images per class, >= 1.
        image_size: side of the square images in pixels, >= 8.
        seed: seed of ``numpy.random.default_rng``; equal arguments give
            byte-identical files.

    Returns:
        dict: ``root``, ``train_list``, ``val_list``, ``test_list``,
        ``classes_file`` (absolute paths), ``classes`` (list of C names),
        ``counts`` (list of C training counts, head first), ``val_counts``,
        ``test_counts`` and ``num_augmented`` (lists of C ints).
    """
    num_classes = check_int(
        'num_classes', num_classes, 2, NUM_DIGIT_CLASSES,
        'The digits provide 10 classes; at least 2 make a long tail.')
    counts = long_tailed_counts(num_classes, max_per_class, imbalance_ratio)
    val_per_class = check_int('val_per_class', val_per_class, 1)
    test_per_class = check_int('test_per_class', test_per_class, 1)
    image_size = check_int('image_size', image_size, 8)
    seed = check_int('seed', seed, 0)

    images, labels = load_digit_images(image_size)
    by_class = indices_by_class(labels)
    smallest = min(len(by_class[c]) for c in range(num_classes))
    if val_per_class + test_per_class >= smallest:
        raise ValueError(
            f'val_per_class={val_per_class} + test_per_class='
            f'{test_per_class} leaves no distinct digit for training: the '
            f'smallest class has {smallest} digits. Lower them.')

    rng = np.random.default_rng(seed)
    classes = [f'digit_{c}' for c in range(num_classes)]
    os.makedirs(root, exist_ok=True)
    lines: Dict[str, List[str]] = {k: [] for k in LIST_FILES}
    num_aug = []

    def _write(split: str, c: int, k: int, grey: np.ndarray) -> None:
        rel_dir = f'{split}/{c}'
        os.makedirs(osp.join(root, rel_dir), exist_ok=True)
        rel = f'{rel_dir}/{split}_{c}_{k:04d}.jpg'
        bg = textured_background(image_size, image_size, rng)
        save_jpeg(
            colourise(grey, random_ink_colour(rng), bg), osp.join(root, rel))
        lines[split].append(f'{rel} {c}')

    for c in range(num_classes):
        order = rng.permutation(by_class[c])
        test_idx = order[:test_per_class]
        val_idx = order[test_per_class:test_per_class + val_per_class]
        pool = order[test_per_class + val_per_class:]
        n_train = counts[c]
        n_real = min(n_train, len(pool))
        for k, i in enumerate(pool[:n_real]):
            _write('train', c, k, images[i])
        for k in range(n_real, n_train):
            src = images[pool[(k - n_real) % n_real]]
            _write('train', c, k, jitter_digit(src, rng))
        num_aug.append(n_train - n_real)
        for k, i in enumerate(val_idx):
            _write('val', c, k, images[i])
        for k, i in enumerate(test_idx):
            _write('test', c, k, images[i])

    out = {'root': osp.abspath(root)}
    for split, fname in LIST_FILES.items():
        path = osp.join(root, fname)
        with open(path, 'w') as f:
            f.write('\n'.join(lines[split]) + '\n')
        out[f'{split}_list'] = osp.abspath(path)
    classes_file = osp.join(root, 'classes.txt')
    with open(classes_file, 'w') as f:
        f.write('\n'.join(classes) + '\n')
    out.update(
        classes_file=osp.abspath(classes_file),
        classes=classes,
        counts=counts,
        val_counts=[val_per_class] * num_classes,
        test_counts=[test_per_class] * num_classes,
        num_augmented=num_aug)
    return out
