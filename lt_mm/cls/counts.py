"""Per-class training counts for the classification adapter.

ImageNet-LT, Places-LT and iNaturalist are published as list files with one
``<relative path> <label>`` line per image (Liu et al., CVPR 2019, Sec. 5).
The class counts ``n_j`` needed by every long-tail method (DisAlign Eq. 11,
CDT Eq. 3 and Eq. 5, Decoupling Eq. 1-2, the many/medium/few protocol)
are therefore a bincount of the labels of the *training* list. This module
computes them once and caches them next to the list in the
``lt_mm.class_stats/v1`` JSON format of :mod:`lt_mm.core.stats`
(``unit='images'``).

It also extends :func:`lt_mm.core.stats.resolve_counts` with a third
source, ``train_ann_file``, so that configs can point heads, losses and the
metric at the training list itself when no statistics file exists yet.
"""
from __future__ import annotations

import json
import os.path as osp
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np

from lt_mm.core.stats import ClassStats, cached_class_stats, check_one_source
from lt_mm.core.stats import default_cache_file as _default_cache_file
from lt_mm.core.stats import resolve_counts, shot_splits
from lt_mm.engine.counts import without_pipelines

#: Default many/medium/few thresholds of the ImageNet-LT protocol.
MANY_THR = 100
FEW_THR = 20


def read_list_file(ann_file: str) -> List[Tuple[str, int]]:
    """Parse an ImageNet-LT style list file.

    Each non-empty line is ``<relative image path> <integer label>``; the
    path may contain spaces (the label is after the last space), as in
    mmpretrain's ``CustomDataset``.

    Args:
        ann_file: path of the list (e.g. ``ImageNet_LT_train.txt``).

    Returns:
        list[tuple[str, int]]: ``(path, label)`` per line.

    Raises:
        FileNotFoundError: the list does not exist.
        ValueError: a malformed line (named with its line number).
    """
    if not osp.isfile(ann_file):
        raise FileNotFoundError(
            f'list file {ann_file!r} does not exist; expected the '
            'ImageNet-LT style list (lines "<path> <label>"), e.g. '
            'data/imagenet_lt/ImageNet_LT_train.txt.')
    out: List[Tuple[str, int]] = []
    with open(ann_file, encoding='utf-8') as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.rsplit(' ', 1)
            if len(parts) != 2:
                raise ValueError(
                    f'{ann_file}:{lineno}: {line!r} is not '
                    '"<path> <label>"; ImageNet-LT lists have one image '
                    'path and one integer label per line.')
            try:
                label = int(parts[1])
            except ValueError:
                raise ValueError(
                    f'{ann_file}:{lineno}: label {parts[1]!r} is not an '
                    'integer.') from None
            if label < 0:
                raise ValueError(
                    f'{ann_file}:{lineno}: label {label} is negative.')
            out.append((parts[0], label))
    if not out:
        raise ValueError(f'list file {ann_file!r} has no samples.')
    return out


def default_cache_file(ann_file: str, unit: str = 'images') -> str:
    """``<dir>/<list stem>_class_stats_images.json`` next to the list
    (:func:`lt_mm.core.stats.default_cache_file`)."""
    return _default_cache_file(ann_file, unit)


def _label_counts(labels: Sequence[int], num_classes: Optional[int],
                  ann_file: str) -> List[int]:
    largest = max(labels)
    if num_classes is None:
        num_classes = largest + 1
    elif largest >= num_classes:
        raise ValueError(
            f'{ann_file} has label {largest} but num_classes={num_classes}; '
            'use the list of the dataset the model is built for.')
    counts = [0] * int(num_classes)
    for y in labels:
        counts[y] += 1
    return counts


