"""A tiny ADE20K look-alike: long-tailed digit mosaics for segmentation.

ADE20K (Zhou et al., "Scene Parsing through ADE20K Dataset", CVPR 2017)
is naturally long-tailed in pixel frequency: a few stuff classes cover
most pixels while most object classes are small and rare (DisAlign, Zhang
et al., CVPR 2021, Sec. 4.2 uses it for that reason). This module writes
the ``ADEChallengeData2016`` layout with real handwritten digits painted on
textured canvases, so mmseg's ``ADE20KDataset`` (``reduce_zero_label=True``)
reads it unchanged:

* PNG value 0 = "other" (becomes 255 = ignore after ``reduce_zero_label``);
* digit class ``c`` (0-based) has PNG value ``c + 1`` (becomes ``c``).
"""
from __future__ import annotations

import os
import os.path as osp
from typing import Dict, List, Tuple

import numpy as np

from .digits import (NUM_DIGIT_CLASSES, STROKE_THRESHOLD, check_int,
                     check_positive, colourise, exponential_profile,
                     first_free_box, indices_by_class, random_ink_colour,
                     raw_digits, resize_digit, save_jpeg, save_label_png,
                     textured_background)

#: Fraction of the canvas side taken by the head / tail class digit boxes.
HEAD_SIDE, TAIL_SIDE = 0.4, 0.18
#: Expected number of head-class instances per image.
HEAD_DENSITY = 1.2
#: Smallest digit box side in pixels after shrinking to fit.
MIN_SIDE = 6

Placement = Tuple[int, int, int, int]  # (class, side, x0, y0)


def pack_instances(instances: List[Tuple[int, int]],
                   num_images: int,
                   image_size: int,
                   rng: np.random.Generator,
                   tries: int = 40) -> List[List[Placement]]:
    """Distribute square instances over images without overlap.

    Larger instances are placed first, each into the least-occupied image
    where a random non-overlapping position is found within ``tries``
    attempts; if no image has room the side shrinks by 15 % (down to
    ``MIN_SIDE``) and, as a last resort, the instance is placed anywhere in
    the least-occupied image (it may then overlap).

    Args:
        instances: list of ``(class, side)`` pairs.
        num_images: number of canvases.
        image_size: canvas side in pixels.
        rng: random generator (the only source of randomness).

    Returns:
        list: per image, a list of ``(class, side, x0, y0)`` placements.
    """
    order = sorted(
        range(len(instances)), key=lambda i: (-instances[i][1], rng.random()))
    boxes: List[List[Tuple[int, int, int]]] = [[] for _ in range(num_images)]
    placed: List[List[Placement]] = [[] for _ in range(num_images)]
    load = np.zeros(num_images)

    for i in order:
        cls, side = instances[i]
        side = min(side, image_size)
        done = False
        while not done:
            tiebreak = rng.random(num_images)
            for img in np.lexsort((tiebreak, load)):
                xy = rng.integers(0, image_size - side + 1, size=(tries, 2))
                j = first_free_box(boxes[img], xy, side)
                if j >= 0:
                    x, y = xy[j]
                    done = True
                    break
            if not done:
                if side > MIN_SIDE:
                    side = max(MIN_SIDE, int(side * 0.85))
                    continue
                img = int(np.argmin(load))
                x, y = rng.integers(0, image_size - side + 1, size=2)
                done = True
        boxes[img].append((int(x), int(y), side))
        placed[img].append((cls, side, int(x), int(y)))
        load[img] += side * side
    return placed


