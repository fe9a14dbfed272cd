"""Head / body / tail IoU for semantic segmentation (mmseg ``METRICS``).

DisAlign (Zhang et al., CVPR 2021, Sec. 4.2, Table 6 and appendix B.1,
Table 16) splits ADE20K's 150 classes by their share of all training
pixels: *head* > 1 %, *body* 0.1 %-1 %, *tail* <= 0.1 % (20 / 55 / 75
classes; the boundaries as in :func:`lt_mm.core.splits.ratio_splits`),
and reports mIoU and mAcc per group next to aAcc, mIoU and mAcc.
"""
from __future__ import annotations

import copy
import warnings
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import numpy as np
from mmengine.logging import MMLogger, print_log
from mmseg.evaluation import IoUMetric
from mmseg.registry import METRICS
from prettytable import PrettyTable

from lt_mm.core.checks import as_counts
from lt_mm.core.splits import compute_splits
from lt_mm.core.stats import (HEAD_SHARE, TAIL_SHARE, ClassStats,
                              ade20k_class_stats, load_class_stats,
                              pixel_splits)


def _same_names(a: Sequence[str], b: Sequence[str]) -> bool:
    # mmseg's ADE20K metainfo spells one class 'bed ' (trailing space)
    return len(a) == len(b) and all(
        str(x).strip() == str(y).strip() for x, y in zip(a, b))


