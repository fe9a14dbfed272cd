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
  exactly one source (``counts=[...]`` or ``stats_file=PATH``).

All names are re-exported, so ``from lt_mm.core.stats import ...`` keeps
working. Framework-free (no OpenMMLab import).
"""
from __future__ import annotations

import os
from typing import List, Optional, Union

from .checks import CountsLike, as_counts
from .splits import (HEAD_SHARE, SPLIT_RULES, TAIL_SHARE, compute_splits,
                     lvis_splits, pixel_splits, ratio_splits, shot_splits)
from .stats_io import (_HOW_TO_CREATE, BUILTIN_STATS, FORMAT, UNITS,
                       ClassStats, PathLike, ade20k_class_stats,
                       load_class_stats, write_stats_cache)

__all__ = [
    'BUILTIN_STATS', 'FORMAT', 'UNITS', 'ClassStats', 'CountsLike', 'PathLike',
    'ade20k_class_stats', 'load_class_stats', 'write_stats_cache',
    'HEAD_SHARE', 'TAIL_SHARE', 'SPLIT_RULES', 'compute_splits', 'lvis_splits',
    'pixel_splits', 'ratio_splits', 'shot_splits', 'resolve_counts'
]


def resolve_counts(counts: Optional[Union[CountsLike, ClassStats]] = None,
                   stats_file: Optional[PathLike] = None,
                   num_classes: Optional[int] = None,
                   unit: Optional[str] = None,
                   allow_zero: bool = False) -> List[float]:
    """Return per-class counts ``n_j`` from exactly one source.

    Used by every head and loss that needs training counts (e.g. DisAlign
    GRW weights, Eq. 11; Decoupling samplers, Eq. 1-2).

    Args:
        counts: explicit counts, shape (C,), or a :class:`ClassStats`.
        stats_file: path of a ``lt_mm.class_stats/v1`` file (or
            ``'builtin:ade20k'``).
        num_classes: required C.
        unit: required unit; checked for ``stats_file`` and ``ClassStats``
            (explicit lists carry no unit and are trusted).
        allow_zero: whether classes with a zero count are accepted.

    Returns:
        list[float]: C validated counts.
    """
    if counts is not None and stats_file is not None:
        raise ValueError('give the class counts either as counts=[...] or as '
                         f'stats_file={stats_file!r}, not both.')
    if counts is None and stats_file is None:
        raise ValueError(
            'this method needs per-class training counts: pass counts=[...] '
            'or stats_file=PATH (a lt_mm.class_stats/v1 JSON file, created '
            f'with {_HOW_TO_CREATE}).')
    if isinstance(counts, (str, os.PathLike)):
        raise ValueError(
            f'counts={counts!r} looks like a path; pass it as stats_file.')
    if stats_file is not None:
        counts = load_class_stats(stats_file, num_classes, unit)
    if isinstance(counts, ClassStats):
        counts = counts.validate(num_classes=num_classes, unit=unit).counts
    t = as_counts(counts, num_classes=num_classes, allow_zero=allow_zero)
    return t.tolist()