def _render(placements: List[Placement], pool: List[np.ndarray],
            raw: np.ndarray, image_size: int,
            rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Paint one canvas; returns (RGB uint8 (S, S, 3), label uint8 (S, S))."""
    img = textured_background(image_size, image_size, rng)
    label = np.zeros((image_size, image_size), dtype=np.uint8)
    for cls, side, x, y in placements:
        grey = resize_digit(raw[rng.choice(pool[cls])], side)
        region = img[y:y + side, x:x + side]
        img[y:y + side, x:x + side] = colourise(grey, random_ink_colour(rng),
                                                region)
        stroke = grey >= STROKE_THRESHOLD
        label[y:y + side, x:x + side][stroke] = cls + 1
    return img, label


def make_ade20k(root: str,
                num_classes: int = 10,
                num_train: int = 20,
                num_val: int = 6,
                image_size: int = 64,
                seed: int = 0,
                imbalance_ratio: float = 10.0,
                head_side: float = HEAD_SIDE,
                tail_side: float = TAIL_SIDE,
                head_density: float = HEAD_DENSITY) -> Dict:
    """Write a tiny long-tailed segmentation set in ADE20K layout.

    Every canvas is a random dark texture ("other", PNG value 0) with
    non-overlapping handwritten digits painted in random bright colours.
    Digit class ``c`` (0-based, PNG value ``c + 1``) follows a long-tailed
    profile in both frequency and size:

    * instances per split: ``max(1, round(N * d * r ** (-c / (C - 1))))``
      with ``N`` the number of images, ``d = head_density`` (default 1.2)
      and ``r = imbalance_ratio``
      (exponential profile, Cui et al., CVPR 2019, Sec. 5);
    * box side: from ``head_side * image_size`` (class 0, default 0.4)
      linearly down to ``tail_side * image_size`` (class ``C - 1``,
      default 0.18).

    So class 0 (label 1 in the PNG, label 0 after ``reduce_zero_label``) is
    frequent and large and class ``C - 1`` rare and small; every class
    appears in both splits. The pixel label of a digit is its stroke (grey
    level >= 128 after upscaling) inside its box; the rest of the box stays
    "other". Train and val digits come from disjoint halves of the real
    digits of each class.

    Files written (``k`` counts from 1, as in ADEChallengeData2016)::

        root/images/training/ADE_train_%08d.jpg       (RGB JPEG)
        root/annotations/training/ADE_train_%08d.png  (uint8 'L' PNG)
        root/images/validation/ADE_val_%08d.jpg
        root/annotations/validation/ADE_val_%08d.png

    Args:
        root: output folder (created if needed; same-named files are
            overwritten).
        num_classes: C in [2, 10] (digit classes; "other" not counted).
        num_train: training canvases, >= 1.
        num_val: validation canvases, >= 1.
        image_size: canvas side in pixels, >= 32.
        seed: seed of ``numpy.random.default_rng``; equal arguments give
            byte-identical files.
        imbalance_ratio: head / tail instance-count ratio, >= 1.
        head_side: box side of class 0 as a fraction of ``image_size``, in
            (0, 1].
        tail_side: box side of class ``C - 1``, in (0, ``head_side``].
        head_density: expected instances of class 0 per image, > 0 (the
            other classes follow the profile; boxes that do not fit shrink,
            see :func:`pack_instances`).

    Returns:
        dict: ``root``, ``classes`` (C names), ``train_images``,
        ``val_images``, ``train_annotations``, ``val_annotations`` (lists
        of paths relative to ``root``), ``pixel_counts`` and
        ``val_pixel_counts`` (lists of C ints: pixels of each class after
        ``reduce_zero_label``), ``other_pixels`` / ``val_other_pixels``
        (pixels of value 0), ``instance_counts`` / ``val_instance_counts``
        (lists of C ints).
    """
    num_classes = check_int(
        'num_classes', num_classes, 2, NUM_DIGIT_CLASSES,
        'The digits provide 10 classes; at least 2 make a long tail.')
    num_train = check_int('num_train', num_train, 1)
    num_val = check_int('num_val', num_val, 1)
    image_size = check_int(
        'image_size',
        image_size,
        32,
        hint='Smaller canvases cannot hold the digits.')
    seed = check_int('seed', seed, 0)
    ratio = check_positive('imbalance_ratio', imbalance_ratio)
    if ratio < 1:
        raise ValueError(f'imbalance_ratio={imbalance_ratio!r} must be >= 1; '
                         'class 0 is the head class.')

    head_density = check_positive('head_density', head_density)
    head_side = check_positive('head_side', head_side)
    tail_side = check_positive('tail_side', tail_side)
    if head_side > 1 or tail_side > head_side:
        raise ValueError(
            f'head_side={head_side!r}, tail_side={tail_side!r}: need '
            '0 < tail_side <= head_side <= 1 (fractions of image_size; '
            'class 0 is the head class).')

    rng = np.random.default_rng(seed)
    raw, labels = raw_digits()
    train_pool, val_pool = [], []
    for idx in indices_by_class(labels):
        idx = rng.permutation(idx)
        half = len(idx) // 2
        train_pool.append(idx[:half])
        val_pool.append(idx[half:])

    frac = np.arange(num_classes) / (num_classes - 1)
    sides = np.rint(image_size * (head_side -
                                  (head_side - tail_side) * frac)).astype(int)
    out: Dict = {
        'root': osp.abspath(root),
        'classes': [f'digit_{c}' for c in range(num_classes)]
    }
    splits = (('training', 'train', num_train, train_pool, ''),
              ('validation', 'val', num_val, val_pool, 'val_'))
    for folder, tag, n_img, pool, key in splits:
        n_inst = np.maximum(
            1,
            np.rint(
                exponential_profile(num_classes, n_img * head_density,
                                    ratio))).astype(int)
        instances = [(c, int(sides[c])) for c in range(num_classes)
                     for _ in range(n_inst[c])]
        layout = pack_instances(instances, n_img, image_size, rng)
        img_dir = osp.join(root, 'images', folder)
        ann_dir = osp.join(root, 'annotations', folder)
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
        hist = np.zeros(num_classes + 1, dtype=np.int64)
        img_paths, ann_paths = [], []
        for k, placements in enumerate(layout, start=1):
            img, label = _render(placements, pool, raw, image_size, rng)
            name = f'ADE_{tag}_{k:08d}'
            img_rel = f'images/{folder}/{name}.jpg'
            ann_rel = f'annotations/{folder}/{name}.png'
            save_jpeg(img, osp.join(root, img_rel))
            save_label_png(label, osp.join(root, ann_rel))
            hist += np.bincount(label.ravel(), minlength=num_classes + 1)
            img_paths.append(img_rel)
            ann_paths.append(ann_rel)
        out[f'{tag}_images'] = img_paths
        out[f'{tag}_annotations'] = ann_paths
        out[f'{key}pixel_counts'] = [int(v) for v in hist[1:]]
        out[f'{key}other_pixels'] = int(hist[0])
        out[f'{key}instance_counts'] = [int(v) for v in n_inst]
    return out
