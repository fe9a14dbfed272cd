"""LVIS evaluation: the fast backend against the official one, side by side.

Usage::

    python benchmarks/bench_lvis_eval.py [--quick] [--images N] [--dets N]
        [--segm-images N] [--repeats R] [--iou-types bbox segm]

A synthetic LVIS-v1-like validation set is made in this script: 1203
categories (rare / common / frequent 337 / 461 / 405), images of COCO
sizes with 3-15 objects (polygon masks, small / medium / large), per-image
federated lists (``neg_category_ids``, ``not_exhaustive_category_ids``) and
``--dets`` detections per image (default 400, more than LVIS' 300 per
image, scores on a 0.01 grid so that ties occur, also at the 300 cut):
jittered copies of the ground truth plus false positives of present,
verified-absent, not-exhaustive and unknown categories; one image has no
detection and one annotated category none either. Box results for
``bbox``; RLE masks with their boxes (as mmdet writes them) for ``segm``.

``lt_mm.det.lvis_eval.evaluate_lvis`` runs with ``backend='official'``
(the lvis API's evaluation, bit-identical to ``lvis.LVISEval``; its
``accumulate`` is lt_mm's numpy-2 one, a little faster than the original,
so the ratio is conservative) and ``backend='fast'`` on identical inputs
in this process, one thread each (``OMP_NUM_THREADS=1``, ``num_workers=1``),
interleaved over ``--repeats`` repeats; each run gets a fresh copy of the
ground truth built outside the timer. Printed: min / median seconds, the
time ratio official / fast, the peak resident memory added by each run
(Linux ``VmHWM`` after resetting it, when available) and the largest
absolute difference of AP, AP50, AP75, APs, APm, APl, APr, APc, APf.
Acceptance (issue #13): fast >= 5x faster, every metric within 1e-6.

``--quick`` (tiny set, used by the test suite) checks agreement only and
asserts no timing; the exit status is 1 if a metric differs by > 1e-6.
"""
from __future__ import annotations

import os

for _var in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS'):
    os.environ.setdefault(_var, '1')

import argparse
import importlib.util
import json
import os.path as osp
import statistics
import sys
import time
from typing import Dict, List, Optional, Tuple

import numpy as np
from lvis import LVIS
from pycocotools import mask as mask_utils

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
NUM_RARE, NUM_COMMON, NUM_FREQUENT = 337, 461, 405
TOLERANCE = 1e-6
SPEEDUP_TARGET = 5.0
IMAGE_SIZES = ((480, 640), (640, 480), (427, 640), (640, 427), (512, 512))


def load_lvis_eval():
    """``lt_mm/det/lvis_eval.py`` without ``lt_mm.det``'s registrations.

    The evaluator module imports only lvis / numpy / pycocotools /
    faster-coco-eval; importing it as ``lt_mm.det.lvis_eval`` would first
    run ``lt_mm/det/__init__.py``, which imports mmdet (seconds, and
    memory that would blur the measurements).
    """
    path = osp.join(REPO, 'lt_mm', 'det', 'lvis_eval.py')
    spec = importlib.util.spec_from_file_location('_bench_lvis_eval', path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _octagon(x: float, y: float, w: float, h: float) -> List[float]:
    """An octagon inscribed in the box (a polygon mask)."""
    a, b = 0.3 * w, 0.3 * h
    pts = [(x + a, y), (x + w - a, y), (x + w, y + b), (x + w, y + h - b),
           (x + w - a, y + h), (x + a, y + h), (x, y + h - b), (x, y + b)]
    return [round(float(c), 2) for p in pts for c in p]


def _poly_area(poly: List[float]) -> float:
    xs, ys = np.asarray(poly[0::2]), np.asarray(poly[1::2])
    return float(
        0.5 * abs(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))))


