"""The ``lt_mm.class_stats/v1`` file: schema, JSON IO, shipped statistics.

One JSON format holds the per-class training counts ``n_j`` of every
long-tail method (the papers' reference code loads them from hard-coded
paths in three different formats)::

    {"format": "lt_mm.class_stats/v1",
     "dataset": "ade20k" | null,
     "unit": "images" | "instances" | "pixels",
     "num_classes": C,
     "names": [C names] | null,
     "counts": [C numbers],
     "splits": {"many": [class indices], "medium": [...], "few": [...]},
     "extra": {...}}

``splits`` holds any named, disjoint groups of class indices (``many/medium/
few`` for ImageNet-LT, ``head/body/tail`` for ADE20K, ``rare/common/frequent``
for LVIS; the rules are in :mod:`lt_mm.core.splits`). ``extra`` is
free-form; keys understood by lt_mm:

- ``"total"``: the denominator of pixel ratios when ``counts`` are already
  fractions of *all* pixels (unlabelled ones included), so that
  :func:`~lt_mm.core.splits.ratio_splits` must not renormalise them
  (ADE20K's objectInfo150 ratios sum to 0.927, not 1).
- ``"image_counts"``, ``"instance_counts"``, ``"pixel_counts"``: other units
  of the same classes.
- ``"frequency"``: LVIS ``'r'/'c'/'f'`` letters, one per class.

Framework-free (no OpenMMLab import).
"""
from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import os.path as osp
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Union

import torch

from .checks import check_choice

FORMAT = 'lt_mm.class_stats/v1'
UNITS = ('images', 'instances', 'pixels')
#: ``extra`` entries with one value per class (checked by ``validate``)
PER_CLASS_EXTRA = ('image_counts', 'instance_counts', 'pixel_counts',
                   'frequency')
_UNIT_WORDS = {
    'images': 'per-class image counts',
    'instances': 'per-class instance counts',
    'pixels': 'per-pixel frequencies',
}
_HOW_TO_CREATE = ('python tools/class_stats.py CONFIG --out PATH '
                  '(add --unit images|instances|pixels)')
#: Tag of the one counts cache of every reader (:func:`cached_class_stats`).
CACHE_FORMAT = 'lt_mm.counts_cache/v1'
#: Statistics shipped with lt_mm, usable as ``stats_file='builtin:<name>'``.
BUILTIN_STATS = {'ade20k': 'ade20k_stats.json'}

PathLike = Union[str, 'os.PathLike[str]']


