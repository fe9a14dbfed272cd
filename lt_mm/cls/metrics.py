"""Many / medium / few-shot accuracy for mmpretrain.

The long-tail protocol of Liu et al. (CVPR 2019, Sec. 5), used by all the
papers lt_mm implements (Decoupling Table 2, TDE Table 2, DisAlign Table 1
and 10): on a balanced test set, report top-1 accuracy overall and on the
many-shot (``n_j > 100`` training images), medium-shot (``20 <= n_j <=
100``) and few-shot (``n_j < 20``) classes. Group accuracies are means of
per-class accuracies (as ``shot_acc`` of the classifier-balancing code);
on a balanced test set they equal the sample accuracy of the group.
"""
from __future__ import annotations

import json
import math
import os.path as osp
from typing import Dict, List, Optional, Sequence, Union

import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import MessageHub, MMLogger
from mmpretrain.registry import METRICS
from torch import Tensor

from lt_mm.core.checks import check_range
from lt_mm.core.splits import compute_splits
from lt_mm.core.stats import ClassStats, load_class_stats, shot_splits
from .counts import FEW_THR, MANY_THR, resolve_cls_counts

SPLIT_NAMES = ('many', 'medium', 'few')


def per_class_accuracy(pred: Tensor, target: Tensor,
                       num_classes: int) -> Tensor:
    """Per-class top-1 accuracy in percent.

    ``acc_j = 100 * #{i: y_i = j, pred_i = j} / #{i: y_i = j}``; classes
    absent from ``target`` get NaN.

    Args:
        pred: (N,) predicted labels.
        target: (N,) ground-truth labels in ``[0, num_classes)``.
        num_classes: C.

    Returns:
        Tensor: float64 (C,).
    """
    target = target.long().flatten()
    pred = pred.long().flatten()
    total = torch.bincount(target, minlength=num_classes).double()
    hit = torch.bincount(
        target[pred == target], minlength=num_classes).double()
    acc = 100.0 * hit / total.clamp_min(1.0)
    acc[total == 0] = float('nan')
    return acc


def _nanmean(x: Tensor) -> float:
    x = x[~torch.isnan(x)]
    return float(x.mean()) if x.numel() else float('nan')


def long_tail_accuracy(scores_or_topk: Tensor,
                       target: Tensor,
                       splits: Dict[str, Sequence[int]],
                       num_classes: int,
                       topk: Sequence[int] = (1, ),
                       is_topk: bool = False) -> Dict[str, object]:
    """Overall top-k, balanced and per-group accuracy (Liu et al. 2019).

    * ``top{k}``: ``100 * mean_i [y_i in top-k(x_i)]`` (sample accuracy);
    * ``balanced``: mean over classes present in ``target`` of the per-class
      top-1 accuracy (:func:`per_class_accuracy`);
    * ``<group>`` for every group of ``splits`` (``many``, ``medium``,
      ``few``): mean of the per-class top-1 accuracies of the group's
      classes that occur in ``target`` (NaN if none does).

    Args:
        scores_or_topk: (N, C) scores, or with ``is_topk=True`` the (N, K)
            predicted labels sorted by decreasing score (K >= max(topk)).
        target: (N,) labels.
        splits: group name -> class indices.
        num_classes: C.
        topk: the k of the top-k accuracies; k larger than C is skipped.
        is_topk: see ``scores_or_topk``.

    Returns:
        dict: the float metrics above and ``'per_class'`` (list of C
        floats, NaN for classes without test sample).
    """
    target = target.long().flatten()
    if target.numel() == 0:
        raise ValueError('no sample to evaluate.')
    if target.min() < 0 or target.max() >= num_classes:
        raise ValueError(
            f'labels must lie in [0, {num_classes}); got values in '
            f'[{int(target.min())}, {int(target.max())}]. Are the split '
            'statistics those of this dataset?')
    if is_topk:
        ranked = scores_or_topk.long()
    else:
        if scores_or_topk.dim() != 2 or \
                scores_or_topk.shape[1] != num_classes:
            raise ValueError(
                f'scores have shape {tuple(scores_or_topk.shape)}; expected '
                f'(N, {num_classes}): the model has another number of '
                'classes than the class statistics.')
        maxk = min(max(topk), num_classes)
        ranked = scores_or_topk.topk(maxk, dim=1).indices
    out: Dict[str, object] = {}
    hits = ranked == target.unsqueeze(1)
    for k in topk:
        if k > num_classes or k > ranked.shape[1]:
            continue
        out[f'top{k}'] = 100.0 * float(hits[:, :k].any(dim=1).double().mean())
    acc = per_class_accuracy(ranked[:, 0], target, num_classes)
    out['balanced'] = _nanmean(acc)
    for name, idx in splits.items():
        idx_t = torch.as_tensor(list(idx), dtype=torch.long)
        out[name] = _nanmean(acc[idx_t]) if idx_t.numel() else float('nan')
    out['per_class'] = acc.tolist()
    return out


