"""LVIS evaluation on numpy >= 1.24: a fast backend and the official one.

The evaluator of the LVIS API (Gupta et al., "LVIS: A Dataset for Large
Vocabulary Instance Segmentation", CVPR 2019, Sec. 5 "Evaluation Details":
federated AP over IoU 0.50:0.95, at most 300 detections per image, APr /
APc / APf over the rare / common / frequent bins) is the ``lvis`` package,
whose latest PyPI release (0.5.3) calls ``np.float`` in
``LVISEval.accumulate``. numpy 1.24 removed that alias, so on our numpy
2.4 ``LVISEval.run()`` stops with ``AttributeError: module 'numpy' has no
attribute 'float'`` (lvis-api issue #37; fixed only on GitHub, never
released).

Two backends compute the same numbers:

* ``backend='official'``: :class:`LVISEvalNumpy2` subclasses
  ``lvis.LVISEval`` and replaces only ``accumulate`` (the single method
  that touches ``np.float``), written afresh with float64 arithmetic in the
  same order as the official one, so its precision/recall tables - and
  every summary metric - are bit-identical to the official evaluator run
  under a ``np.float = float`` shim. Matching, the federated filtering,
  area ranges and the summary are inherited unchanged.
* ``backend='fast'`` (default): the compiled evaluator of
  ``faster-coco-eval`` in its LVIS mode (``lvis_style=True``: federated
  dropping of detections of categories neither present nor verified
  absent, unmatched detections of not-exhaustively annotated categories
  ignored) with the parts of the LVIS protocol it does not enforce done
  here, around it: the ``max_dets`` highest-scoring detections *per image*
  are kept first (faster-coco-eval's ``maxDets`` caps each image *and
  category*), with the official tie rule; detection areas are set as
  ``lvis.LVISResults`` sets them, and annotations of area <= 0 are left
  out as the official loader leaves them out; the official area ranges,
  IoU / recall thresholds and r / c / f bins; and the summary is the
  official ``LVISEval.summarize`` run on the compiled precision table. The
  metrics agree with the official evaluator to ~1e-15 (tests and
  ``benchmarks/bench_lvis_eval.py``) at a fraction of the time.

Neither backend deep-copies the caller's results; the fast one copies
only the few fields it needs into small new dicts. numpy itself is never
modified. This module imports ``lvis``, ``numpy``, ``pycocotools`` and
(for the fast backend, when first used) ``faster_coco_eval``; no
OpenMMLab package.
"""
from __future__ import annotations

import contextlib
import datetime
import gc
import json
import logging
import math
import numbers
from collections import OrderedDict
from typing import Dict, List, NamedTuple, Sequence, Union

import numpy as np
from lvis import LVIS, LVISEval, LVISResults
from lvis.eval import Params
from pycocotools import mask as mask_utils

__all__ = [
    'LVISEvalNumpy2', 'LVISEvalResult', 'evaluate_lvis', 'run_lvis_eval',
    'keep_top_per_image', 'positive_area', 'validate_lvis_dataset',
    'LVIS_METRIC_KEYS', 'LVIS_BACKENDS'
]

#: Summary metrics returned by :func:`evaluate_lvis` (official names).
LVIS_METRIC_KEYS = ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl', 'APr', 'APc',
                    'APf')
IOU_TYPES = ('bbox', 'segm')
#: Evaluation backends of :func:`evaluate_lvis` / ``LTLVISMetric``.
LVIS_BACKENDS = ('fast', 'official')
FREQUENCIES = ('r', 'c', 'f')