@dataclass
class ClassStats:
    """Per-class training statistics (one ``lt_mm.class_stats/v1`` file).

    The statistics are validated when the object is created, so a malformed
    file fails where it is loaded, not later inside a loss.

    Args:
        counts: ``n_j`` per class, shape (C,), in ``unit``.
        unit: ``'images'`` (samples containing the class), ``'instances'``
            (objects / boxes) or ``'pixels'`` (pixel counts or ratios).
        names: optional class names, C unique strings.
        splits: named disjoint groups of class indices, e.g.
            ``{'many': [...], 'medium': [...], 'few': [...]}``.
        dataset: optional dataset name.
        extra: free-form additional data (see the module docstring).
    """

    counts: List[float]
    unit: str
    names: Optional[List[str]] = None
    splits: Dict[str, List[int]] = field(default_factory=dict)
    dataset: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.counts, torch.Tensor):
            self.counts = self.counts.detach().flatten().tolist()
        if self.counts is None or isinstance(self.counts, (str, bytes)):
            raise ValueError(
                f'counts={self.counts!r} must be a list of per-class numbers.')
        try:
            self.counts = [float(c) for c in self.counts]
        except (TypeError, ValueError):
            raise ValueError(f'counts must be a list of numbers, got '
                             f'{self.counts!r}.') from None
        if self.names is not None:
            self.names = list(self.names)
        if self.splits is None:
            self.splits = {}
        if not isinstance(self.splits, dict):
            raise ValueError(
                f'splits must be a dict {{group name: [class indices]}}, '
                f'got {type(self.splits).__name__}.')
        self.splits = {
            str(k): _as_index_list(v)
            for k, v in self.splits.items()
        }
        if self.extra is None:
            self.extra = {}
        if not isinstance(self.extra, dict):
            raise ValueError(
                f'extra must be a dict, got {type(self.extra).__name__}.')
        self.validate()

    @property
    def num_classes(self) -> int:
        """Number of classes C (``len(counts)``)."""
        return len(self.counts)

    def validate(self,
                 num_classes: Optional[int] = None,
                 unit: Optional[str] = None) -> 'ClassStats':
        """Check the statistics; raise ``ValueError`` naming the problem.

        Args:
            num_classes: required C (the model's number of classes).
            unit: required unit, e.g. ``'pixels'`` for a segmentation loss.

        Returns:
            ClassStats: ``self``, so calls can be chained.
        """
        src = f' (dataset {self.dataset!r})' if self.dataset else ''
        c = len(self.counts)
        if c == 0:
            raise ValueError(f'class statistics{src} have no counts; '
                             'expected one count per class.')
        check_choice('unit', self.unit, UNITS)
        if unit is not None:
            check_choice('required unit', unit, UNITS)
            if self.unit != unit:
                raise ValueError(
                    f'counts are in {self.unit!r}{src} but this method needs '
                    f'{unit!r} ({_UNIT_WORDS[unit]}); compute them with '
                    f'python tools/class_stats.py CONFIG --unit {unit} '
                    '--out PATH.')
        if num_classes is not None and c != num_classes:
            raise ValueError(
                f'class statistics{src} have {c} classes but the model has '
                f'num_classes={num_classes}. Use the statistics of the '
                'dataset the model is trained on (for detection: foreground '
                'classes only, without the background).')
        bad = [
            i for i, v in enumerate(self.counts)
            if not math.isfinite(v) or v < 0
        ]
        if bad:
            raise ValueError(
                f'counts{src} must be finite and non-negative; classes {bad} '
                f'have {[self.counts[i] for i in bad]}.')
        if self.names is not None:
            if len(self.names) != c:
                raise ValueError(
                    f'names has {len(self.names)} entries but counts has {c}; '
                    'give one name per class (or names=None).')
            if not all(isinstance(n, str) for n in self.names):
                raise ValueError('names must all be strings.')
            seen = set()
            dup = sorted({n for n in self.names if n in seen or seen.add(n)})
            if dup:
                raise ValueError(f'names must be unique; duplicated: {dup}.')
        for key in PER_CLASS_EXTRA:
            value = self.extra.get(key)
            if value is not None and (not isinstance(value, (list, tuple))
                                      or len(value) != c):
                got = (f'{len(value)} entries' if isinstance(
                    value, (list, tuple)) else repr(value))
                raise ValueError(
                    f'extra[{key!r}]{src} has {got} but counts has {c}; '
                    'give one value per class, in the order of counts.')
        owner: Dict[int, str] = {}
        for group, idx in self.splits.items():
            if not isinstance(idx, list) or not all(
                    isinstance(i, int) and not isinstance(i, bool)
                    for i in idx):
                raise ValueError(
                    f'split {group!r} must be a list of int class indices, '
                    f'got {idx!r}.')
            out = [i for i in idx if not 0 <= i < c]
            if out:
                raise ValueError(
                    f'split {group!r} has class indices {out} out of range '
                    f'[0, {c}).')
            for i in idx:
                if i in owner:
                    raise ValueError(
                        f'class {i} is in split {owner[i]!r} and in split '
                        f'{group!r}; splits must be disjoint (and list each '
                        'class once).')
                owner[i] = group
        return self

    def to_dict(self) -> Dict[str, Any]:
        """Return the ``lt_mm.class_stats/v1`` JSON-serialisable dict."""
        return {
            'format': FORMAT,
            'dataset': self.dataset,
            'unit': self.unit,
            'num_classes': self.num_classes,
            'names': None if self.names is None else list(self.names),
            'counts': list(self.counts),
            'splits': {
                k: list(v)
                for k, v in self.splits.items()
            },
            'extra': dict(self.extra),
        }

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> 'ClassStats':
        """Build from a ``lt_mm.class_stats/v1`` dict (as in the JSON file)."""
        if not isinstance(d, dict):
            raise ValueError(f'class statistics must be a JSON object, got '
                             f'{type(d).__name__}.')
        fmt = d.get('format')
        if fmt != FORMAT:
            raise ValueError(
                f'class statistics have format={fmt!r}; expected {FORMAT!r}. '
                f'Create the file with {_HOW_TO_CREATE}.')
        for key in ('unit', 'counts'):
            if key not in d:
                raise ValueError(f'class statistics lack the key {key!r}.')
        stats = cls(
            counts=d['counts'],
            unit=d['unit'],
            names=d.get('names'),
            splits=d.get('splits') or {},
            dataset=d.get('dataset'),
            extra=d.get('extra') or {})
        n = d.get('num_classes')
        if n is not None and n != stats.num_classes:
            raise ValueError(f'class statistics say num_classes={n} but list '
                             f'{stats.num_classes} counts.')
        return stats

    def save(self, path: PathLike) -> None:
        """Write the statistics as JSON to ``path`` (parents are created)."""
        path = os.fspath(path)
        d = self.to_dict()
        try:
            text = json.dumps(d, indent=2, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ValueError(
                f'class statistics are not JSON-serialisable ({e}); check '
                'the contents of extra.') from None
        parent = osp.dirname(osp.abspath(path))
        os.makedirs(parent, exist_ok=True)
        with open(path, 'w', encoding='utf-8') as f:
            f.write(text + '\n')

    @classmethod
    def load(cls, path: PathLike) -> 'ClassStats':
        """Read a ``lt_mm.class_stats/v1`` JSON file.

        ``path`` may also be ``'builtin:<name>'`` for statistics shipped with
        lt_mm (see :data:`BUILTIN_STATS`, e.g. ``'builtin:ade20k'``).
        """
        path = os.fspath(path)
        if path.startswith('builtin:'):
            return _load_builtin(path[len('builtin:'):])
        if not osp.isfile(path):
            raise FileNotFoundError(
                f'class statistics file {path!r} does not exist. Create it '
                f'with {_HOW_TO_CREATE}, or pass the counts directly.')
        try:
            with open(path, encoding='utf-8') as f:
                d = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(
                f'class statistics file {path!r} is not valid JSON ({e}).'
            ) from None
        try:
            return cls.from_dict(d)
        except ValueError as e:
            raise ValueError(f'{path}: {e}') from None


def _as_index_list(v: Any) -> Any:
    """Turn a tuple / tensor / list of integer-likes into ``list[int]``."""
    if isinstance(v, torch.Tensor):
        v = v.flatten().tolist()
    if not isinstance(v, (list, tuple)):
        return v  # reported by validate()
    return [
        int(i)
        if isinstance(i, numbers.Integral) and not isinstance(i, bool) else i
        for i in v
    ]


def load_class_stats(path: PathLike,
                     num_classes: Optional[int] = None,
                     unit: Optional[str] = None) -> ClassStats:
    """Load and validate a class-statistics file.

    Args:
        path: a ``lt_mm.class_stats/v1`` JSON file, or ``'builtin:ade20k'``.
        num_classes: required number of classes C.
        unit: required unit (``'images'``, ``'instances'``, ``'pixels'``).

    Returns:
        ClassStats: validated statistics.

    Raises:
        FileNotFoundError: the file is missing (the message says how to
            create it).
        ValueError: wrong format, C or unit.
    """
    stats = ClassStats.load(path)
    try:
        return stats.validate(num_classes=num_classes, unit=unit)
    except ValueError as e:
        raise ValueError(f'stats file {os.fspath(path)}: {e}') from None


def _load_builtin(name: str) -> ClassStats:
    if name not in BUILTIN_STATS:
        raise ValueError(f'builtin:{name} is unknown; available: '
                         f'{["builtin:" + k for k in BUILTIN_STATS]}.')
    fname = BUILTIN_STATS[name]
    try:
        from importlib.resources import files
        text = files('lt_mm.core.data').joinpath(fname).read_text(
            encoding='utf-8')
    except (ImportError, FileNotFoundError, TypeError):
        path = osp.join(osp.dirname(osp.abspath(__file__)), 'data', fname)
        with open(path, encoding='utf-8') as f:
            text = f.read()
    return ClassStats.from_dict(json.loads(text))


def ade20k_class_stats() -> ClassStats:
    """ADE20K (150 classes) pixel ratios and DisAlign head/body/tail splits.

    Transcribed from DisAlign (Zhang et al., CVPR 2021) Table 16, whose ratios
    come from ADE20K's ``objectInfo150`` (fractions of all training pixels).
    Classes are in mmseg's ``ADE20KDataset.METAINFO['classes']`` order;
    ``unit='pixels'``, ``counts`` = ratios, ``extra['total'] = 1.0``;
    ``splits`` = the paper's labels: head = indices 0-19, body = 20-74,
    tail = 75-149.
    """
    return _load_builtin('ade20k')


def write_stats_cache(stats: ClassStats, path: str) -> bool:
    """Save ``stats`` to ``path`` atomically, as a cache.

    The file is written under a temporary name and moved into place, so
    several DDP ranks writing the same cache never leave a torn file. A
    failure (read-only data folder, ...) only warns: a cache is optional.

    Returns:
        bool: whether the cache was written.
    """
    import warnings
    tmp = f'{path}.{os.getpid()}.tmp'
    try:
        stats.save(tmp)
        os.replace(tmp, path)
        return True
    except OSError as e:
        warnings.warn(f'could not cache class statistics at {path!r} ({e}); '
                      'they will be recomputed next time.')
        if osp.exists(tmp):
            os.remove(tmp)
        return False


def default_cache_file(source: PathLike, unit: str) -> str:
    """``<source stem>_class_stats_<unit>.json`` next to ``source`` (a file
    or a folder), the default cache of every counts reader."""
    stem = osp.splitext(os.fspath(source).rstrip('/\\'))[0]
    return f'{stem}_class_stats_{unit}.json'


def fingerprint_files(paths: Any,
                      params: Optional[Dict[str, Any]] = None) -> str:
    """SHA-1 of the *content* of ``paths`` (in order) and of ``params``.

    The one cache key of every counts reader: a cache is valid while the
    annotation files hold the same bytes (a copy, a ``touch`` or a moved
    folder keep it; any edit invalidates it) and the reader settings
    (``params``: unit, num_classes, ``reduce_zero_label``, ...) are equal.

    Args:
        paths: annotation files (a str or a sequence of str).
        params: JSON-serialisable reader settings.

    Returns:
        str: 40 hex digits.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    h = hashlib.sha1()
    h.update(json.dumps(params or {}, sort_keys=True).encode())
    for path in paths:
        h.update(b'\0file\0')
        with open(os.fspath(path), 'rb') as f:
            for chunk in iter(lambda: f.read(1 << 20), b''):
                h.update(chunk)
    return h.hexdigest()


def cached_class_stats(paths: Any, params: Dict[str, Any],
                       compute: Callable[[], ClassStats],
                       cache_file: Union[PathLike, bool, None],
                       default: PathLike) -> ClassStats:
    """The counts of a reader, through the one counts cache.

    Every annotation reader (classification lists, LVIS/COCO json,
    segmentation label maps) caches its :class:`ClassStats` this way: a
    ``lt_mm.class_stats/v1`` file with ``extra['cache'] =``
    :data:`CACHE_FORMAT` and ``extra['sha1'] =`` the
    :func:`fingerprint_files` of the annotation files and reader settings
    (so a cache is also a valid ``stats_file``). A cache of other files or
    settings is recomputed and overwritten; an unwritable folder only warns.

    Args:
        paths: the annotation files the counts are read from.
        params: the reader settings that change the counts.
        compute: reads the annotations (called on a cache miss).
        cache_file: ``None`` = ``default``; ``False`` = no cache (the one
            "off" value; ``''`` is accepted as a deprecated alias);
            a path = that file.
        default: the reader's default cache path
            (:func:`default_cache_file`).

    Returns:
        ClassStats: the counts (with ``extra['cache']`` / ``['sha1']``
        unless ``cache_file=False``).
    """
    if isinstance(cache_file, str) and cache_file == '':
        import warnings
        warnings.warn(
            "cache_file='' is deprecated; use cache_file=False (no cache).",
            DeprecationWarning)
        cache_file = False
    if cache_file is True:
        cache_file = None
    if cache_file is False:
        return compute()
    path = os.fspath(default if cache_file is None else cache_file)
    key = dict(cache=CACHE_FORMAT, sha1=fingerprint_files(paths, params))
    if osp.isfile(path):
        try:
            cached = ClassStats.load(path)
        except (ValueError, OSError):
            cached = None
        if cached is not None and all(
                cached.extra.get(k) == v for k, v in key.items()):
            return cached
    stats = compute()
    stats.extra.update(key)
    write_stats_cache(stats, path)
    return stats
