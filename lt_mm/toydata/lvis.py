"""A tiny LVIS v1 look-alike: long-tailed digit instances with masks.

LVIS (Gupta et al., "LVIS: A Dataset for Large Vocabulary Instance
Segmentation", CVPR 2019) is federated: each image lists the categories
verified absent (``neg_category_ids``) and those present but not
exhaustively annotated (``not_exhaustive_category_ids``), and every
category is binned by the number of *training images* containing it
(Sec. 4 / Sec. 5: rare 1-10, common 11-100, frequent > 100 images; AP
is reported per bin as APr / APc / APf).

This module writes the LVIS v1 json format with COCO-2017 style image
folders, using real handwritten digits as objects, so that
``lvis.LVIS``, pycocotools' ``COCO`` and mmdet's ``LVISV1Dataset``
(which derives the image path from ``coco_url``) all read it unchanged.

Because the toy set has tens of images, the frequency thresholds are
scaled down (stored explicitly in each category's ``frequency``)::

    r (rare):     image_count <= 2
    c (common):   3 <= image_count <= 6
    f (frequent): image_count >= 7
"""
from __future__ import annotations

import json
import os
import os.path as osp
from typing import Dict, List, Sequence, Tuple

import numpy as np

from .digits import (NUM_DIGIT_CLASSES, STROKE_THRESHOLD, check_int, colourise,
                     first_free_box, indices_by_class, random_ink_colour,
                     raw_digits, resize_digit, save_jpeg, textured_background)

#: Scaled-down LVIS frequency thresholds on the training image count.
RARE_MAX_IMAGES = 2
COMMON_MAX_IMAGES = 6
#: Prefix that mmdet's LVISV1Dataset strips from ``coco_url``.
COCO_URL_PREFIX = 'http://images.cocodataset.org/'


def frequency_letter(image_count: int) -> str:
    """LVIS frequency bin of a category from its training image count,
    with the scaled-down thresholds of this toy set (module docstring):
    ``'r'`` for <= 2 images, ``'c'`` for 3..6, ``'f'`` for >= 7."""
    image_count = check_int('image_count', image_count, 0)
    if image_count <= RARE_MAX_IMAGES:
        return 'r'
    if image_count <= COMMON_MAX_IMAGES:
        return 'c'
    return 'f'


def _geometric(first: float, last: float, n: int) -> List[int]:
    """``n`` values from ``first`` to ``last`` on a geometric scale,
    rounded half up."""
    if n == 1:
        return [int(np.floor(first + 0.5))]
    t = np.arange(n) / (n - 1)
    return [int(np.floor(v + 0.5)) for v in first * (last / first)**t]