class LVISEvalNumpy2(LVISEval):
    """``lvis.LVISEval`` whose ``accumulate`` runs on numpy >= 1.24.

    Drop-in replacement: same constructor ``(lvis_gt, lvis_dt,
    iou_type='segm')``, same ``evaluate() / accumulate() / summarize() /
    run() / get_results() / print_results()``, same ``self.eval`` layout
    (``precision`` of shape (T, R, K, A) = (10 IoU thresholds, 101 recall
    thresholds, categories, 4 area ranges), ``recall`` (T, K, A), -1 where
    a category has no ground truth in an area range).

    Only :meth:`accumulate` is overridden (the official one uses the alias
    ``np.float`` removed in numpy 1.24); the federated protocol of the
    LVIS paper (Sec. 5) comes unchanged from the parent class.
    """

    def accumulate(self) -> None:
        """Build the precision / recall tables from ``self.eval_imgs``.

        For each category ``k`` and area range ``a``, the per-image results
        of :meth:`evaluate` are pooled and sorted by decreasing score
        (stable mergesort, as the official code). Non-ignored detections
        are true positives when matched (``dt_matches != 0``) and false
        positives otherwise; with cumulative sums ``TP_i``, ``FP_i`` over
        the ranking and ``G`` non-ignored ground truths:

        * recall ``rc_i = TP_i / G``; ``recall[t, k, a] = rc_last`` (0 when
          there is no detection);
        * precision ``pr_i = TP_i / (TP_i + FP_i + eps)`` with
          ``eps = np.spacing(1)``, made monotone by the suffix maximum
          ``pr_i <- max_{j >= i} pr_j`` (COCO/LVIS interpolation);
        * at each recall threshold ``r`` (0:0.01:1) the precision at the
          first rank with ``rc_i >= r``, or 0 if recall never reaches
          ``r``.

        Categories with ``G = 0`` in an area range keep -1 (excluded from
        the means of ``summarize``). Results go to ``self.eval`` with the
        official keys ``params, counts, date, precision, recall,
        dt_pointers``.
        """
        self.logger.info('Accumulating evaluation results.')
        if not isinstance(self.eval_imgs, list) or not self.eval_imgs:
            raise RuntimeError(
                'LVISEvalNumpy2.accumulate() needs per-image results: call '
                'evaluate() first (or run()).')
        params = self.params
        cat_ids = params.cat_ids if params.use_cats else [-1]
        n_thr = len(params.iou_thrs)
        n_rec = len(params.rec_thrs)
        n_cat = len(cat_ids)
        n_area = len(params.area_rng)
        n_img = len(params.img_ids)
        rec_thrs = np.asarray(params.rec_thrs)

        precision = np.full((n_thr, n_rec, n_cat, n_area), -1.0)
        recall = np.full((n_thr, n_cat, n_area), -1.0)
        dt_pointers: Dict[int, Dict[int, dict]] = {
            k: {
                a: {}
                for a in range(n_area)
            }
            for k in range(n_cat)
        }

        for k in range(n_cat):
            for a in range(n_area):
                # evaluate() lays eval_imgs out as [category][area][image]
                start = (k * n_area + a) * n_img
                per_img = [
                    e for e in self.eval_imgs[start:start + n_img]
                    if e is not None
                ]
                if not per_img:
                    continue
                scores = np.concatenate([e['dt_scores'] for e in per_img])
                ranking = np.argsort(-scores, kind='mergesort')
                dt_ids = np.concatenate([e['dt_ids']
                                         for e in per_img])[ranking]
                matched = np.concatenate([e['dt_matches'] for e in per_img],
                                         axis=1)[:, ranking] != 0
                ignored = np.concatenate([e['dt_ignore'] for e in per_img],
                                         axis=1)[:, ranking].astype(bool)
                gt_ignore = np.concatenate([e['gt_ignore'] for e in per_img])
                num_gt = int(np.count_nonzero(gt_ignore == 0))
                if num_gt == 0:
                    continue

                tps = matched & ~ignored  # (T, D)
                fps = ~matched & ~ignored
                dt_pointers[k][a] = {'dt_ids': dt_ids, 'tps': tps, 'fps': fps}
                tp_cum = np.cumsum(tps, axis=1).astype(np.float64)
                fp_cum = np.cumsum(fps, axis=1).astype(np.float64)
                num_dt = tps.shape[1]
                for t in range(n_thr):
                    tp, fp = tp_cum[t], fp_cum[t]
                    rc = tp / num_gt
                    recall[t, k, a] = rc[-1] if num_dt else 0.0
                    pr = tp / (fp + tp + np.spacing(1))
                    # precision envelope: best precision at any higher rank
                    pr = np.maximum.accumulate(pr[::-1])[::-1]
                    pos = np.searchsorted(rc, rec_thrs, side='left')
                    reached = pos < num_dt
                    row = np.zeros(n_rec)
                    row[reached] = pr[pos[reached]]
                    precision[t, :, k, a] = row

        self.eval = {
            'params': params,
            'counts': [n_thr, n_rec, n_cat, n_area],
            'date': datetime.datetime.now().strftime('%Y-%m-%d %H:%M:%S'),
            'precision': precision,
            'recall': recall,
            'dt_pointers': dt_pointers,
        }


class LVISEvalResult(NamedTuple):
    """What :func:`run_lvis_eval` returns.

    Attributes:
        metrics: ``{'AP': .., 'AP50': .., ..., 'APf': ..}`` (floats, keys of
            :data:`LVIS_METRIC_KEYS`; -1 where nothing can be evaluated).
        precision: (T, R, K, A) = (10 IoU thresholds 0.50:0.95, 101 recall
            thresholds, categories sorted by id, 4 area ranges all / small /
            medium / large) interpolated precision, -1 where a category has
            no ground truth in an area range.
        recall: (T, K, A) recall at ``max_dets``, -1 as above.
        cat_ids: the K category ids (sorted), the order of ``precision``.
        backend: ``'fast'`` or ``'official'`` (the one that ran).
    """
    metrics: Dict[str, float]
    precision: np.ndarray
    recall: np.ndarray
    cat_ids: List[int]
    backend: str