@METRICS.register_module()
class HeadBodyTailIoUMetric(IoUMetric):
    """mmseg's ``IoUMetric`` plus mIoU / mAcc per class group.

    Output (flat scalars, in %): ``aAcc``, ``mIoU``, ``mAcc`` (mmseg) and,
    for each group ``g`` (``head``, ``body``, ``tail``):
    ``mIoU_g`` and ``mAcc_g`` = the NaN-mean of the per-class IoU / accuracy
    over the group (a class absent from the ground truth and the
    predictions is skipped, as in mmseg's mIoU; ``nan_to_num`` applies as
    there).

    Groups, in order of precedence:

    1. ``splits=dict(head=[...], body=[...], tail=[...])``;
    2. ``stats_file=`` -- a ``lt_mm.class_stats/v1`` file (e.g. from
       ``tools/class_stats.py``): with ``head_share`` and/or
       ``tail_share`` given, :func:`pixel_splits` of the file's pixel
       counts with those thresholds (an omitted one takes its default;
       :func:`lt_mm.core.splits.compute_splits`, rule ``'pixel'``) --
       explicit thresholds win over the groups stored in the file; with
       neither given, the file's ``splits``, or, if it has none and its
       unit is ``'pixels'``, :func:`pixel_splits` of its counts;
    3. ``counts=`` -- training pixels per class -> :func:`pixel_splits`;
    4. nothing: the dataset must have ADE20K's 150 classes, and DisAlign's
       Table 16 split (20 / 55 / 75, ``lt_mm.core.stats.
       ade20k_class_stats()``) is used.

    The number of classes is checked when the runner hands over the
    dataset's metainfo (before training / testing starts).

    Args:
        stats_file: class-statistics file.
        counts: per-class training pixel counts, shape (C,).
        splits: explicit groups (class indices).
        head_share, tail_share: thresholds of :func:`pixel_splits` (None:
            1.5 and 0.15; given, they override the groups of
            ``stats_file``).
        **kwargs: ``IoUMetric`` arguments (``iou_metrics``, ``ignore_index``,
            ``nan_to_num``, ``prefix``, ...).
    """

    def __init__(self,
                 stats_file: Optional[str] = None,
                 counts: Optional[Sequence[float]] = None,
                 splits: Optional[Dict[str, Sequence[int]]] = None,
                 head_share: Optional[float] = None,
                 tail_share: Optional[float] = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        given = [
            k for k, v in (('stats_file', stats_file), ('counts', counts),
                           ('splits', splits)) if v is not None
        ]
        if len(given) > 1:
            raise ValueError(
                f'HeadBodyTailIoUMetric: give only one of {given}.')
        self.stats_file = stats_file
        # explicit thresholds override the groups stored in a stats_file
        thr_given = head_share is not None or tail_share is not None
        head_share = HEAD_SHARE if head_share is None else head_share
        tail_share = TAIL_SHARE if tail_share is None else tail_share
        self.head_share = head_share
        self.tail_share = tail_share
        self._stats: Optional[ClassStats] = None
        self._splits: Optional[Dict[str, List[int]]] = None
        self._groups: Optional[Dict[str, List[int]]] = None
        if splits is not None:
            if not isinstance(splits, dict) or not splits:
                raise ValueError(f'splits={splits!r} must be a non-empty dict '
                                 '{group: [class indices]}.')
            # validated (disjoint, integer) now, range-checked with C later
            n_max = 1 + max(
                (max(v) for v in splits.values() if len(v)), default=0)
            self._splits = ClassStats(
                counts=[1.0] * max(n_max, 1),
                unit='pixels',
                splits=dict(splits)).splits
        elif stats_file is not None:
            self._stats = load_class_stats(stats_file)
            if thr_given:
                self._stats = self._with_share_splits(self._stats, stats_file)
            groups = set(self._stats.splits)
            if self._stats.splits and self._stats.unit != 'pixels' and \
                    not groups <= {'head', 'body', 'tail'}:
                raise ValueError(
                    f'{stats_file}: the statistics are in '
                    f'{self._stats.unit!r} with the groups {sorted(groups)}'
                    ' (another task\'s file?); head/body/tail IoU needs a '
                    "'pixels' file of this dataset (python tools/"
                    'class_stats.py CONFIG --unit pixels) or explicit '
                    'head/body/tail splits.')
            if not self._stats.splits and self._stats.unit != 'pixels':
                raise ValueError(
                    f'{stats_file}: the statistics have no splits and are in '
                    f'{self._stats.unit!r}; head/body/tail groups need '
                    "'pixels' (python tools/class_stats.py CONFIG --unit "
                    'pixels) or explicit splits.')
        elif counts is not None:
            self._stats = ClassStats(
                counts=as_counts(counts, allow_zero=True).tolist(),
                unit='pixels')
        if self._stats is not None and not self._stats.splits:
            # validate the thresholds now
            pixel_splits(
                self._stats.counts,
                head_share=head_share,
                tail_share=tail_share)

    def _with_share_splits(self, stats: ClassStats,
                           stats_file: str) -> ClassStats:
        """``stats`` with its splits replaced by :func:`pixel_splits` of
        its pixel counts with ``head_share`` / ``tail_share`` (explicit
        thresholds win over the file's groups)."""
        has_pixels = stats.unit == 'pixels' or \
            stats.extra.get('pixel_counts') is not None
        if not has_pixels:
            raise ValueError(
                f'{stats_file}: head_share / tail_share were given but the '
                f'statistics are in {stats.unit!r} without pixel counts; '
                'the head/body/tail thresholds are shares of the pixels. '
                'Write pixel statistics (python tools/class_stats.py CONFIG '
                '--unit pixels --out PATH), or drop head_share / tail_share '
                "to use the file's splits.")
        stats = copy.deepcopy(stats)
        stats.splits = compute_splits(
            stats,
            'pixel',
            head_share=self.head_share,
            tail_share=self.tail_share)
        return stats

    # ------------------------------------------------------------ groups
    @property
    def dataset_meta(self) -> Optional[dict]:
        """Meta info of the dataset (classes, ...); setting it resolves and
        checks the class groups."""
        return self._dataset_meta

    @dataset_meta.setter
    def dataset_meta(self, dataset_meta: dict) -> None:
        self._dataset_meta = copy.deepcopy(dataset_meta)
        self._groups = None
        if dataset_meta is not None and dataset_meta.get('classes'):
            self._groups = self.resolve_groups(dataset_meta['classes'])

    def resolve_groups(self, classes: Sequence[str]) -> Dict[str, List[int]]:
        """Class groups for a dataset with ``classes`` (see class doc).

        Raises:
            ValueError: statistics for a different number of classes, or no
                source of groups for a dataset that is not ADE20K-150.
        """
        c = len(classes)
        if self._splits is not None:
            splits = self._splits
            src = 'splits'
        elif self._stats is not None:
            src = self.stats_file or 'counts'
            if self._stats.num_classes != c:
                raise ValueError(
                    f'HeadBodyTailIoUMetric: the class statistics ({src}) '
                    f'have {self._stats.num_classes} classes but the '
                    f'dataset has {c}: they belong to another dataset. '
                    'Create them with python tools/class_stats.py CONFIG '
                    '--out PATH.')
            if self._stats.names is not None and not _same_names(
                    self._stats.names, classes):
                warnings.warn(
                    f'HeadBodyTailIoUMetric: the class names in {src} differ '
                    'from the dataset classes; groups are taken by index.')
            splits = self._stats.splits or pixel_splits(
                self._stats.counts,
                head_share=self.head_share,
                tail_share=self.tail_share)
        else:
            ade = ade20k_class_stats()
            if not _same_names(ade.names, classes):
                raise ValueError(
                    f'HeadBodyTailIoUMetric: the dataset has {c} classes '
                    "that are not ADE20K's 150; give stats_file= (python "
                    'tools/class_stats.py CONFIG --out PATH), counts= or '
                    'splits=.')
            splits = ade.splits
            src = 'DisAlign Table 16'
        out = [i for idx in splits.values() for i in idx if not 0 <= i < c]
        if out:
            raise ValueError(
                f'HeadBodyTailIoUMetric: the groups ({src}) hold class '
                f'indices {out} but the dataset has {c} classes.')
        return {k: list(v) for k, v in splits.items()}

    # ----------------------------------------------------------- metrics
    def compute_metrics(self, results: list) -> Dict[str, float]:
        """aAcc / mIoU / mAcc (mmseg) plus ``mIoU_<group>`` and
        ``mAcc_<group>`` (DisAlign Table 6).

        Args:
            results: per-image ``(intersect, union, pred_area, label_area)``
                tuples of (C,) tensors from ``process``.

        Returns:
            dict: flat scalars in %.
        """
        metrics = super().compute_metrics(results)
        if self.format_only or not results:
            return metrics
        if self._groups is None:
            self._groups = self.resolve_groups(self.dataset_meta['classes'])
        totals = [sum(r) for r in zip(*results)]
        per_class = self.total_area_to_metrics(*totals, ['mIoU'],
                                               self.nan_to_num, self.beta)
        table = PrettyTable(field_names=['Group', 'Classes', 'mIoU', 'mAcc'])
        for group, idx in self._groups.items():
            row = [group, len(idx)]
            for key in ('IoU', 'Acc'):
                vals = np.asarray(per_class[key], np.float64)[idx]
                with warnings.catch_warnings():
                    # an empty group or one without any present class -> nan
                    warnings.simplefilter('ignore', RuntimeWarning)
                    value = float(np.round(np.nanmean(vals) * 100, 2)) \
                        if len(vals) else float('nan')
                metrics[f'm{key}_{group}'] = value
                row.append(value)
            table.add_row(row)
        logger: MMLogger = MMLogger.get_current_instance()
        print_log('per group results:', logger)
        print_log('\n' + table.get_string(), logger=logger)
        return OrderedDict(metrics)