@METRICS.register_module()
class LongTailAccuracy(BaseMetric):
    """Top-1/top-5, balanced and many/medium/few accuracy (Liu et al. 2019).

    Reported as flat scalars (prefix ``accuracy``): ``accuracy/top1``,
    ``accuracy/top5``, ``accuracy/balanced`` (mean per-class accuracy),
    ``accuracy/many``, ``accuracy/medium``, ``accuracy/few`` -- so they
    reach the log, ``scalars.json``, TensorBoard and ``save_best``. All in
    percent.

    The class groups come from exactly one source:

    * ``splits=dict(many=[...], medium=[...], few=[...])``;
    * ``stats_file``: with ``many_thr`` and/or ``few_thr`` given, the
      groups are recomputed from the file's counts with those thresholds
      (:func:`lt_mm.core.splits.compute_splits`, rule ``'shot'``; an
      omitted one takes its default, 100 or 20) -- explicit thresholds
      win over the groups stored in the file; with neither given, the
      file's ``splits`` when it has many/medium/few groups and
      ``use_file_splits=True``, else :func:`shot_splits` of its counts
      with 100 / 20;
    * ``counts=[...]`` or ``train_ann_file`` (the ImageNet-LT style training
      list; counts cached next to it): :func:`shot_splits` with
      ``many_thr`` / ``few_thr`` (many ``n_j > many_thr``, few
      ``n_j < few_thr``; 100 / 20 in the papers, smaller for toy data).

    The per-class accuracy of the last evaluation is kept in
    :attr:`per_class` (list of C floats, NaN for classes without sample)
    and written as JSON to ``per_class_file`` (``'auto'``: the run's log
    folder in the work dir, ``per_class_accuracy.json``; ``None``: not
    written) for the analysis tools.

    Args:
        topk: k of the overall top-k accuracies.
        counts, stats_file, train_ann_file, splits: see above.
        many_thr, few_thr: thresholds of :func:`shot_splits` (None: 100
            and 20; given, they override the groups of ``stats_file``).
        num_classes: C; checked against the statistics.
        use_file_splits: use the groups stored in ``stats_file`` when no
            threshold is given.
        per_class_file: see above.
        collect_device, prefix: as in :class:`mmengine.evaluator.BaseMetric`.
    """

    default_prefix: Optional[str] = 'accuracy'
    #: with none of these keys in its config, lt_mm.engine.counts fills
    #: ``counts`` from the config's training dataset
    class_count_sources = ('counts', 'stats_file', 'train_ann_file', 'splits')

    def __init__(self,
                 topk: Union[int, Sequence[int]] = (1, 5),
                 counts: Optional[Sequence[float]] = None,
                 stats_file: Optional[str] = None,
                 train_ann_file: Optional[str] = None,
                 splits: Optional[Dict[str, Sequence[int]]] = None,
                 many_thr: Optional[float] = None,
                 few_thr: Optional[float] = None,
                 num_classes: Optional[int] = None,
                 use_file_splits: bool = True,
                 per_class_file: Optional[str] = 'auto',
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if isinstance(topk, int):
            topk = (topk, )
        self.topk = tuple(int(k) for k in topk)
        if not self.topk or min(self.topk) < 1:
            raise ValueError(f'topk={topk!r} must be positive integers.')
        # explicit thresholds override the groups stored in a stats_file
        self._thr_given = many_thr is not None or few_thr is not None
        many_thr = MANY_THR if many_thr is None else many_thr
        few_thr = FEW_THR if few_thr is None else few_thr
        check_range('many_thr', many_thr, 0)
        check_range(
            'few_thr',
            few_thr,
            0,
            many_thr,
            hint='few_thr must not exceed many_thr.')
        self.many_thr, self.few_thr = many_thr, few_thr
        self.per_class_file = per_class_file
        self.counts: Optional[List[float]] = None
        self.splits = self._resolve_splits(counts, stats_file, train_ann_file,
                                           splits, num_classes,
                                           use_file_splits)
        self.per_class: Optional[List[float]] = None

    def _resolve_splits(self, counts, stats_file, train_ann_file, splits,
                        num_classes, use_file_splits) -> Dict[str, List[int]]:
        given = dict(
            counts=counts,
            stats_file=stats_file,
            train_ann_file=train_ann_file,
            splits=splits)
        sources = [n for n, v in given.items() if v is not None]
        if len(sources) != 1:
            raise ValueError(
                'LongTailAccuracy needs the many/medium/few class groups '
                'from exactly one of counts=[...], stats_file=PATH, '
                'train_ann_file=PATH (the training list) or splits=dict('
                'many=[...], medium=[...], few=[...]); got '
                f'{sources or "none"}. For plain top-k accuracy use '
                "mmpretrain's Accuracy.")
        if splits is not None:
            st = ClassStats(
                counts=[0] * (num_classes or _num_from_splits(splits)),
                unit='images',
                splits={
                    k: list(v)
                    for k, v in splits.items()
                })
            self.num_classes = st.num_classes
            return st.splits
        if stats_file is not None:
            st = load_class_stats(stats_file, num_classes, unit='images')
            self.num_classes = st.num_classes
            self.counts = list(st.counts)
            if self._thr_given or not (use_file_splits
                                       and all(k in st.splits
                                               for k in SPLIT_NAMES)):
                return compute_splits(
                    st, 'shot', many_thr=self.many_thr, few_thr=self.few_thr)
            return {k: list(st.splits[k]) for k in SPLIT_NAMES}
        self.counts = resolve_cls_counts(
            counts,
            None,
            train_ann_file,
            num_classes,
            allow_zero=True,
            what='LongTailAccuracy')
        self.num_classes = len(self.counts)
        return shot_splits(self.counts, self.many_thr, self.few_thr)

    # ------------------------------------------------------------------
    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Keep the top-k predicted labels and the label of each sample."""
        maxk = min(max(self.topk), self.num_classes)
        for ds in data_samples:
            if 'pred_score' in ds:
                score = ds['pred_score']
                if score.numel() != self.num_classes:
                    raise ValueError(
                        f'the model predicts {score.numel()} classes but '
                        f'the class statistics have {self.num_classes}.')
                ranked = score.topk(maxk).indices.cpu()
            else:
                ranked = ds['pred_label'].reshape(-1)[:1].cpu()
            gt = ds['gt_label'].reshape(-1)
            if gt.numel() != 1:
                raise ValueError(
                    f'LongTailAccuracy: a sample has gt_label {gt.tolist()}'
                    '; the many / medium / few accuracy is single-label '
                    '(one class index per sample). Multi-label data needs '
                    'a multi-label metric (mmpretrain MultiLabelMetric).')
            self.results.append(
                dict(ranked=ranked.long(), gt_label=gt.cpu().long()))

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Compute the metrics (see the class docstring)."""
        width = min(r['ranked'].numel() for r in results)
        ranked = torch.stack([r['ranked'][:width] for r in results])
        target = torch.cat([r['gt_label'] for r in results])
        topk = [k for k in self.topk if k <= width]
        skipped = [k for k in self.topk if k > width]
        if skipped:
            MMLogger.get_current_instance().warning(
                f'LongTailAccuracy: top-{skipped} skipped (only {width} '
                'ranked labels per sample: fewer classes or no scores).')
        res = long_tail_accuracy(
            ranked,
            target,
            self.splits,
            self.num_classes,
            topk=topk,
            is_topk=True)
        self.per_class = res.pop('per_class')
        self._dump_per_class(res)
        return {k: float(v) for k, v in res.items()}

    def _dump_per_class(self, summary: Dict[str, object]) -> None:
        path = self.per_class_file
        if not path:
            return
        if path == 'auto':
            logger = MMLogger.get_current_instance()
            log_file = getattr(logger, 'log_file', None)
            if not log_file:
                return
            path = osp.join(osp.dirname(log_file), 'per_class_accuracy.json')
        hub = MessageHub.get_current_instance()
        payload = dict(
            epoch=hub.get_info('epoch'),
            iter=hub.get_info('iter'),
            summary={
                k: None if isinstance(v, float) and math.isnan(v) else v
                for k, v in summary.items()
            },
            per_class=[None if math.isnan(a) else a for a in self.per_class],
            counts=self.counts,
            splits=self.splits)
        with open(path, 'w', encoding='utf-8') as f:
            json.dump(payload, f, indent=1)


def _num_from_splits(splits: Dict[str, Sequence[int]]) -> int:
    idx = [int(i) for v in splits.values() for i in v]
    if not idx:
        raise ValueError('splits are empty; give class indices per group.')
    return max(idx) + 1