class _DropAssumingFormat(logging.Filter):
    """Drops ``lvis.results``' warning "Assuming user provided the results
    in correct format", logged for every list of results (we check the
    format ourselves in :func:`_check_results`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith('Assuming user provided')


@contextlib.contextmanager
def _quiet_lvis_results():
    logger = logging.getLogger(LVISResults.__module__)
    flt = _DropAssumingFormat()
    logger.addFilter(flt)
    try:
        yield
    finally:
        logger.removeFilter(flt)


@contextlib.contextmanager
def _gc_paused():
    """Pause Python's cyclic garbage collector (restored on exit).

    The fast backend builds a few hundred thousand small dicts; with the
    collector on, every few hundred allocations trigger a collection that
    walks the caller's (large) results, which costs more than the compiled
    evaluation. Nothing built here forms reference cycles.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _short(values: Sequence, n: int = 5) -> str:
    """``[a, b, c, ...] (N in all)`` for error messages."""
    values = list(values)
    head = ', '.join(repr(v) for v in values[:n])
    more = f', ... ({len(values)} in all)' if len(values) > n else ''
    return f'[{head}{more}]'


def validate_lvis_dataset(dataset: dict,
                          source: str = 'the LVIS annotations') -> None:
    """Check that an LVIS annotation dict supports the federated protocol.

    The LVIS evaluation (Gupta et al., CVPR 2019, Sec. 5) needs, besides
    COCO-style images / annotations / categories: the ``frequency``
    (``'r'``, ``'c'`` or ``'f'``) of every category (APr / APc / APf), and
    the per-image lists ``neg_category_ids`` / ``not_exhaustive_category_ids``
    (federated matching). The official evaluator discovers a missing field
    with a bare ``KeyError`` only after the whole test set was inferred;
    this check runs in O(images + annotations + categories) when a metric
    is built.

    Args:
        dataset: the loaded json (``lvis.LVIS(path).dataset``).
        source: the file name, used in the messages.

    Raises:
        ValueError: naming ``source``, the field, the first offending ids
            and the fix.
    """
    where = f'LVIS annotation file {source}'
    if not isinstance(dataset, dict):
        raise ValueError(f'{where} holds a {type(dataset).__name__}; an '
                         'LVIS json is a dict with images, annotations and '
                         'categories.')
    missing = [
        k for k in ('images', 'annotations', 'categories')
        if not isinstance(dataset.get(k), list)
    ]
    if missing:
        raise ValueError(f'{where} has no list {missing}; give an LVIS json '
                         '(e.g. lvis_v1_val.json) with images, annotations '
                         'and categories.')
    cats = dataset['categories']
    if not cats:
        raise ValueError(f'{where} has no categories.')
    no_id = [i for i, c in enumerate(cats) if 'id' not in c]
    if no_id:
        raise ValueError(f'{where}: categories at positions {_short(no_id)} '
                         "have no 'id'.")
    cat_ids = [c['id'] for c in cats]
    cat_set = set(cat_ids)
    if len(cat_set) != len(cat_ids):
        dup = sorted({i for i in cat_ids if cat_ids.count(i) > 1})
        raise ValueError(f'{where}: category ids {_short(dup)} occur more '
                         'than once; category ids must be unique.')
    bad_freq = [c['id'] for c in cats if c.get('frequency') not in FREQUENCIES]
    if bad_freq:
        raise ValueError(
            f"{where}: the 'frequency' field of categories {_short(bad_freq)}"
            " is missing or not one of 'r', 'c', 'f'; LVIS AP needs it for "
            'APr / APc / APf. Use the official LVIS json (lvis_v1_val.json '
            "has it), or add 'frequency' to every category: 'r' (rare, 1-10 "
            "training images), 'c' (common, 11-100), 'f' (frequent, > 100).")
    imgs = dataset['images']
    img_ids = []
    for img in imgs:
        if 'id' not in img:
            raise ValueError(f"{where}: an image has no 'id' ({img!r:.80}).")
        img_ids.append(img['id'])
    img_set = set(img_ids)
    if len(img_set) != len(img_ids):
        seen, dup = set(), []
        for i in img_ids:
            if i in seen:
                dup.append(i)
            seen.add(i)
        raise ValueError(f'{where}: image ids {_short(sorted(set(dup)))} '
                         'occur more than once; image ids must be unique.')
    for field in ('neg_category_ids', 'not_exhaustive_category_ids'):
        lacking = [
            img['id'] for img in imgs if not isinstance(img.get(field), list)
        ]
        if lacking:
            raise ValueError(
                f"{where}: images {_short(lacking)} have no list '{field}'"
                ' (the federated LVIS protocol needs it on every image); use '
                'the official LVIS json, or add an empty list where nothing '
                'is known.')
        unknown = sorted(
            {c
             for img in imgs
             for c in img[field] if c not in cat_set})
        if unknown:
            raise ValueError(
                f"{where}: '{field}' names category ids {_short(unknown)} "
                'that are not in its categories.')
    for field in ('height', 'width'):
        lacking = [img['id'] for img in imgs if field not in img]
        if lacking:
            raise ValueError(f"{where}: images {_short(lacking)} have no "
                             f"'{field}'.")
    bad_img, bad_cat, bad_field = [], [], []
    for ann in dataset['annotations']:
        if ann.get('image_id') not in img_set:
            bad_img.append(ann.get('id'))
        if ann.get('category_id') not in cat_set:
            bad_cat.append(ann.get('id'))
        if 'bbox' not in ann or 'area' not in ann or 'id' not in ann:
            bad_field.append(ann.get('id'))
    if bad_img:
        raise ValueError(f'{where}: annotations {_short(bad_img)} name an '
                         'image_id that is not in its images.')
    if bad_cat:
        raise ValueError(f'{where}: annotations {_short(bad_cat)} name a '
                         'category_id that is not in its categories.')
    if bad_field:
        raise ValueError(f"{where}: annotations {_short(bad_field)} lack "
                         "'id', 'bbox' or 'area'.")


