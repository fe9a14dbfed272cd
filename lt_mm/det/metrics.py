"""LVIS AP with APr / APc / APf that runs on numpy >= 1.24 (mmdet METRICS).

mmdet 3.3.0's ``LVISMetric`` itself imports and builds fine with the PyPI
``lvis`` 0.5.3: its version check (``getattr(lvis, '__version__', '0') >=
'10.5.3'``, aimed at the deprecated ``mmlvis``) is False because lvis
0.5.3 has no ``__version__``. It fails in evaluation, because
``lvis.LVISEval.accumulate`` uses ``np.float`` (removed in numpy 1.24).
It also sets ``params.imgIds`` / ``useCats`` / ``maxDets``, which the
lvis API ignores (its fields are ``img_ids`` / ``use_cats`` / ``max_dets``),
and stops at the first empty result set.

:class:`LTLVISMetric` keeps mmdet's result collection and json conversion
(``process`` / ``results2json``) and routes the evaluation through
:func:`lt_mm.det.lvis_eval.run_lvis_eval` (``backend='fast'``: the compiled
faster-coco-eval LVIS mode with the protocol enforced around it, default;
``backend='official'``: the lvis API's evaluator with a numpy-2-safe
``accumulate``; same numbers): the official LVIS protocol (Gupta et al.,
CVPR 2019, Sec. 5) -- federated matching with ``neg_category_ids`` /
``not_exhaustive_category_ids``, at most 300 detections per image, IoU
0.50:0.95, area ranges small / medium / large, rare / common / frequent
bins. The metric names are mmdet's: ``lvis/bbox_AP``, ``lvis/bbox_AP50``,
..., ``lvis/bbox_APr``, ``lvis/bbox_APc``, ``lvis/bbox_APf`` and the same
for ``segm`` (flat scalars, rounded to 3 decimals like mmdet).

The annotation file is checked when the metric is built
(:func:`lt_mm.det.lvis_eval.validate_lvis_dataset`: category
``frequency``, federated image lists, unique ids, annotations naming known
images and categories), and the dataset's classes when the runner hands
them over (``dataset_meta``, before the first inference), so a wrong file
fails in seconds instead of after the whole test set was inferred.
"""
from __future__ import annotations

import copy
import json
import os.path as osp
import tempfile
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
from mmdet.evaluation.metrics import LVISMetric
from mmdet.registry import METRICS
from mmengine.logging import MMLogger

from lt_mm.core.checks import check_choice
from .lvis_eval import (LVIS_BACKENDS, LVIS_METRIC_KEYS, positive_area,
                        run_lvis_eval, validate_lvis_dataset)

SUPPORTED_METRICS = ('bbox', 'segm', 'proposal_fast')


def format_lvis_table(results: Dict[str, float],
                      metrics: Sequence[str]) -> str:
    """A text table of the LVIS summary (rows: metrics; columns: AP, AP50,
    AP75, APs, APm, APl, APr, APc, APf) from ``{'<metric>_<key>': v}``."""
    keys = [k for k in LVIS_METRIC_KEYS]
    lines = ['       ' + ' '.join(f'{k:>6}' for k in keys)]
    for metric in metrics:
        vals = [results.get(f'{metric}_{k}') for k in keys]
        if all(v is None for v in vals):
            continue
        cells = ['   n/a' if v is None else f'{v:6.3f}' for v in vals]
        lines.append(f'{metric:<6} ' + ' '.join(cells))
    return '\n'.join(lines)