def design_image_counts(num_classes: int, num_train: int) -> List[int]:
    """Training image count of each category (head first).

    The categories are split into frequent / common / rare groups of
    ``C//3``, ``C - 2*(C//3)`` and ``C//3`` categories (at least one
    each); image counts fall geometrically from
    ``max(7, round(0.6 * num_train))`` to 7 (frequent), from 6 to 3
    (common) and from 2 to 1 (rare), so r, c and f all occur.

    Returns:
        list[int]: C non-increasing counts in ``[1, num_train]``.
    """
    n_f = n_r = max(1, num_classes // 3)
    n_c = num_classes - n_f - n_r
    head = max(COMMON_MAX_IMAGES + 1, int(np.floor(0.6 * num_train + 0.5)))
    return (_geometric(head, COMMON_MAX_IMAGES + 1, n_f) +
            _geometric(COMMON_MAX_IMAGES, RARE_MAX_IMAGES + 1, n_c) +
            _geometric(RARE_MAX_IMAGES, 1, n_r))


def convex_hull(points: np.ndarray) -> np.ndarray:
    """Convex hull of 2-D integer points (Andrew's monotone chain).

    Args:
        points: (P, 2) array of ``(x, y)``.

    Returns:
        np.ndarray: (H, 2) hull vertices in counter-clockwise order
        (y axis up), without collinear points.
    """
    pts = sorted(set(map(tuple, np.asarray(points).tolist())))
    if len(pts) <= 2:
        return np.asarray(pts, dtype=np.float64)

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list = []
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return np.asarray(lower[:-1] + upper[:-1], dtype=np.float64)


def mask_to_polygon(
        mask: np.ndarray) -> Tuple[List[float], float, List[float]]:
    """COCO polygon of a binary mask: the convex hull of its pixels.

    The hull is taken over the four corners of every foreground pixel, so
    it covers the whole stroke; pixel ``(row r, col c)`` spans
    ``[c, c+1] x [r, r+1]`` in COCO coordinates.

    Args:
        mask: bool (H, W) with at least one foreground pixel.

    Returns:
        tuple: ``(polygon, area, bbox)``; polygon ``[x1, y1, x2, y2, ...]``
        with >= 3 vertices, area from the shoelace formula, bbox
        ``[x, y, w, h]`` (the tight box of the foreground pixels).
    """
    mask = np.asarray(mask, dtype=bool)
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        raise ValueError('mask is empty; an instance needs >= 1 pixel.')
    # only the leftmost / rightmost pixel of each row can reach the hull
    used = np.flatnonzero(mask.any(axis=1))
    left = mask[used].argmax(axis=1)
    right = mask.shape[1] - 1 - mask[used, ::-1].argmax(axis=1)
    corners = np.concatenate([
        np.stack([xs, used + dy], axis=1) for xs in (left, right + 1)
        for dy in (0, 1)
    ])
    hull = convex_hull(corners)
    x, y = hull[:, 0], hull[:, 1]
    area = 0.5 * abs(
        float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
    x0, y0 = float(cols.min()), float(rows.min())
    bbox = [x0, y0, float(cols.max() + 1) - x0, float(rows.max() + 1) - y0]
    return [float(v) for v in hull.ravel()], area, bbox


def _assign_images(counts: Sequence[int], num_images: int,
                   rng: np.random.Generator) -> List[List[int]]:
    """Give category ``c`` ``counts[c]`` distinct images, least-loaded
    images first (random tie-break). Returns per image the category list."""
    present: List[List[int]] = [[] for _ in range(num_images)]
    load = np.zeros(num_images)
    for c, k in enumerate(counts):
        order = np.lexsort((rng.random(num_images), load))[:k]
        for img in sorted(order.tolist()):
            present[img].append(c)
            load[img] += 1
    return present


def _place(sides: List[int],
           image_size: int,
           rng: np.random.Generator,
           tries: int = 60) -> List[Tuple[int, int, int]]:
    """Non-overlapping positions for squares of the given sides (largest
    first, shrinking by 15 % when no room is found; may overlap only as a
    last resort). Returns ``(x0, y0, side)`` in the input order."""
    out: Dict[int, Tuple[int, int, int]] = {}
    boxes: List[Tuple[int, int, int]] = []
    for i in sorted(range(len(sides)), key=lambda i: -sides[i]):
        side = min(sides[i], image_size)
        while True:
            xy = rng.integers(0, image_size - side + 1, size=(tries, 2))
            j = first_free_box(boxes, xy, side)
            if j >= 0 or side <= 6:
                x, y = (int(v) for v in xy[max(j, 0)])
                break
            side = max(6, int(side * 0.85))
        boxes.append((x, y, side))
        out[i] = (x, y, side)
    return [out[i] for i in range(len(sides))]


def make_lvis(root: str,
              num_classes: int = 8,
              num_train: int = 24,
              num_val: int = 8,
              image_size: int = 64,
              seed: int = 0,
              instance_size: Tuple[float, float] = (0.2, 0.5),
              min_val_images: int = 1) -> Dict:
    """Write a tiny long-tailed instance-segmentation set in LVIS v1 format.

    Category ``c + 1`` (1-based ids, as in LVIS) is handwritten digit ``c``.
    Training image counts follow :func:`design_image_counts` (r, c and f
    all occur, frequency letters from :func:`frequency_letter`); frequent
    categories get a second instance in about half of their images, so the
    instance counts are long-tailed too. In val each category appears in
    ``max(min_val_images, round(image_count * num_val / num_train))``
    images (at most ``num_val``), so every category can be evaluated; a
    floor above 1 gives the rare group more than one instance per class, so
    that APr is not decided by one or two detections (as LVIS val, where
    the r/c/f groups follow the *training* counts, but with only a handful
    of classes per group here). Train and val use disjoint real digits.

    Each instance is a digit of side ``U(*instance_size) * image_size``
    pixels painted in a random bright colour on a dark texture, without
    overlap. Its segmentation is one polygon, the convex hull of its
    stroke pixels (grey >= 128, see :func:`mask_to_polygon`); ``area`` is
    the polygon area and ``bbox`` the tight stroke box.

    Federated metadata, drawn at random for the evaluation protocol to be
    exercised: each absent category enters ``neg_category_ids`` with
    probability 1/2, and an image marks one of its present categories as
    not exhaustively annotated with probability 1/4; each split has at
    least one image of each kind (a negative list only if some image lacks
    a category).

    Files written::

        root/train2017/000000000001.jpg ...  root/val2017/...
        root/annotations/lvis_v1_train.json  root/annotations/lvis_v1_val.json

    Image ids are unique over both splits (train 1..N, then val); the
    image ``coco_url`` is ``http://images.cocodataset.org/<split>2017/
    <id:012d>.jpg`` so mmdet's ``LVISV1Dataset`` (``data_root=root``,
    ``data_prefix=dict(img='')``) finds ``root/<split>2017/<id>.jpg``.
    The categories (with train ``image_count`` / ``instance_count``) are
    identical in both json files, as in LVIS v1.

    Args:
        root: output folder (created if needed; same-named files are
            overwritten).
        num_classes: number of categories in [3, 10].
        num_train: training images, >= 7 (a frequent category needs 7).
        num_val: validation images, >= 1.
        image_size: canvas side in pixels, >= 32.
        seed: seed of ``numpy.random.default_rng``; equal arguments give
            byte-identical files.
        instance_size: ``(low, high)`` digit box side as a fraction of
            ``image_size``, ``0 < low <= high <= 1``.
        min_val_images: val images per category at least, >= 1.

    Returns:
        dict: ``root``, ``train_json``, ``val_json``, ``train_dir``,
        ``val_dir`` (absolute paths), ``classes`` (names, by category id),
        ``frequencies`` (letters), ``image_counts``, ``instance_counts``,
        ``val_image_counts``, ``val_instance_counts`` (lists of C ints).
    """
    num_classes, num_train, num_val, image_size, seed, size_range = \
        _check_args(num_classes, num_train, num_val, image_size, seed,
                    instance_size)
    rng = np.random.default_rng(seed)
    raw, labels = raw_digits()
    pools = _split_digit_pools(labels, rng)
    image_counts = design_image_counts(num_classes, num_train)
    val_image_counts = _val_image_counts(
        image_counts, num_val, num_train,
        check_int('min_val_images', min_val_images, 1))
    freqs = [frequency_letter(k) for k in image_counts]

    ann_dir = osp.join(root, 'annotations')
    os.makedirs(ann_dir, exist_ok=True)
    out: Dict = {'root': osp.abspath(root)}
    split_data = {}
    next_ann_id = 1
    for split, n_img, counts, first_id in (('train', num_train, image_counts,
                                            1),
                                           ('val', num_val, val_image_counts,
                                            num_train + 1)):
        img_dir = osp.join(root, f'{split}2017')
        os.makedirs(img_dir, exist_ok=True)
        images, anns, inst_counts, next_ann_id = _write_split(
            split, img_dir, n_img, counts, first_id, next_ann_id, freqs,
            (raw, pools[split]), image_size, size_range, rng)
        split_data[split] = (images, anns, inst_counts)
        out[f'{split}_dir'] = osp.abspath(img_dir)

    train_inst = split_data['train'][2]
    categories = _categories(freqs, image_counts, train_inst)
    for split, (images, anns, _) in split_data.items():
        path = osp.join(ann_dir, f'lvis_v1_{split}.json')
        _write_json(path, images, anns, categories)
        out[f'{split}_json'] = osp.abspath(path)
    out.update(
        classes=[cat['name'] for cat in categories],
        frequencies=freqs,
        image_counts=image_counts,
        instance_counts=train_inst,
        val_image_counts=val_image_counts,
        val_instance_counts=split_data['val'][2])
    return out


def _check_args(num_classes: int, num_train: int, num_val: int,
                image_size: int, seed: int,
                instance_size: Tuple[float, float]) -> tuple:
    """Validate the arguments of :func:`make_lvis`; returns them checked,
    ``instance_size`` as a float pair."""
    num_classes = check_int(
        'num_classes', num_classes, 3, NUM_DIGIT_CLASSES,
        'Rare, common and frequent groups need >= 3 categories; the digits '
        'provide 10.')
    num_train = check_int(
        'num_train',
        num_train,
        COMMON_MAX_IMAGES + 1,
        hint='A frequent category must appear in >= 7 training images.')
    num_val = check_int('num_val', num_val, 1)
    image_size = check_int(
        'image_size',
        image_size,
        32,
        hint='Smaller canvases cannot hold the digits.')
    seed = check_int('seed', seed, 0)
    try:
        lo, hi = (float(v) for v in instance_size)
    except (TypeError, ValueError):
        raise ValueError(f'instance_size={instance_size!r} must be a pair '
                         '(low, high) of fractions.') from None
    if not 0 < lo <= hi <= 1:
        raise ValueError(f'instance_size={instance_size!r} must satisfy '
                         '0 < low <= high <= 1 (fractions of image_size).')
    return num_classes, num_train, num_val, image_size, seed, (lo, hi)


def _split_digit_pools(labels: np.ndarray,
                       rng: np.random.Generator) -> Dict[str, list]:
    """Per class, a random half of the real digits for train, the other
    half for val (disjoint)."""
    pools: Dict[str, list] = {'train': [], 'val': []}
    for idx in indices_by_class(labels):
        idx = rng.permutation(idx)
        pools['train'].append(idx[:len(idx) // 2])
        pools['val'].append(idx[len(idx) // 2:])
    return pools


def _val_image_counts(image_counts: Sequence[int],
                      num_val: int,
                      num_train: int,
                      min_val_images: int = 1) -> List[int]:
    """``max(min_val_images, round(k * num_val / num_train))`` val images
    per category (rounded half up, at most ``num_val``)."""
    return [
        min(num_val,
            max(min_val_images, int(np.floor(k * num_val / num_train + 0.5))))
        for k in image_counts
    ]


def _instance_categories(cats: Sequence[int], freqs: Sequence[str],
                         rng: np.random.Generator) -> List[int]:
    """One instance per present category, two for a frequent one with
    probability 1/2."""
    inst_cats: List[int] = []
    for c in cats:
        reps = 2 if freqs[c] == 'f' and rng.random() < 0.5 else 1
        inst_cats += [c] * reps
    return inst_cats


def _paint_digit(canvas: np.ndarray, grey: np.ndarray, x: int, y: int,
                 side: int,
                 rng: np.random.Generator) -> Tuple[list, float, list]:
    """Paint ``grey`` (side x side) at ``(x, y)`` in a random ink colour;
    returns its polygon, area and bbox in image coordinates."""
    region = canvas[y:y + side, x:x + side]
    canvas[y:y + side, x:x + side] = colourise(grey, random_ink_colour(rng),
                                               region)
    stroke = grey >= STROKE_THRESHOLD
    if not stroke.any():
        stroke = grey == grey.max()
    poly, area, bbox = mask_to_polygon(stroke)
    poly = [v + (x if i % 2 == 0 else y) for i, v in enumerate(poly)]
    bbox = [bbox[0] + x, bbox[1] + y, bbox[2], bbox[3]]
    return poly, area, bbox


def _render_image(cats: Sequence[int], freqs: Sequence[str], digits: tuple,
                  image_size: int, size_range: Tuple[float, float],
                  rng: np.random.Generator) -> Tuple[np.ndarray, list]:
    """Draw one image holding ``cats``; returns the canvas and, per
    instance, ``(category, polygon, area, bbox)``."""
    raw, pool = digits
    lo, hi = size_range
    inst_cats = _instance_categories(cats, freqs, rng)
    sides = [int(round(rng.uniform(lo, hi) * image_size)) for _ in inst_cats]
    boxes = _place(sides, image_size, rng)
    canvas = textured_background(image_size, image_size, rng)
    instances = []
    for c, (x, y, side) in zip(inst_cats, boxes):
        grey = resize_digit(raw[rng.choice(pool[c])], side)
        instances.append((c, ) + _paint_digit(canvas, grey, x, y, side, rng))
    return canvas, instances


def _federated_lists(cats: Sequence[int], num_classes: int,
                     rng: np.random.Generator) -> Tuple[list, list]:
    """``neg_category_ids`` (each absent category with probability 1/2)
    and ``not_exhaustive_category_ids`` (one present category with
    probability 1/4) of one image (1-based ids)."""
    absent = [c for c in range(num_classes) if c not in cats]
    neg = [c + 1 for c in absent if rng.random() < 0.5]
    not_exh = []
    if cats and rng.random() < 0.25:
        not_exh = [int(rng.choice(cats)) + 1]
    return neg, not_exh


def _ensure_federated(images: List[dict], present: List[List[int]],
                      num_classes: int) -> None:
    """Make the split hold a not-exhaustive list and (when some image
    lacks a category) a negative list, so the protocol is exercised."""
    if not any(im['not_exhaustive_category_ids'] for im in images):
        k = next(i for i, cats in enumerate(present) if cats)
        images[k]['not_exhaustive_category_ids'] = [present[k][0] + 1]
    partial = [i for i, cats in enumerate(present) if len(cats) < num_classes]
    if partial and not any(im['neg_category_ids'] for im in images):
        k = partial[0]
        images[k]['neg_category_ids'] = [
            next(c + 1 for c in range(num_classes) if c not in present[k])
        ]


def _write_split(split: str, img_dir: str, n_img: int, counts: Sequence[int],
                 first_id: int, next_ann_id: int, freqs: Sequence[str],
                 digits: tuple, image_size: int, size_range: Tuple[float,
                                                                   float],
                 rng: np.random.Generator) -> tuple:
    """Draw and save the images of one split; returns its image entries,
    annotations, instance counts per category and the next annotation
    id."""
    num_classes = len(freqs)
    present = _assign_images(counts, n_img, rng)
    images, anns = [], []
    inst_counts = [0] * num_classes
    for k, cats in enumerate(present):
        img_id = first_id + k
        canvas, instances = _render_image(cats, freqs, digits, image_size,
                                          size_range, rng)
        for c, poly, area, bbox in instances:
            anns.append({
                'id': next_ann_id,
                'image_id': img_id,
                'category_id': c + 1,
                'bbox': bbox,
                'area': area,
                'segmentation': [poly],
                'iscrowd': 0,
            })
            next_ann_id += 1
            inst_counts[c] += 1
        name = f'{img_id:012d}.jpg'
        save_jpeg(canvas, osp.join(img_dir, name))
        neg, not_exh = _federated_lists(cats, num_classes, rng)
        images.append({
            'id': img_id,
            'file_name': name,
            'coco_url': f'{COCO_URL_PREFIX}{split}2017/{name}',
            'height': image_size,
            'width': image_size,
            'neg_category_ids': neg,
            'not_exhaustive_category_ids': not_exh,
        })
    _ensure_federated(images, present, num_classes)
    return images, anns, inst_counts, next_ann_id


def _categories(freqs: Sequence[str], image_counts: Sequence[int],
                train_inst: Sequence[int]) -> List[dict]:
    """LVIS category entries (ids 1..C) with the training counts."""
    return [{
        'id': c + 1,
        'name': f'digit_{c}',
        'synset': f'digit_{c}.n.01',
        'synonyms': [f'digit_{c}', str(c)],
        'def': f'the handwritten digit {c}',
        'frequency': freqs[c],
        'image_count': image_counts[c],
        'instance_count': train_inst[c],
    } for c in range(len(freqs))]


def _write_json(path: str, images: List[dict], anns: List[dict],
                categories: List[dict]) -> None:
    """Write one LVIS v1 annotation json."""
    doc = {
        'info': {
            'description': 'lt_mm toy LVIS v1 (handwritten digits)',
            'version': '1.0'
        },
        'licenses': [],
        'images': images,
        'annotations': anns,
        'categories': categories,
    }
    with open(path, 'w') as f:
        json.dump(doc, f)