def _check_results(results: Sequence[dict], gt: LVIS, iou_type: str) -> None:
    """Raise ``ValueError`` for results the evaluator would mis-handle."""
    need = ('image_id', 'category_id', 'score',
            'bbox' if iou_type == 'bbox' else 'segmentation')
    img_ids, cat_ids = gt.imgs, gt.cats
    for i, res in enumerate(results):
        if not isinstance(res, dict):
            raise ValueError(f'results[{i}] is {type(res).__name__}; '
                             'expected a dict per detection.')
        missing = [key for key in need if key not in res]
        if missing:
            raise ValueError(
                f'results[{i}] lacks {missing} needed for iou_type='
                f'{iou_type!r}; give COCO-style detections (bbox [x, y, w, '
                'h] or RLE segmentation from pycocotools.mask.encode).')
        if res['image_id'] not in img_ids:
            raise ValueError(
                f'results[{i}] has image_id={res["image_id"]!r} that is not '
                'in the ground truth; evaluate against the matching '
                'annotation file.')
        if res['category_id'] not in cat_ids:
            raise ValueError(
                f'results[{i}] has category_id={res["category_id"]!r} that '
                'is not a ground-truth category id; map labels through '
                'the sorted category ids (LVIS ids are 1-based).')
        score = res['score']
        if not (isinstance(score, numbers.Real)
                and not isinstance(score,
                                   (bool, np.bool_)) and math.isfinite(score)):
            raise ValueError(f'results[{i}] has score={res["score"]!r}; '
                             'scores must be finite numbers.')


def _empty_results(gt: LVIS) -> LVISResults:
    """An ``LVISResults`` without detections (the official constructor
    indexes ``results[0]`` and fails on an empty list)."""
    dt = LVISResults.__new__(LVISResults)
    dt.logger = logging.getLogger(LVISResults.__module__)
    dt.dataset = dict(gt.dataset, annotations=[])
    dt._create_index()
    return dt


def keep_top_per_image(image_ids: np.ndarray, scores: np.ndarray,
                       max_dets: int) -> np.ndarray:
    """Indices of the ``max_dets`` best detections of every image.

    The LVIS protocol (Gupta et al., CVPR 2019, Sec. 5) evaluates at most
    300 detections per image. ``lvis.LVISResults.limit_dets_per_image``
    sorts each image's detections by score, descending, with Python's
    stable ``sorted`` and keeps the first ``max_dets``: among equal scores
    the one given first wins. Here the same order is one ``np.lexsort`` by
    (image, -score, position), and a detection is kept if its rank within
    its image is < ``max_dets``.

    Args:
        image_ids: (N,) image id of each detection.
        scores: (N,) float64 scores (finite).
        max_dets: detections kept per image, >= 1; -1 keeps all.

    Returns:
        np.ndarray: (M,) int64 indices into the N detections, ascending
        (the caller's order), M <= N.
    """
    n = len(scores)
    if max_dets == -1 or n == 0:
        return np.arange(n)
    order = np.lexsort((np.arange(n), -scores, image_ids))
    sorted_imgs = image_ids[order]
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = sorted_imgs[1:] != sorted_imgs[:-1]
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
    rank = np.arange(n) - group_start
    return np.sort(order[rank < max_dets])


def _official_tables(gt: LVIS, results: List[dict], iou_type: str,
                     max_dets: int) -> LVISEvalNumpy2:
    """Run :class:`LVISEvalNumpy2` the way the LVIS API intends."""
    if results:
        # LVISResults sets 'area' / 'id' (and a box polygon) on each dict:
        # shallow copies keep the caller's dicts untouched
        with _quiet_lvis_results():
            dt = LVISResults(
                gt, [dict(r) for r in results], max_dets=int(max_dets))
    else:
        dt = _empty_results(gt)
    evaluator = LVISEvalNumpy2(gt, dt, iou_type=iou_type)
    evaluator.params.max_dets = int(max_dets)
    evaluator.run()
    return evaluator


def _integer_ids(values: list) -> np.ndarray:
    """(N,) int64 ids; ``ValueError`` for a non-integral one (1.5 would
    otherwise be truncated to image 1; the official evaluator looks ids up
    in a dict, where 1.0 is 1 and 1.5 is no id)."""
    raw = np.asarray(values)
    ids = raw.astype(np.int64)
    integral = raw.dtype.kind in 'iu' or (raw.dtype.kind == 'f' and bool(
        (ids == raw).all()))
    if not integral:
        raise ValueError('non-integral id')
    return ids