def _random_boxes(rng,
                  n: int,
                  h: int,
                  w: int,
                  lo: float = 6.0,
                  hi_frac: float = 0.6) -> np.ndarray:
    """(n, 4) [x, y, w, h] boxes, sides log-uniform in [lo, hi_frac*side]
    (small, medium and large objects all occur)."""
    side = np.exp(rng.uniform(np.log(lo), np.log(hi_frac * min(h, w)), n))
    aspect = np.exp(rng.uniform(np.log(0.5), np.log(2.0), n))
    bw = np.minimum(side * np.sqrt(aspect), w - 1)
    bh = np.minimum(side / np.sqrt(aspect), h - 1)
    x = rng.uniform(0, w - bw)
    y = rng.uniform(0, h - bh)
    return np.stack([x, y, bw, bh], axis=1)


def make_dataset(num_images: int,
                 num_dets: int,
                 seed: int = 0) -> Tuple[dict, List[dict], List[dict]]:
    """A synthetic LVIS-v1-like val set and detections (see module doc).

    Returns:
        (gt_dict, bbox_results, segm_results): the LVIS json as a dict and
        two lists of COCO result dicts (``num_dets`` per image except the
        last image, which has none).
    """
    rng = np.random.default_rng(seed)
    num_cats = NUM_RARE + NUM_COMMON + NUM_FREQUENT
    freqs = np.array(['r'] * NUM_RARE + ['c'] * NUM_COMMON +
                     ['f'] * NUM_FREQUENT)
    rng.shuffle(freqs)
    counts = {'r': (1, 11), 'c': (11, 101), 'f': (101, 1000)}
    categories = [
        dict(
            id=i + 1,
            name=f'category_{i + 1:04d}',
            synset=f'category_{i + 1:04d}.n.01',
            frequency=str(f),
            image_count=int(rng.integers(*counts[f])))
        for i, f in enumerate(freqs)
    ]
    cat_ids = np.arange(1, num_cats + 1)
    weight = np.select([freqs == 'f', freqs == 'c'], [20.0, 4.0], 1.0)
    weight /= weight.sum()
    images, annotations = [], []
    bbox_results, segm_results = [], []
    for index in range(num_images):
        img_id = index + 1
        h, w = IMAGE_SIZES[int(rng.integers(len(IMAGE_SIZES)))]
        n_gt = int(rng.integers(3, 16))
        gt_cats = rng.choice(cat_ids, size=n_gt, p=weight)
        present = sorted(set(gt_cats.tolist()))
        absent = np.setdiff1d(cat_ids, present)
        neg = sorted(
            rng.choice(
                absent,
                size=12,
                replace=False,
                p=weight[absent - 1] / weight[absent - 1].sum()).tolist())
        not_exhaustive = sorted(c for c in present if rng.random() < 0.2)
        images.append(
            dict(
                id=img_id,
                height=h,
                width=w,
                file_name=f'{img_id:012d}.jpg',
                coco_url=('http://images.cocodataset.org/val2017/'
                          f'{img_id:012d}.jpg'),
                neg_category_ids=neg,
                not_exhaustive_category_ids=not_exhaustive))
        gt_boxes = _random_boxes(rng, n_gt, h, w)
        for box, cat in zip(gt_boxes, gt_cats.tolist()):
            box = [round(float(v), 2) for v in box]
            poly = _octagon(*box)
            annotations.append(
                dict(
                    id=len(annotations) + 1,
                    image_id=img_id,
                    category_id=int(cat),
                    bbox=box,
                    area=_poly_area(poly),
                    segmentation=[poly]))
        if index == num_images - 1:
            continue  # an image without detections
        # true-positive candidates: 1-3 jittered copies of each object
        copies = rng.integers(1, 4, size=n_gt)
        src = np.repeat(np.arange(n_gt), copies)[:num_dets]
        jitter = rng.normal(0, 0.08, size=(len(src), 4))
        tb = gt_boxes[src].copy()
        tb[:, :2] += jitter[:, :2] * tb[:, 2:]
        tb[:, 2:] *= np.exp(jitter[:, 2:])
        tcat = gt_cats[src].copy()
        wrong = rng.random(len(src)) < 0.15
        tcat[wrong] = rng.choice(cat_ids, size=int(wrong.sum()), p=weight)
        tscore = rng.uniform(0.3, 1.0, size=len(src))
        # false positives of present / verified-absent / not-exhaustive /
        # unknown categories (the last are dropped by the federated rules)
        n_fp = num_dets - len(src)
        pools = [
            np.asarray(present),
            np.asarray(neg),
            np.asarray(not_exhaustive or present), cat_ids
        ]
        pick = rng.choice(4, size=n_fp, p=[0.45, 0.3, 0.1, 0.15])
        fcat = np.array(
            [pools[k][rng.integers(len(pools[k]))] for k in pick.tolist()],
            dtype=np.int64)
        fb = _random_boxes(rng, n_fp, h, w)
        fscore = rng.uniform(0.0, 0.8, size=n_fp)
        boxes = np.concatenate([tb, fb])
        boxes[:, :2] = np.maximum(boxes[:, :2], 0)
        boxes[:, 2] = np.clip(boxes[:, 2], 1, w - boxes[:, 0])
        boxes[:, 3] = np.clip(boxes[:, 3], 1, h - boxes[:, 1])
        cats = np.concatenate([tcat, fcat])
        scores = np.round(np.concatenate([tscore, fscore]), 2)
        order = rng.permutation(len(cats))
        boxes, cats, scores = boxes[order], cats[order], scores[order]
        boxes = np.round(boxes, 2)
        polys = [_octagon(*b) for b in boxes.tolist()]
        rles = mask_utils.frPyObjects(polys, h, w)
        for b, c, s, rle in zip(boxes.tolist(), cats.tolist(), scores.tolist(),
                                rles):
            base = dict(image_id=img_id, category_id=int(c), score=float(s))
            bbox_results.append(dict(base, bbox=b))
            segm_results.append(
                dict(
                    base,
                    bbox=b,
                    segmentation=dict(
                        size=rle['size'], counts=rle['counts'].decode())))
    # one annotated category without any detection
    if annotations:
        silent = annotations[0]['category_id']
        bbox_results = [r for r in bbox_results if r['category_id'] != silent]
        segm_results = [r for r in segm_results if r['category_id'] != silent]
    gt = dict(
        info=dict(description='synthetic LVIS-v1-like val set'),
        images=images,
        annotations=annotations,
        categories=categories,
        licenses=[])
    return gt, bbox_results, segm_results


