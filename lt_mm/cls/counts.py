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

import hashlib
import json
import os.path as osp
from typing import List, Optional, Sequence, Tuple, Union

from lt_mm.core.stats import (ClassStats, resolve_counts, shot_splits,
                              write_stats_cache)

#: Default many/medium/few thresholds of the ImageNet-LT protocol.
MANY_THR = 100
FEW_THR = 20
_CACHE_SUFFIX = '_class_stats.json'


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


def _sha1(path: str) -> str:
    h = hashlib.sha1()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def default_cache_file(ann_file: str) -> str:
    """``<dir>/<list name>_class_stats.json`` next to the list file."""
    stem = osp.splitext(ann_file)[0]
    return stem + _CACHE_SUFFIX


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

    The result is cached as a ``lt_mm.class_stats/v1`` JSON file
    (default: next to the list, ``<list stem>_class_stats.json``) together
    with the SHA-1 of the list, so the counts are computed once and
    recomputed only when the list changes (other thresholds only recompute
    the splits). A folder without write permission only disables
    the cache (with a warning).

    Args:
        ann_file: the training list.
        num_classes: C; default = largest label + 1.
        names: optional C class names.
        cache_file: cache path; ``None`` = default path, ``False`` = no
            cache.
        many_thr: many-shot threshold of the stored splits.
        few_thr: few-shot threshold of the stored splits.

    Returns:
        ClassStats: counts (C,), splits, ``extra['source']`` and
        ``extra['sha1']``.
    """
    digest = _sha1(ann_file) if osp.isfile(ann_file) else None
    if digest is None:
        read_list_file(ann_file)  # raises FileNotFoundError
    if cache_file is None:
        cache_file = default_cache_file(ann_file)
    if cache_file:
        cached = _read_cache(
            str(cache_file), digest, num_classes, many_thr, few_thr)
        if cached is not None:
            if names is not None and cached.names is None:
                cached.names = list(names)
                cached.validate()
            return cached
    labels = [y for _, y in read_list_file(ann_file)]
    counts = _label_counts(labels, num_classes, ann_file)
    stats = ClassStats(
        counts=counts,
        unit='images',
        names=None if names is None else list(names),
        splits=shot_splits(counts, many_thr, few_thr),
        dataset=osp.basename(ann_file),
        extra=dict(
            source=osp.abspath(ann_file),
            sha1=digest,
            many_thr=many_thr,
            few_thr=few_thr))
    if cache_file:
        write_stats_cache(stats, str(cache_file))
    return stats


def _read_cache(path: str, digest: Optional[str], num_classes: Optional[int],
                many_thr: float, few_thr: float) -> Optional[ClassStats]:
    if not osp.isfile(path):
        return None
    try:
        stats = ClassStats.load(path)
    except (ValueError, OSError, json.JSONDecodeError):
        return None
    ex = stats.extra
    if ex.get('sha1') != digest or stats.unit != 'images':
        return None
    if num_classes is not None and stats.num_classes != num_classes:
        return None
    if ex.get('many_thr') != many_thr or ex.get('few_thr') != few_thr:
        # the counts are valid; only the split thresholds differ
        stats.splits = shot_splits(stats.counts, many_thr, few_thr)
        stats.extra.update(many_thr=many_thr, few_thr=few_thr)
    return stats


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
    if train_ann_file is not None:
        stats = class_stats_from_list(train_ann_file, num_classes)
        if num_classes is not None and stats.num_classes != num_classes:
            raise ValueError(
                f'{what}: {train_ann_file} has {stats.num_classes} classes '
                f'but num_classes={num_classes}.')
        counts = stats.counts
    try:
        return resolve_counts(
            counts,
            stats_file,
            num_classes,
            unit='images',
            allow_zero=allow_zero)
    except ValueError as e:
        raise ValueError(f'{what}: {e}') from None