def _result_arrays(results: List[dict], gt: LVIS, iou_type: str):
    """(image_ids, category_ids, scores) of the results as arrays, checked
    like :func:`_check_results` (which names the first bad entry)."""
    geo = 'bbox' if iou_type == 'bbox' else 'segmentation'
    try:
        img = _integer_ids([r['image_id'] for r in results])
        cat = _integer_ids([r['category_id'] for r in results])
        raw = [r['score'] for r in results]
        score = np.asarray(raw)
        if score.dtype.kind not in 'fiu' or any(  # '0.9', True
                isinstance(v, (bool, np.bool_)) for v in raw):
            raise ValueError('non-numeric score')
        score = score.astype(np.float64)
        for r in results:
            r[geo]
    except (KeyError, TypeError, ValueError, OverflowError) as err:
        _check_results(results, gt, iou_type)  # raises, naming the entry
        raise ValueError(f'results are malformed ({err!r}); give COCO-style '
                         'detection dicts.') from err
    img_ids = np.array(sorted(gt.imgs), dtype=np.int64)
    cat_ids = np.array(sorted(gt.cats), dtype=np.int64)
    for ids, ref in ((img, img_ids), (cat, cat_ids)):
        pos = np.minimum(np.searchsorted(ref, ids), len(ref) - 1)
        if len(ids) and (len(ref) == 0 or (ref[pos] != ids).any()):
            _check_results(results, gt, iou_type)  # raises, naming it
    if not np.isfinite(score).all():
        bad = int(np.flatnonzero(~np.isfinite(score))[0])
        raise ValueError(f'results[{bad}] has score={results[bad]["score"]!r}'
                         '; scores must be finite numbers.')
    return img, cat, score


#: Stand-in mask of detections that meet no ground truth (see below).
_EMPTY_RLE = {'size': [1, 1], 'counts': b'1'}


def _is_compressed_rle(segm) -> bool:
    return type(segm) is dict and type(
        segm.get('counts')) in (str, bytes) and 'size' in segm


def positive_area(areas: Sequence[float]) -> np.ndarray:
    """(N,) bool: 0 < area < inf, the official evaluator's area filter."""
    a = np.asarray(areas, dtype=np.float64).reshape(-1)
    return (a > 0) & (a < np.inf)