def _fresh_gt(gt_json: str) -> LVIS:
    """An ``lvis.LVIS`` from the json text (the official segm evaluation
    converts the ground-truth polygons in place)."""
    gt = LVIS.__new__(LVIS)
    import logging
    gt.logger = logging.getLogger(LVIS.__module__)
    gt.dataset = json.loads(gt_json)
    gt._create_index()
    return gt


def _reset_peak() -> Optional[int]:
    """Reset the peak RSS (Linux ``clear_refs`` 5); return RSS in kB."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return _status_kb('VmRSS')
    except OSError:
        return None


def _status_kb(key: str) -> Optional[int]:
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(key + ':'):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def run(num_images: int, num_dets: int, iou_types: List[str],
        segm_images: Optional[int], repeats: int, seed: int,
        quick: bool) -> int:
    lvis_eval = load_lvis_eval()
    keys = lvis_eval.LVIS_METRIC_KEYS
    sizes = {
        t: (segm_images if (t == 'segm' and segm_images) else num_images)
        for t in iou_types
    }
    data = {}
    for n in sorted(set(sizes.values())):
        tic = time.perf_counter()
        gt, boxes, segms = make_dataset(n, num_dets, seed)
        data[n] = (json.dumps(gt), boxes, segms)
        print(f'made {n} images, {len(gt["annotations"])} objects, '
              f'{len(boxes)} detections in {time.perf_counter() - tic:.1f} s')
    print(f'categories: {NUM_RARE + NUM_COMMON + NUM_FREQUENT} (r/c/f '
          f'{NUM_RARE}/{NUM_COMMON}/{NUM_FREQUENT}); {num_dets} detections '
          f'per image (LVIS keeps 300); threads: 1; repeats: {repeats}')
    failures = 0
    rows = []
    for iou_type in iou_types:
        n = sizes[iou_type]
        gt_json, boxes, segms = data[n]
        results = boxes if iou_type == 'bbox' else segms
        times: Dict[str, List[float]] = {'official': [], 'fast': []}
        peaks: Dict[str, List[int]] = {'official': [], 'fast': []}
        metrics: Dict[str, Dict[str, float]] = {}
        for _ in range(repeats):
            for backend in ('official', 'fast'):
                gt = _fresh_gt(gt_json)
                base = _reset_peak()
                tic = time.perf_counter()
                out = lvis_eval.evaluate_lvis(
                    gt, results, iou_type, 300, backend=backend, num_workers=1)
                times[backend].append(time.perf_counter() - tic)
                peak = _status_kb('VmHWM')
                if base is not None and peak is not None:
                    peaks[backend].append(peak - base)
                metrics[backend] = out
                del gt
        diffs = {
            k: abs(metrics['fast'][k] - metrics['official'][k])
            for k in keys
        }
        worst = max(diffs.values())
        ok = worst <= TOLERANCE
        failures += not ok
        rows.append((iou_type, n, times, peaks, metrics, diffs, ok))

    print()
    head = (f'{"iou":<5} {"images":>6} {"backend":<9} {"min s":>8} '
            f'{"median s":>9} {"peak MB":>8}  ' + ' '.join(f'{k:>6}'
                                                           for k in keys))
    print(head)
    for iou_type, n, times, peaks, metrics, diffs, ok in rows:
        for backend in ('official', 'fast'):
            t = times[backend]
            p = (f'{max(peaks[backend]) / 1024:8.0f}'
                 if peaks[backend] else '     n/a')
            vals = ' '.join(f'{metrics[backend][k]:6.4f}' for k in keys)
            print(f'{iou_type:<5} {n:>6} {backend:<9} {min(t):8.2f} '
                  f'{statistics.median(t):9.2f} {p}  {vals}')
    print()
    print('max |fast - official| per metric:')
    print(f'{"iou":<5} ' + ' '.join(f'{k:>8}' for k in keys) + f'  {"max":>8}')
    for iou_type, n, times, peaks, metrics, diffs, ok in rows:
        print(f'{iou_type:<5} ' + ' '.join(f'{diffs[k]:8.1e}' for k in keys) +
              f'  {max(diffs.values()):8.1e} ' +
              ('ok' if ok else f'> {TOLERANCE:g} FAIL'))
    if not quick:
        print()
        for iou_type, n, times, peaks, metrics, diffs, ok in rows:
            ratio = min(times['official']) / min(times['fast'])
            med = (
                statistics.median(times['official']) /
                statistics.median(times['fast']))
            verdict = 'ok' if ratio >= SPEEDUP_TARGET else 'below target'
            print(f'{iou_type}: official / fast = {ratio:.1f}x (min), '
                  f'{med:.1f}x (median); target >= {SPEEDUP_TARGET:g}x: '
                  f'{verdict}')
    return 1 if failures else 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--quick',
        action='store_true',
        help='tiny set (12 images): agreement only, no timing asserted')
    parser.add_argument(
        '--images',
        type=int,
        default=None,
        help='validation images (default 1000; quick 12)')
    parser.add_argument(
        '--dets',
        type=int,
        default=400,
        help='detections per image (default 400)')
    parser.add_argument(
        '--segm-images',
        type=int,
        default=None,
        help='images for segm (default: --images)')
    parser.add_argument(
        '--repeats',
        type=int,
        default=1,
        help='interleaved repeats per backend (default 1)')
    parser.add_argument(
        '--iou-types',
        nargs='+',
        default=['bbox', 'segm'],
        choices=['bbox', 'segm'])
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    images = args.images if args.images is not None else (
        12 if args.quick else 1000)
    for name, value in (('--images', images), ('--dets', args.dets),
                        ('--repeats', args.repeats)):
        if value < 1:
            parser.error(f'{name}={value} must be >= 1')
    if args.segm_images is not None and args.segm_images < 1:
        parser.error(f'--segm-images={args.segm_images} must be >= 1')
    return run(images, args.dets, args.iou_types, args.segm_images,
               args.repeats, args.seed, args.quick)


if __name__ == '__main__':
    sys.exit(main())