@METRICS.register_module()
class LTLVISMetric(LVISMetric):
    """mmdet's ``LVISMetric`` evaluated by :mod:`lt_mm.det.lvis_eval`.

    Official LVIS AP (Gupta et al., CVPR 2019, Sec. 5), including APr /
    APc / APf, on numpy 2. Same arguments and metric keys as mmdet's
    ``LVISMetric`` (``lvis/bbox_APr`` ...), plus ``max_dets`` and
    ``backend``. Raises ``ValueError`` at build time for an annotation
    file the LVIS protocol cannot use (naming the file, the field and the
    fix), and when ``dataset_meta`` is set with a number of classes other
    than the file's categories.

    Args:
        ann_file: the LVIS val json (required: the federated protocol needs
            the LVIS fields ``neg_category_ids``,
            ``not_exhaustive_category_ids`` and the category
            ``frequency``, which mmdet's ground-truth conversion drops).
        metric: ``'bbox'``, ``'segm'`` (and ``'proposal_fast'``, mmdet's
            recall, which does not use the lvis evaluator).
        classwise: also report per-category AP (``<name>_precision``).
        metric_items: subset of ``AP, AP50, AP75, APs, APm, APl, APr, APc,
            APf`` to report (default: all).
        max_dets: detections kept per image (LVIS: 300).
        backend: ``'fast'`` (default; faster-coco-eval's compiled LVIS mode
            with the LVIS protocol enforced around it) or ``'official'``
            (the lvis API's evaluator); see :mod:`lt_mm.det.lvis_eval`.
        **kwargs: the other ``LVISMetric`` arguments (``format_only``,
            ``outfile_prefix``, ``prefix``, ``backend_args`` ...).
    """

    def __init__(self,
                 ann_file: Optional[str] = None,
                 metric: Union[str, List[str]] = 'bbox',
                 classwise: bool = False,
                 metric_items: Optional[Sequence[str]] = None,
                 max_dets: int = 300,
                 backend: str = 'fast',
                 **kwargs) -> None:
        if ann_file is None:
            raise ValueError(
                'LTLVISMetric needs ann_file (the LVIS val json): the '
                'federated LVIS protocol uses its neg_category_ids, '
                'not_exhaustive_category_ids and category frequencies.')
        metrics = metric if isinstance(metric, (list, tuple)) else [metric]
        bad = [m for m in metrics if m not in SUPPORTED_METRICS]
        if bad:
            raise ValueError(
                f'LTLVISMetric: metric {bad} is not supported; choose from '
                f'{list(SUPPORTED_METRICS)} (for proposal recall use '
                "'proposal_fast').")
        if metric_items is not None:
            unknown = [k for k in metric_items if k not in LVIS_METRIC_KEYS]
            if unknown:
                raise ValueError(
                    f'metric_items {unknown} are unknown; choose from '
                    f'{list(LVIS_METRIC_KEYS)}.')
        if isinstance(max_dets, bool) or not isinstance(max_dets, int) or \
                not (max_dets >= 1 or max_dets == -1):
            raise ValueError(
                f'max_dets={max_dets!r} must be a positive integer (the '
                'LVIS protocol uses 300) or -1 for no limit.')
        check_choice('backend', backend, LVIS_BACKENDS)
        try:
            super().__init__(
                ann_file=ann_file,
                metric=list(metrics),
                classwise=classwise,
                metric_items=metric_items,
                **kwargs)
        except (KeyError, AssertionError, TypeError, AttributeError,
                json.JSONDecodeError) as err:
            raise ValueError(
                f'LTLVISMetric: cannot read the LVIS annotation file '
                f'{ann_file} ({type(err).__name__}: {err}); give an LVIS '
                'json (a dict with images, annotations and categories, e.g. '
                'lvis_v1_val.json).') from err
        validate_lvis_dataset(self._lvis_api.dataset, str(ann_file))
        self.ann_file = ann_file
        self.max_dets = max_dets
        self.backend = backend

    @property
    def dataset_meta(self) -> Optional[dict]:
        """Meta info of the dataset (set by the runner before evaluation)."""
        return self._dataset_meta

    @dataset_meta.setter
    def dataset_meta(self, dataset_meta: Optional[dict]) -> None:
        """Check the dataset's classes against the annotation file.

        mmdet's LVIS datasets and this metric both map label ``i`` to the
        ``i``-th category of the json (``LVIS.get_cat_ids()`` order), so the
        number of classes must equal the number of categories (else labels
        would name wrong categories, or fail after inference); differing
        names are logged.
        """
        classes = (dataset_meta or {}).get('classes')
        if classes is not None and self._lvis_api is not None:
            cats = self._lvis_api.dataset['categories']
            if len(classes) != len(cats):
                raise ValueError(
                    f'LTLVISMetric: the dataset has {len(classes)} classes '
                    f'but the LVIS annotation file {self.ann_file} has '
                    f'{len(cats)} categories; label i is the i-th category '
                    'of the file, so use the same LVIS version (v1: 1203, '
                    'v0.5: 1230) for the dataset, the model num_classes and '
                    'the metric ann_file.')
            diff = [(i, c, cat.get('name'))
                    for i, (c, cat) in enumerate(zip(classes, cats))
                    if c != cat.get('name')]
            if diff:
                MMLogger.get_current_instance().warning(
                    f'LTLVISMetric: {len(diff)} dataset class names differ '
                    f'from the category names of {self.ann_file} (label, '
                    f'class, category): {diff[:3]}; labels are mapped by '
                    'position.')
        self._dataset_meta = copy.deepcopy(dataset_meta)

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """mmdet's ``process`` after a range check of the predicted labels.

        Label ``i`` is the ``i``-th category of ``ann_file``; a label
        outside ``[0, number of categories)`` (a model with more classes
        than the file) would otherwise fail only in ``compute_metrics``,
        after the whole inference.

        Raises:
            ValueError: naming the label, the image, the number of
                categories and the fix.
        """
        num_cats = len(self._lvis_api.dataset['categories'])
        for sample in data_samples:
            labels = sample['pred_instances']['labels']
            if labels.numel() == 0:
                continue
            low, high = int(labels.min()), int(labels.max())
            if low < 0 or high >= num_cats:
                bad = low if low < 0 else high
                raise ValueError(
                    f'LTLVISMetric: predicted label {bad} (image id '
                    f'{sample.get("img_id")}) is outside [0, {num_cats}): '
                    f'the annotation file {self.ann_file} has {num_cats} '
                    'categories and label i is its i-th category. The '
                    'model predicts another number of classes: build it '
                    f'with box / mask head num_classes={num_cats} (and a '
                    'checkpoint trained so), or evaluate with the ann_file '
                    'of the dataset the model was trained on.')
        super().process(data_batch, data_samples)

    def _per_category_ap(self, tables) -> Dict[str, float]:
        """Per-category AP (area 'all', IoU 0.50:0.95) for ``classwise``:
        the mean of ``precision[:, :, k, 0]`` over its entries > -1 (NaN
        for a category without ground truth), as mmdet reports it."""
        out: Dict[str, float] = OrderedDict()
        for idx, cat_id in enumerate(tables.cat_ids):
            name = self._lvis_api.load_cats([cat_id])[0]['name']
            p = tables.precision[:, :, idx, 0]
            p = p[p > -1]
            out[name] = float(np.mean(p)) if p.size else float('nan')
        return out

    def _check_every_annotated_image(self, preds: Sequence[dict],
                                     outfile_prefix: str) -> None:
        """Every image of ``ann_file`` with an object (area > 0, as the
        evaluator counts them) must have been inferred: the objects of an
        image never run through the model count as missed, and every AP
        would be silently low (a dataloader with ``indices``, a subset json
        for the dataset with the full one for the metric).

        Raises:
            ValueError: naming how many images, a few ids and the fix.
        """
        anns = self._lvis_api.dataset['annotations']
        annotated = {
            a['image_id']
            for a, ok in zip(anns, positive_area([a['area'] for a in anns]))
            if ok
        }
        missing = annotated - {p['img_id'] for p in preds}
        if not missing:
            return
        kept = ('' if self.outfile_prefix is None else
                f' The predictions are saved under {outfile_prefix}.*.')
        raise ValueError(
            f'LTLVISMetric: {len(missing)} of the {len(annotated)} images '
            f'with objects in {self.ann_file} were not inferred (image ids '
            f'{sorted(missing)[:5]}...); their objects would count as '
            'missed and lower every AP. Test the whole dataset of this '
            'ann_file (no dataloader indices), or give the metric an '
            f'ann_file of exactly the images tested.{kept}')

    def compute_metrics(self, results: list) -> Dict[str, float]:
        """Evaluate the collected results with the numpy-2-safe evaluator.

        Args:
            results: ``(gt, pred)`` pairs collected by ``process``.

        Returns:
            dict: ``{'bbox_AP': ..., 'bbox_APr': ..., 'segm_APf': ...}``
            (the prefix ``lvis/`` is added by ``BaseMetric.evaluate``).
        """
        logger: MMLogger = MMLogger.get_current_instance()
        gts, preds = zip(*results)
        tmp_dir = None
        if self.outfile_prefix is None:
            tmp_dir = tempfile.TemporaryDirectory()
            outfile_prefix = osp.join(tmp_dir.name, 'results')
        else:
            outfile_prefix = self.outfile_prefix
        if self.cat_ids is None:
            self.cat_ids = self._lvis_api.get_cat_ids()
        if self.img_ids is None:
            self.img_ids = self._lvis_api.get_img_ids()
        try:
            result_files = self.results2json(preds, outfile_prefix)
            eval_results: Dict[str, float] = OrderedDict()
            if self.format_only:
                logger.info('results are saved in '
                            f'{osp.dirname(outfile_prefix)}')
                return eval_results
            self._check_every_annotated_image(preds, outfile_prefix)
            items = list(self.metric_items or LVIS_METRIC_KEYS)
            for metric in self.metrics:
                logger.info(f'Evaluating {metric} (LVIS protocol, '
                            f'max_dets={self.max_dets}, backend='
                            f'{self.backend})...')
                if metric == 'proposal_fast':
                    ar = self.fast_eval_recall(
                        preds,
                        self.proposal_nums,
                        self.iou_thrs,
                        logger=logger)
                    for i, num in enumerate(self.proposal_nums):
                        eval_results[f'AR@{num}'] = float(ar[i])
                    continue
                with open(result_files[metric]) as f:
                    dets = json.load(f)
                if not dets:
                    logger.warning(
                        f'no {metric} detection in the whole test set; '
                        'every AP is 0.')
                tables = run_lvis_eval(
                    self._lvis_api,
                    dets,
                    iou_type=metric,
                    max_dets=self.max_dets,
                    backend=self.backend)
                summary = tables.metrics
                for key in items:
                    eval_results[f'{metric}_{key}'] = float(
                        f'{summary[key]:.3f}')
                if self.classwise:
                    per_cat = self._per_category_ap(tables)
                    for name, ap in per_cat.items():
                        eval_results[f'{metric}_{name}_precision'] = round(
                            ap, 3)
                    logger.info(f'{metric} per-category AP: ' +
                                ', '.join(f'{n}={v:.3f}'
                                          for n, v in per_cat.items()))
            logger.info('LVIS results (-1: no category of that group):\n' +
                        format_lvis_table(eval_results, self.metrics))
            return eval_results
        finally:
            if tmp_dir is not None:
                tmp_dir.cleanup()