def _fast_tables(gt: LVIS, results: List[dict], iou_type: str, max_dets: int,
                 num_workers: int):
    """faster-coco-eval's LVIS mode with the LVIS protocol around it.

    Steps (all exact, i.e. they change no number of the LVIS evaluation):

    1. keep the ``max_dets`` best detections per image
       (:func:`keep_top_per_image`, the official tie rule); then, as
       ``lvis.LVIS.get_ann_ids`` loads them, only ground truths and
       detections with ``0 < area < inf`` (a zero-width box or an empty
       mask is no detection, an area-0 object no object);
    2. federated filter of Sec. 5: drop a detection unless its category is
       annotated in its image or listed in ``neg_category_ids``; mark the
       detections of ``not_exhaustive_category_ids`` (unmatched ones are
       ignored by the compiled evaluator, ``lvis_mark``); categories
       without any ground truth are -1 in the tables and are skipped;
    3. the evaluation of a category pools its (image, category) pairs in
       image-id order and is independent of other categories. The
       compiled evaluator loops over every image x category, almost all
       empty in LVIS; so the pairs of each category are numbered 1, 2, ...
       in image-id order and pair number ``v`` of every category goes to
       a virtual image ``v`` (categories in a few groups of similar pair
       counts). Each pair keeps its boxes / masks (masks as RLE of the
       real image size), its order of ground truths and of detections
       (the caller's order, for the stable score sorts), so per-pair
       matching and per-category pooling are those of the real images,
       at a cost of about the number of non-empty pairs.

    Returns:
        (precision (T, R, K, A), recall (T, K, A)) over all ground-truth
        categories sorted by id (-1 where a category has no ground truth).
    """
    try:
        from faster_coco_eval import COCO, COCOeval_faster
        from faster_coco_eval.core import mask as fast_mask
    except ImportError as err:  # pragma: no cover - in runtime.txt
        raise ImportError(
            "backend='fast' needs faster-coco-eval (pip install "
            "faster-coco-eval, see requirements/runtime.txt); or pass "
            "backend='official'.") from err
    params = Params(iou_type=iou_type)
    segm = iou_type == 'segm'
    geo = 'segmentation' if segm else 'bbox'
    img_ids = np.array(sorted(gt.imgs), dtype=np.int64)
    cat_ids = np.array(sorted(gt.cats), dtype=np.int64)
    num_cats = len(cat_ids)
    shape_p = (len(params.iou_thrs), len(params.rec_thrs), num_cats,
               len(params.area_rng))
    precision = np.full(shape_p, -1.0)
    recall = np.full((shape_p[0], num_cats, shape_p[3]), -1.0)

    # ground truth: (image, category) pair keys; as the official evaluator
    # (LVIS.get_ann_ids) only annotations with 0 < area < inf, which also
    # decide which categories are present in an image (federated filter)
    gt_anns = gt.dataset['annotations']
    gt_ok = positive_area([a['area'] for a in gt_anns])
    if not gt_ok.all():
        gt_anns = [a for a, k in zip(gt_anns, gt_ok.tolist()) if k]
    g_img = np.searchsorted(
        img_ids, np.array([a['image_id'] for a in gt_anns], dtype=np.int64))
    g_cat = np.searchsorted(
        cat_ids, np.array([a['category_id'] for a in gt_anns], dtype=np.int64))
    g_key = g_img * num_cats + g_cat
    if not len(g_key):
        return precision, recall

    def list_keys(field: str) -> np.ndarray:
        # keyed by image id, not by position: the json's image list need
        # not be sorted by id (COCO-derived files are not)
        keys = [(im['id'], c) for im in gt.dataset['images']
                for c in im.get(field, ())]
        if not keys:
            return np.zeros(0, dtype=np.int64)
        arr = np.array(keys, dtype=np.int64)
        return (np.searchsorted(img_ids, arr[:, 0]) * num_cats +
                np.searchsorted(cat_ids, arr[:, 1]))

    neg_key = list_keys('neg_category_ids')
    nel_key = list_keys('not_exhaustive_category_ids')

    # detections: top max_dets per image, then the federated filter
    if results:
        d_img_id, d_cat_id, d_score = _result_arrays(results, gt, iou_type)
        keep = keep_top_per_image(d_img_id, d_score, max_dets)
        d_key = (
            np.searchsorted(img_ids, d_img_id[keep]) * num_cats +
            np.searchsorted(cat_ids, d_cat_id[keep]))
        ok = np.isin(d_key, g_key) | np.isin(d_key, neg_key)
        keep, d_key = keep[ok], d_key[ok]
    else:
        keep = np.zeros(0, dtype=np.int64)
        d_key = keep
    kept = [results[i] for i in keep.tolist()]
    if kept and 'bbox' in kept[0]:
        # detection areas exactly as lvis.LVISResults sets them: w * h of
        # the box when the first result has one (mmdet's segm results do)
        areas = [r['bbox'][2] * r['bbox'][3] for r in kept]
    elif kept:
        # mask areas (pycocotools' area() of a list fails beyond 255 RLEs)
        segms = [r['segmentation'] for r in kept]
        areas = [
            a for i in range(0, len(segms), 255)
            for a in mask_utils.area(segms[i:i + 255]).tolist()
        ]
    else:
        areas = []
    # the official evaluator loads only detections with 0 < area < inf
    # (LVIS.get_ann_ids), after the per-image cut: a zero-width box or an
    # empty mask is not a false positive there
    area_ok = positive_area(areas)
    if not area_ok.all():
        keep, d_key = keep[area_ok], d_key[area_ok]
        kept = [r for r, k in zip(kept, area_ok.tolist()) if k]
        areas = [a for a, k in zip(areas, area_ok.tolist()) if k]
    if max_dets == -1:
        cap = int(np.unique(d_key,
                            return_counts=True)[1].max()) if len(d_key) else 1
    else:
        cap = int(max_dets)

    # pairs numbered per category in image order -> virtual images
    pairs = np.union1d(g_key, d_key)
    p_img, p_cat = pairs // num_cats, pairs % num_cats
    order = np.lexsort((p_img, p_cat))
    s_cat = p_cat[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = s_cat[1:] != s_cat[:-1]
    start = np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))
    p_virtual = np.empty(len(pairs), dtype=np.int64)
    p_virtual[order] = np.arange(len(order)) - start + 1
    count = np.bincount(p_cat, minlength=num_cats)
    has_gt = np.zeros(num_cats, dtype=bool)
    has_gt[g_cat] = True
    # groups of categories with pair counts within a factor 4
    p_group = np.full(num_cats, -1, dtype=np.int64)
    p_group[has_gt] = np.floor(np.log2(count[has_gt]) / 2).astype(np.int64)
    p_nel = np.isin(pairs, nel_key)

    g_pair = np.searchsorted(pairs, g_key)
    d_pair = np.searchsorted(pairs, d_key)
    sizes = {
        im['id']: (im['height'], im['width'])
        for im in gt.dataset['images']
    }
    # ('ignore' flags: the caller runs the official backend instead)
    gt_copies = [dict(ann, iscrowd=0) for ann in gt_anns]
    if segm:
        # masks as RLE of the real image size (virtual images have none)
        todo = [
            c for c in gt_copies if not _is_compressed_rle(c['segmentation'])
        ]
        fast_mask.calculateRleForAllAnnotations(todo, sizes, True, False, 0.02,
                                                1)
        for c in todo:
            c['segmentation'] = c.pop('rle')
    dt_copies = [{
        'id': i + 1,
        'category_id': r['category_id'],
        'score': r['score'],
        geo: r[geo],
        'area': a,
        'iscrowd': 0,
    } for i, (r, a) in enumerate(zip(kept, areas))]
    if segm:
        # a detection in a pair without ground truth is a false positive
        # whatever its mask (no IoU is computed there; its area is set
        # above): an empty 1x1 mask spares decoding its RLE
        no_gt = ~np.isin(d_key, g_key)
        for j in np.flatnonzero(no_gt).tolist():
            dt_copies[j]['segmentation'] = _EMPTY_RLE
        todo = [(c, r['image_id'])
                for c, r, skip in zip(dt_copies, kept, no_gt.tolist())
                if not skip and not _is_compressed_rle(c['segmentation'])]
        if todo:
            tmp = [dict(c, image_id=i) for c, i in todo]
            fast_mask.calculateRleForAllAnnotations(tmp, sizes, True, False,
                                                    0.02, 1)
            for (c, _), t in zip(todo, tmp):
                c['segmentation'] = t['rle']

    quiet = logging.getLogger(__name__).debug
    ranges = dict(zip(params.area_rng_lbl[1:], params.area_rng[1:]))
    categories = {c['id']: c for c in gt.dataset['categories']}
    g_virtual, d_virtual = p_virtual[g_pair], p_virtual[d_pair]
    g_group, d_group = p_group[g_cat], p_group[p_cat[d_pair]]
    for group in np.unique(p_group[p_group >= 0]).tolist():
        cats_k = np.flatnonzero(p_group == group)
        in_group = p_group[p_cat] == group
        num_virtual = int(p_virtual[in_group].max())
        neg_all = set(cat_ids[cats_k].tolist())
        nel = [set() for _ in range(num_virtual + 1)]
        for v, c in zip(p_virtual[in_group & p_nel].tolist(),
                        p_cat[in_group & p_nel].tolist()):
            nel[v].add(int(cat_ids[c]))
        # neg_category_ids = every category of the group: the federated
        # filter is already applied above
        images = [
            dict(
                id=v,
                height=1,
                width=1,
                neg_category_ids=neg_all,
                not_exhaustive_category_ids=nel[v])
            for v in range(1, num_virtual + 1)
        ]
        cats = [categories[int(c)] for c in cat_ids[cats_k]]
        g_sel = np.flatnonzero(g_group == group)
        anns_g = []
        for j, v in zip(g_sel.tolist(), g_virtual[g_sel].tolist()):
            copy_ = gt_copies[j]
            copy_['image_id'] = v
            anns_g.append(copy_)
        d_sel = np.flatnonzero(d_group == group)
        dts_g = []
        for j, v in zip(d_sel.tolist(), d_virtual[d_sel].tolist()):
            copy_ = dt_copies[j]
            copy_['image_id'] = v
            dts_g.append(copy_)
        coco_gt = COCO(
            dict(images=images, categories=cats, annotations=anns_g),
            print_function=quiet)
        coco_dt = COCO(
            dict(images=images, categories=cats, annotations=dts_g),
            print_function=quiet)
        ev = COCOeval_faster(
            coco_gt,
            coco_dt,
            iou_type,
            ranges=ranges,
            print_function=quiet,
            lvis_style=True,
            rle_iou_max_workers=int(num_workers))
        ev.params.imgIds = list(range(1, num_virtual + 1))
        ev.params.catIds = cat_ids[cats_k].tolist()
        ev.params.iouThrs = params.iou_thrs
        ev.params.recThrs = params.rec_thrs
        ev.params.maxDets = [cap]
        ev.evaluate()
        ev.accumulate()
        if list(ev.params.areaRngLbl) != list(params.area_rng_lbl):
            raise RuntimeError(  # pragma: no cover - a library change
                f'faster-coco-eval area ranges {ev.params.areaRngLbl} '
                f'differ from LVIS {params.area_rng_lbl}.')
        precision[:, :, cats_k, :] = np.asarray(ev.eval['precision'])[..., -1]
        recall[:, cats_k, :] = np.asarray(ev.eval['recall'])[..., -1]
    return precision, recall