def class_stats_from_list(ann_file: str,
                          num_classes: Optional[int] = None,
                          names: Optional[Sequence[str]] = None,
                          cache_file: Union[str, bool, None] = None,
                          many_thr: float = MANY_THR,
                          few_thr: float = FEW_THR) -> ClassStats:
    """Class statistics of a training list (``unit='images'``).

    ``counts[j]`` = number of lines with label j (``n_j``); ``splits`` are
    the many/medium/few groups of :func:`lt_mm.core.stats.shot_splits`
    (Liu et al. 2019: many ``n_j > many_thr``, few ``n_j < few_thr``).

    The counts go through lt_mm's one counts cache
    (:func:`lt_mm.core.stats.cached_class_stats`: default next to the
    list, ``<list stem>_class_stats_images.json``, keyed by the SHA-1 of
    the list's content), so they are computed once and recomputed only
    when the list changes (the splits follow the thresholds of each call).
    A folder without write permission only disables the cache (with a
    warning).

    Args:
        ann_file: the training list.
        num_classes: C; default = largest label + 1.
        names: optional C class names.
        cache_file: cache path; ``None`` = default path, ``False`` = no
            cache (lt_mm's one "off" value).
        many_thr: many-shot threshold of the stored splits.
        few_thr: few-shot threshold of the stored splits.

    Returns:
        ClassStats: counts (C,), splits, ``extra['source']`` and (cached)
        ``extra['cache']`` / ``extra['sha1']``.
    """
    if not osp.isfile(ann_file):
        read_list_file(ann_file)  # raises FileNotFoundError

    def compute() -> ClassStats:
        labels = [y for _, y in read_list_file(ann_file)]
        counts = _label_counts(labels, num_classes, ann_file)
        return ClassStats(
            counts=counts,
            unit='images',
            names=None if names is None else list(names),
            splits=shot_splits(counts, many_thr, few_thr),
            dataset=osp.basename(ann_file),
            extra=dict(
                source=osp.abspath(ann_file),
                many_thr=many_thr,
                few_thr=few_thr))

    stats = cached_class_stats(
        ann_file,
        dict(reader='cls.list', num_classes=num_classes),
        compute,
        cache_file,
        default=default_cache_file(ann_file))
    # the cache is keyed by the list's content: names are the caller's (a
    # renamed classes.txt must not come back from an older cache)
    stats.names = None if names is None else list(names)
    ex = stats.extra
    if ex.get('many_thr') != many_thr or ex.get('few_thr') != few_thr:
        # the counts are valid; only the split thresholds differ
        stats.splits = shot_splits(stats.counts, many_thr, few_thr)
        ex.update(many_thr=many_thr, few_thr=few_thr)
    return stats.validate()


#: mmpretrain dataset types whose ``ann_file`` is an ImageNet-LT style
#: ``<path> <label>`` list (counted by :func:`class_stats_from_list`).
LIST_DATASETS = ('CustomDataset', 'ImageNet', 'ImageNet21k',
                 'ImageNetLTDataset')
#: ``source`` values of :func:`read_cls_counts`.
CLS_SOURCES = ('list', 'dataset')


def _type_name(dataset: dict) -> Optional[str]:
    t = dataset.get('type')
    if t is None:
        return None
    return t.__name__ if isinstance(t, type) else str(t).split('.')[-1]


def _ann_path(dataset: dict) -> str:
    ann = dataset.get('ann_file') or ''
    root = dataset.get('data_root') or ''
    return ann if not ann or osp.isabs(ann) or not root else osp.join(
        root, ann)


def _is_list_dataset(dataset: Union[str, dict]) -> bool:
    """A path, a dict without ``type``, or a list-reading type with a
    ``.txt`` ``ann_file``."""
    if not isinstance(dataset, dict):
        return True
    kind = _type_name(dataset)
    if kind is None:
        return True
    ann = str(dataset.get('ann_file') or '')
    return kind in LIST_DATASETS and ann.endswith('.txt')


def build_cls_dataset(dataset: dict) -> Any:
    """Build an mmpretrain dataset config without its pipeline (only the
    annotations are read)."""
    from lt_mm.engine.counts import build_without_pipeline
    return build_without_pipeline(dataset, 'mmpretrain')


