"""The official LVIS evaluation, working on numpy >= 1.24 (and numpy 2).

The evaluator of the LVIS API (Gupta et al., "LVIS: A Dataset for Large
Vocabulary Instance Segmentation", CVPR 2019, Sec. 5 "Evaluation Details":
federated AP over IoU 0.50:0.95, at most 300 detections per image, APr /
APc / APf over the rare / common / frequent bins) is the ``lvis`` package,
whose latest PyPI release (0.5.3) calls ``np.float`` in
``LVISEval.accumulate``. numpy 1.24 removed that alias, so on our numpy
2.4 ``LVISEval.run()`` stops with ``AttributeError: module 'numpy' has no
attribute 'float'`` (lvis-api issue #37; fixed only on GitHub, never
released).

:class:`LVISEvalNumpy2` subclasses ``lvis.LVISEval`` and replaces only
``accumulate`` (the single method that touches ``np.float``), written
afresh with float64 arithmetic in the same order as the official one, so
its precision/recall tables - and every summary metric - are bit-identical
to the official evaluator run under a ``np.float = float`` shim. Matching
(``evaluate`` / ``evaluate_img``), the federated filtering with
``neg_category_ids`` / ``not_exhaustive_category_ids``, area ranges and
the summary (``summarize``) are inherited unchanged. numpy itself is never
modified.

This module imports only ``lvis``, ``numpy`` and ``pycocotools``.
"""
from __future__ import annotations

import copy
import datetime
import json
import logging
from typing import Dict, List, Sequence, Union

import numpy as np
from lvis import LVIS, LVISEval, LVISResults

__all__ = ['LVISEvalNumpy2', 'evaluate_lvis', 'LVIS_METRIC_KEYS']

#: Summary metrics returned by :func:`evaluate_lvis` (official names).
LVIS_METRIC_KEYS = ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl', 'APr', 'APc',
                    'APf')
IOU_TYPES = ('bbox', 'segm')


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


def _check_results(results: List[dict], gt: LVIS, iou_type: str) -> None:
    """Raise ``ValueError`` for results the evaluator would mis-handle."""
    need = ('image_id', 'category_id', 'score',
            'bbox' if iou_type == 'bbox' else 'segmentation')
    img_ids, cat_ids = set(gt.get_img_ids()), set(gt.get_cat_ids())
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


def _empty_results(gt: LVIS) -> LVISResults:
    """An ``LVISResults`` without detections (the official constructor
    indexes ``results[0]`` and fails on an empty list)."""
    dt = LVISResults.__new__(LVISResults)
    dt.logger = logging.getLogger(LVISResults.__module__)
    dt.dataset = dict(gt.dataset, annotations=[])
    dt._create_index()
    return dt


def evaluate_lvis(gt: Union[str, LVIS],
                  results: Union[str, Sequence[dict]],
                  iou_type: str = 'bbox',
                  max_dets: int = 300) -> Dict[str, float]:
    """Official LVIS AP (Gupta et al., CVPR 2019, Sec. 5) on numpy 2.

    Runs :class:`LVISEvalNumpy2` (bit-identical to ``lvis.LVISEval``) the
    way the LVIS API intends: ``LVISResults(gt, results, max_dets)`` keeps
    the ``max_dets`` highest-scoring detections per image, then
    ``evaluate(); accumulate(); summarize()``.

    Args:
        gt: path of an LVIS json or a loaded ``lvis.LVIS``. For
            ``iou_type='segm'`` the LVIS API converts its polygons to RLE
            in place, as the official evaluator does.
        results: detections as a list of COCO result dicts (``image_id``,
            ``category_id`` (LVIS id), ``score`` and ``bbox`` ``[x, y, w,
            h]`` or RLE ``segmentation``) or the path of such a json. The
            list is deep-copied, never modified. An empty list gives AP 0
            for every category with ground truth (the official
            ``LVISResults`` cannot be built from an empty list).
        iou_type: ``'bbox'`` or ``'segm'``.
        max_dets: detections kept per image (LVIS protocol: 300); -1 keeps
            all (as mmdet's fixed-AP variant).

    Returns:
        dict: float values for ``AP, AP50, AP75, APs, APm, APl, APr, APc,
        APf`` (official names; -1 where nothing can be evaluated, e.g. no
        rare category in ``gt``).
    """
    if iou_type not in IOU_TYPES:
        raise ValueError(f'iou_type={iou_type!r} is not supported; choose '
                         f'one of {list(IOU_TYPES)}.')
    is_int = isinstance(max_dets, (int, np.integer)) and not isinstance(
        max_dets, bool)
    if not is_int or not (max_dets >= 1 or max_dets == -1):
        raise ValueError(f'max_dets={max_dets!r} must be a positive integer '
                         '(LVIS uses 300) or -1 for no limit.')
    if isinstance(gt, str):
        gt = LVIS(gt)
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
    results = copy.deepcopy(list(results))
    _check_results(results, gt, iou_type)
    if results:
        dt = LVISResults(gt, results, max_dets=int(max_dets))
    else:
        dt = _empty_results(gt)
    evaluator = LVISEvalNumpy2(gt, dt, iou_type=iou_type)
    evaluator.params.max_dets = int(max_dets)
    evaluator.run()
    return {key: float(evaluator.results[key]) for key in LVIS_METRIC_KEYS}
