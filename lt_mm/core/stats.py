"""Per-class training statistics and long-tail class splits.

Every long-tail method needs the number of training samples per class
(``n_j`` in the papers): DisAlign's generalized re-weighting (Zhang et al.,
CVPR 2021, Eq. 11), the Decoupling samplers (Kang et al., ICLR 2020,
Eq. 1-2), CDT and logit adjustment. This module is the one entry point:

* :mod:`lt_mm.core.stats_io` -- the ``lt_mm.class_stats/v1`` JSON format
  (:class:`ClassStats`, :func:`load_class_stats`, the statistics shipped
  with lt_mm, :func:`write_stats_cache`);
* :mod:`lt_mm.core.splits` -- the many/medium/few, head/body/tail and
  rare/common/frequent rules (:func:`compute_splits`);
* here: :func:`resolve_counts`, the counts of a head, loss or metric from
  exactly one source (``counts=[...]``, ``stats_file=PATH`` or a training
  ``dataset`` read by a toolbox reader, cached by
  :func:`~lt_mm.core.stats_io.cached_class_stats`).

All names are re-exported, so ``from lt_mm.core.stats import ...`` keeps
working. Framework-free (no OpenMMLab import).
"""
from __future__ import annotations

import os
from typing import Any, Callable, List, Optional, Union

from .checks import CountsLike, as_counts
from .splits import (HEAD_SHARE, SPLIT_RULES, TAIL_SHARE, compute_splits,
                     lvis_splits, pixel_splits, ratio_splits, shot_splits)
from .stats_io import (_HOW_TO_CREATE, BUILTIN_STATS, CACHE_FORMAT, FORMAT,
                       UNITS, ClassStats, PathLike, ade20k_class_stats,
                       cached_class_stats, default_cache_file,
                       fingerprint_files, load_class_stats, write_stats_cache)

__all__ = [
    'BUILTIN_STATS', 'CACHE_FORMAT', 'FORMAT', 'UNITS', 'ClassStats',
    'CountsLike', 'PathLike', 'ade20k_class_stats', 'cached_class_stats',
    'default_cache_file', 'fingerprint_files', 'load_class_stats',
    'write_stats_cache', 'COUNT_SOURCES', 'CountsReader', 'HEAD_SHARE',
    'TAIL_SHARE', 'SPLIT_RULES', 'compute_splits', 'lvis_splits',
    'pixel_splits', 'ratio_splits', 'shot_splits', 'resolve_counts',
    'check_one_source'
]

#: the three sources of class counts, in the order of the error messages
COUNT_SOURCES = ('counts', 'stats_file', 'dataset')

#: ``reader(dataset, unit, num_classes) -> ClassStats | counts``: an
#: adapter's reader of its annotation format
CountsReader = Callable[[Any, Optional[str], Optional[int]], Union[ClassStats,
                                                                   CountsLike]]


def resolve_counts(counts: Optional[Union[CountsLike, ClassStats]] = None,
                   stats_file: Optional[PathLike] = None,
                   num_classes: Optional[int] = None,
                   unit: Optional[str] = None,
                   allow_zero: bool = False,
                   *,
                   dataset: Any = None,
                   reader: Optional[CountsReader] = None) -> List[float]:
    """Return per-class counts ``n_j`` from exactly one source.

    The one entry of every count-based component (DisAlign GRW weights,
    Eq. 11; CDT temperatures, Eq. 3; Decoupling samplers, Eq. 1-2; post-hoc
    priors; metric groups). Sources:

    * ``counts`` -- explicit numbers (or a :class:`ClassStats`);
    * ``stats_file`` -- a ``lt_mm.class_stats/v1`` file;
    * ``dataset`` -- a training dataset (an annotation file, or a dataset
      config dict) read by the toolbox adapter's ``reader`` (core cannot
      parse toolbox formats). ``lt_mm.engine.counts`` fills ``counts``
      from the config's training dataset when no source is given.

    Args:
        counts: explicit counts, shape (C,), or a :class:`ClassStats`.
        stats_file: path of a ``lt_mm.class_stats/v1`` file (or
            ``'builtin:ade20k'``).
        num_classes: required C.
        unit: required unit; checked for ``stats_file``, ``dataset`` and
            ``ClassStats`` (explicit lists carry no unit and are trusted).
        allow_zero: whether classes with a zero count are accepted.
        dataset: the training annotations, for ``reader``.
        reader: ``reader(dataset, unit, num_classes)`` returning a
            :class:`ClassStats` (or counts).

    Returns:
        list[float]: C validated counts.
    """
    given = [
        n for n, v in zip(COUNT_SOURCES, (counts, stats_file, dataset))
        if v is not None
    ]
    if len(given) > 1:
        if given == ['counts', 'stats_file']:
            raise ValueError(
                'give the class counts either as counts=[...] or as '
                f'stats_file={stats_file!r}, not both.')
        raise ValueError(f'give the class counts from exactly one source; '
                         f'got {given} (not both).')
    if not given:
        raise ValueError(
            'this method needs per-class training counts: pass counts=[...] '
            'or stats_file=PATH (a lt_mm.class_stats/v1 JSON file, created '
            f'with {_HOW_TO_CREATE}), or build through tools/train.py, '
            "which takes them from the config's training dataset.")
    if isinstance(counts, (str, os.PathLike)):
        raise ValueError(
            f'counts={counts!r} looks like a path; pass it as stats_file.')
    if dataset is not None:
        if reader is None:
            raise ValueError(
                f'dataset={dataset!r} needs a toolbox reader; use the '
                'components registered by lt_mm.cls / lt_mm.seg / lt_mm.det '
                'or write the counts with tools/class_stats.py '
                '(stats_file=).')
        counts = reader(dataset, unit, num_classes)
    if stats_file is not None:
        counts = load_class_stats(stats_file, num_classes, unit)
    if isinstance(counts, ClassStats):
        counts = counts.validate(num_classes=num_classes, unit=unit).counts
    t = as_counts(counts, num_classes=num_classes, allow_zero=allow_zero)
    return t.tolist()


def check_one_source(what: str, hint: str, **sources) -> str:
    """The name of the one count source given (the rest None).

    Args:
        what: the component, named in the errors.
        hint: how to give counts, e.g. ``'counts=[...] or stats_file=PATH'``.
        **sources: ``name=value`` of every possible source.

    Returns:
        str: the name of the source given.
    """
    given = [n for n, v in sources.items() if v is not None]
    if len(given) > 1:
        raise ValueError(f'{what}: give the class counts from one source '
                         f'only, got {given}.')
    if not given:
        raise ValueError(
            f'{what} needs per-class training counts: pass {hint}.')
    return given[0]