def class_stats_from_dataset(dataset: dict,
                             num_classes: Optional[int] = None,
                             cache_file: Union[str, bool, None] = None,
                             many_thr: float = MANY_THR,
                             few_thr: float = FEW_THR) -> ClassStats:
    """Images per class of any single-label mmpretrain dataset config.

    The dataset is built without its pipeline and ``n_j`` is the bincount
    of ``dataset.get_gt_labels()`` (the same labels training sees, for
    every dataset type: lists, json annotations, folders, CIFAR ...).
    Cached (:func:`lt_mm.core.stats.cached_class_stats`, keyed by the
    annotation file and the dataset config) when the config names an
    existing ``ann_file``; computed on every call otherwise.

    Args:
        dataset: an mmpretrain dataset config dict.
        num_classes: C; default = the dataset's classes.
        cache_file: see :func:`lt_mm.core.stats.cached_class_stats`.
        many_thr: many-shot threshold of the stored splits.
        few_thr: few-shot threshold of the stored splits.

    Returns:
        ClassStats: images per class (C,), names (when the dataset has C
        classes), shot splits, ``extra['num_images']``.

    Raises:
        ValueError: multi-label labels, labels outside ``[0, C)``, no
            classes and no ``num_classes``.
    """
    cfg = without_pipelines(dataset)
    kind = _type_name(cfg) or 'the dataset'

    def compute() -> ClassStats:
        ds = build_cls_dataset(cfg)
        meta = getattr(ds, 'metainfo', None) or {}
        classes = meta.get('classes') or getattr(ds, 'CLASSES', None)
        classes = [str(c) for c in classes] if classes else None
        c = num_classes if num_classes is not None else (
            len(classes) if classes else None)
        if not c:
            raise ValueError(
                f'{type(ds).__name__} has no classes in its metainfo; set '
                'metainfo=dict(classes=(...)) in the dataset config.')
        try:
            labels = np.asarray(ds.get_gt_labels())
        except ValueError as err:  # label lists of different lengths
            raise ValueError(
                f'{type(ds).__name__} is multi-label (its get_gt_labels() '
                f'failed: {err}); lt_mm counts single-label classification '
                'datasets.') from err
        if labels.dtype == object or labels.ndim != 1:
            raise ValueError(
                f'{type(ds).__name__} is multi-label; lt_mm counts '
                'single-label classification datasets.')
        labels = labels.astype(np.int64)
        if labels.size and (labels.min() < 0 or labels.max() >= c):
            raise ValueError(
                f'labels lie in [{labels.min()}, {labels.max()}] but the '
                f'dataset has {c} classes.')
        counts = np.bincount(labels, minlength=c).tolist()
        ann = _ann_path(cfg)
        return ClassStats(
            counts=counts,
            unit='images',
            names=classes if classes and len(classes) == c else None,
            splits=shot_splits(counts, many_thr, few_thr),
            dataset=osp.basename(ann) if ann else None,
            extra=dict(
                source=osp.abspath(ann) if ann else None,
                dataset_type=type(ds).__name__,
                num_images=int(labels.size),
                many_thr=many_thr,
                few_thr=few_thr))

    ann = _ann_path(cfg)
    if cache_file is False or not ann or not osp.isfile(ann):
        if cache_file not in (None, False):
            raise ValueError(
                f'cache_file={cache_file!r}: {kind} has no annotation file '
                'to key the cache on; use cache_file=None or False.')
        return compute().validate()
    params = dict(
        reader='cls.dataset',
        num_classes=num_classes,
        config=json.dumps(cfg, sort_keys=True, default=str))
    stats = cached_class_stats(
        ann, params, compute, cache_file, default=default_cache_file(ann))
    ex = stats.extra
    if ex.get('many_thr') != many_thr or ex.get('few_thr') != few_thr:
        stats.splits = shot_splits(stats.counts, many_thr, few_thr)
        ex.update(many_thr=many_thr, few_thr=few_thr)
    return stats.validate()


