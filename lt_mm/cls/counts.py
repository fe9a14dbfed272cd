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

import os.path as osp
from typing import List, Optional, Sequence, Tuple, Union

from lt_mm.core.stats import ClassStats, cached_class_stats
from lt_mm.core.stats import default_cache_file as _default_cache_file
from lt_mm.core.stats import resolve_counts, shot_splits

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
    if names is not None and stats.names is None:
        stats.names = list(names)
    ex = stats.extra
    if ex.get('many_thr') != many_thr or ex.get('few_thr') != few_thr:
        # the counts are valid; only the split thresholds differ
        stats.splits = shot_splits(stats.counts, many_thr, few_thr)
        ex.update(many_thr=many_thr, few_thr=few_thr)
    return stats.validate()


def read_cls_counts(dataset: Union[str, dict],
                    unit: Optional[str] = 'images',
                    num_classes: Optional[int] = None,
                    cache_file: Union[str, bool, None] = None) -> ClassStats:
    """The classification counts reader (``resolve_counts(dataset=...)``).

    Args:
        dataset: an ImageNet-LT style list, or a dataset config dict whose
            ``data_root`` + ``ann_file`` is one (``ImageNetLTDataset``,
            ``CustomDataset``, ``ImageNet`` with a list file).
        unit: must be ``'images'`` (or None).
        num_classes: C; default = largest label + 1.
        cache_file: see :func:`lt_mm.core.stats.cached_class_stats`.

    Returns:
        ClassStats: images per class (C,).
    """
    if unit not in (None, 'images'):
        raise ValueError(f"unit={unit!r}; classification counts are images "
                         "(unit='images').")
    if isinstance(dataset, dict):
        ann = dataset.get('ann_file') or ''
        if not ann:
            raise ValueError(
                f'{dataset.get("type")} without ann_file: lt_mm counts '
                'classification datasets from their list file; give '
                'stats_file=PATH (python tools/class_stats.py CONFIG --out '
                'PATH) or counts=[...].')
        root = dataset.get('data_root') or ''
        path = ann if osp.isabs(ann) or not root else osp.join(root, ann)
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
    given = [
        n for n, v in (('counts', counts), ('stats_file', stats_file),
                       ('train_ann_file', train_ann_file)) if v is not None
    ]
    if len(given) > 1:
        raise ValueError(f'{what}: give the class counts from one source '
                         f'only, got {given}.')
    if not given:
        raise ValueError(
            f'{what} needs per-class training counts: pass counts=[...], '
            'stats_file=PATH (a lt_mm.class_stats/v1 JSON file, created with '
            'python tools/class_stats.py CONFIG --out PATH) or '
            'train_ann_file=PATH (the ImageNet-LT style training list).')
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