def _summarize(gt: LVIS, precision: np.ndarray, recall: np.ndarray,
               iou_type: str, max_dets: int) -> Dict[str, float]:
    """The official ``LVISEval.summarize`` (and its r / c / f grouping
    ``_prepare_freq_group``) on given tables."""
    ev = LVISEvalNumpy2.__new__(LVISEvalNumpy2)
    ev.logger = logging.getLogger(LVISEval.__module__)
    ev.lvis_gt = gt
    ev.params = Params(iou_type=iou_type)
    ev.params.img_ids = sorted(gt.get_img_ids())
    ev.params.cat_ids = sorted(gt.get_cat_ids())
    ev.params.max_dets = int(max_dets)
    ev.freq_groups = ev._prepare_freq_group()
    ev.eval = {'precision': precision, 'recall': recall}
    ev.results = OrderedDict()
    ev.summarize()
    return {key: float(ev.results[key]) for key in LVIS_METRIC_KEYS}


def _check_args(gt, results, iou_type, max_dets, backend, num_workers):
    if iou_type not in IOU_TYPES:
        raise ValueError(f'iou_type={iou_type!r} is not supported; choose '
                         f'one of {list(IOU_TYPES)}.')
    if backend not in LVIS_BACKENDS:
        raise ValueError(f'backend={backend!r} is not supported; choose '
                         f"one of {list(LVIS_BACKENDS)} ('fast': compiled, "
                         "default; 'official': the lvis API).")
    is_int = isinstance(max_dets,
                        (int, np.integer)) and not isinstance(max_dets, bool)
    if not is_int or not (max_dets >= 1 or max_dets == -1):
        raise ValueError(f'max_dets={max_dets!r} must be a positive integer '
                         '(LVIS uses 300) or -1 for no limit.')
    if isinstance(num_workers,
                  bool) or not isinstance(num_workers, int) or num_workers < 1:
        raise ValueError(f'num_workers={num_workers!r} must be an integer '
                         '>= 1.')
    if isinstance(gt, str):
        source = gt
        gt = LVIS(gt)
        validate_lvis_dataset(gt.dataset, source)
    elif not isinstance(gt, LVIS):
        raise ValueError(f'gt is a {type(gt).__name__}; pass the path of an '
                         'LVIS json or an lvis.LVIS object.')
    if isinstance(results, str):
        with open(results) as f:
            results = json.load(f)
    if not isinstance(results, (list, tuple)):
        raise ValueError(
            f'results is a {type(results).__name__}; pass a list of '
            'detection dicts or the path of a COCO-style result json.')
    return gt, list(results)