def read_cls_counts(dataset: Union[str, dict],
                    unit: Optional[str] = 'images',
                    num_classes: Optional[int] = None,
                    cache_file: Union[str, bool, None] = None,
                    source: Optional[str] = None) -> ClassStats:
    """The classification counts reader (``resolve_counts(dataset=...)``).

    Two ways to count ``n_j`` (images per class):

    * ``'list'``: an ImageNet-LT style list (:func:`class_stats_from_list`),
      a path or a dataset config dict whose ``data_root`` + ``ann_file``
      is one;
    * ``'dataset'``: any single-label mmpretrain dataset config, built
      without its pipeline, ``get_gt_labels()``
      (:func:`class_stats_from_dataset`; the dataset's class names).

    Args:
        dataset: a list path or a dataset config dict.
        unit: must be ``'images'`` (or None).
        num_classes: C; default = largest label + 1 (list) or the
            dataset's classes (dataset).
        cache_file: see :func:`lt_mm.core.stats.cached_class_stats`.
        source: ``'list'``, ``'dataset'`` or None = ``'list'`` for a path,
            a dict without ``type`` and the list-reading types
            (:data:`LIST_DATASETS`) with a ``.txt`` ``ann_file``,
            ``'dataset'`` for every other dataset config.

    Returns:
        ClassStats: images per class (C,).
    """
    if unit not in (None, 'images'):
        raise ValueError(f"unit={unit!r}; classification counts are images "
                         "(unit='images').")
    if source not in (None, ) + CLS_SOURCES:
        raise ValueError(f'source={source!r}; choose one of {CLS_SOURCES} '
                         '(or None: by the dataset type).')
    if source is None:
        source = 'list' if _is_list_dataset(dataset) else 'dataset'
    if source == 'dataset':
        if not isinstance(dataset, dict) and not hasattr(dataset, 'to_dict'):
            raise ValueError(
                f"source='dataset' needs a dataset config dict, got "
                f'{dataset!r}; pass a list path with source=None.')
        return class_stats_from_dataset(dataset, num_classes, cache_file)
    if isinstance(dataset, dict):
        if not dataset.get('ann_file'):
            raise ValueError(
                f'{dataset.get("type")} without ann_file: lt_mm counts '
                'classification datasets from their list file; give '
                'stats_file=PATH (python tools/class_stats.py CONFIG --out '
                'PATH) or counts=[...].')
        path = _ann_path(dataset)
    else:
        path = str(dataset)
    return class_stats_from_list(path, num_classes, cache_file=cache_file)


def resolve_cls_counts(counts=None,
                       stats_file: Optional[str] = None,
                       train_ann_file: Optional[str] = None,
                       num_classes: Optional[int] = None,
                       allow_zero: bool = False,
                       what: str = 'this method') -> List[float]:
    """Per-class training image counts from exactly one source.

    Wraps :func:`lt_mm.core.stats.resolve_counts` (``unit='images'``) and
    adds ``train_ann_file``: the counts of an ImageNet-LT style training
    list (:func:`class_stats_from_list`, cached).

    Args:
        counts: explicit counts (C,).
        stats_file: a ``lt_mm.class_stats/v1`` JSON file.
        train_ann_file: the training list.
        num_classes: required C (the head's ``num_classes``).
        allow_zero: accept classes without training images.
        what: the component named in error messages.

    Returns:
        list[float]: C counts.
    """
    check_one_source(
        what,
        'counts=[...], stats_file=PATH (a lt_mm.class_stats/v1 JSON file, '
        'created with python tools/class_stats.py CONFIG --out PATH) or '
        'train_ann_file=PATH (the ImageNet-LT style training list)',
        counts=counts,
        stats_file=stats_file,
        train_ann_file=train_ann_file)
    try:
        return resolve_counts(
            counts,
            stats_file,
            num_classes,
            unit='images',
            allow_zero=allow_zero,
            dataset=train_ann_file,
            reader=read_cls_counts)
    except ValueError as e:
        raise ValueError(f'{what}: {e}') from None