def run_lvis_eval(gt: Union[str, LVIS],
                  results: Union[str, Sequence[dict]],
                  iou_type: str = 'bbox',
                  max_dets: int = 300,
                  backend: str = 'fast',
                  num_workers: int = 1) -> LVISEvalResult:
    """LVIS AP (Gupta et al., CVPR 2019, Sec. 5) with its tables.

    Same arguments as :func:`evaluate_lvis`; returns the summary metrics
    together with the precision (T, R, K, A) and recall (T, K, A) tables
    (e.g. for per-category AP: the mean of ``precision[:, :, k, 0]`` over
    its entries > -1).
    """
    gt, results = _check_args(gt, results, iou_type, max_dets, backend,
                              num_workers)
    cat_ids = sorted(gt.get_cat_ids())
    if backend == 'fast' and any(
            a.get('ignore') for a in gt.dataset['annotations']):
        # faster-coco-eval derives 'ignore' from 'iscrowd' only
        logging.getLogger(__name__).warning(
            "the ground truth marks annotations 'ignore'; using "
            "backend='official', which honours it.")
        backend = 'official'
    if backend == 'official':
        _check_results(results, gt, iou_type)
        ev = _official_tables(gt, results, iou_type, max_dets)
        metrics = {key: float(ev.results[key]) for key in LVIS_METRIC_KEYS}
        return LVISEvalResult(metrics, ev.eval['precision'], ev.eval['recall'],
                              cat_ids, 'official')
    with _gc_paused():
        precision, recall = _fast_tables(gt, results, iou_type, max_dets,
                                         num_workers)
        metrics = _summarize(gt, precision, recall, iou_type, max_dets)
    return LVISEvalResult(metrics, precision, recall, cat_ids, 'fast')


def evaluate_lvis(gt: Union[str, LVIS],
                  results: Union[str, Sequence[dict]],
                  iou_type: str = 'bbox',
                  max_dets: int = 300,
                  backend: str = 'fast',
                  num_workers: int = 1) -> Dict[str, float]:
    """LVIS AP (Gupta et al., CVPR 2019, Sec. 5) on numpy 2.

    ``backend='fast'`` (default) runs faster-coco-eval's compiled LVIS mode
    with the LVIS protocol enforced around it (top ``max_dets`` detections
    per image by score with the official tie rule, federated
    ``neg_category_ids`` / ``not_exhaustive_category_ids``, official area
    ranges and r / c / f bins, official summary); ``backend='official'``
    runs :class:`LVISEvalNumpy2` (bit-identical to ``lvis.LVISEval``) the
    way the LVIS API intends: ``LVISResults(gt, results, max_dets)``, then
    ``evaluate(); accumulate(); summarize()``. Both give the same metrics
    (to ~1e-15; see the module docstring).

    Args:
        gt: path of an LVIS json (checked by :func:`validate_lvis_dataset`)
            or a loaded ``lvis.LVIS``. With ``backend='official'`` and
            ``iou_type='segm'`` the LVIS API converts its polygons to RLE
            in place, as the official evaluator does; the fast backend
            leaves it untouched.
        results: detections as a list of COCO result dicts (``image_id``,
            ``category_id`` (LVIS id), finite ``score`` and ``bbox`` ``[x,
            y, w, h]`` or RLE ``segmentation``) or the path of such a json.
            The caller's dicts are never modified nor deep-copied. An empty
            list gives AP 0 for every category with ground truth (the
            official ``LVISResults`` cannot be built from an empty list).
        iou_type: ``'bbox'`` or ``'segm'``.
        max_dets: detections kept per image (LVIS protocol: 300); -1 keeps
            all (as mmdet's fixed-AP variant).
        backend: ``'fast'`` or ``'official'``.
        num_workers: threads the fast backend may use for mask IoUs
            (``segm``); the result does not depend on it.

    Returns:
        dict: float values for ``AP, AP50, AP75, APs, APm, APl, APr, APc,
        APf`` (official names; -1 where nothing can be evaluated, e.g. no
        rare category in ``gt``).
    """
    return run_lvis_eval(gt, results, iou_type, max_dets, backend,
                         num_workers).metrics
