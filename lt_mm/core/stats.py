"""Per-class training statistics and long-tail class splits.

Every long-tail method needs the number of training samples per class
(``n_j`` in the papers): DisAlign's generalized re-weighting (Zhang et al.,
CVPR 2021, Eq. 6), the Decoupling samplers (Kang et al., ICLR 2020, Eq. 1-2),
CDT and logit adjustment. The papers' reference code loads them from
hard-coded paths in three different formats; lt_mm uses one JSON format::

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
for LVIS). ``extra`` is free-form; keys understood by this module:

- ``"total"``: the denominator of pixel ratios when ``counts`` are already
  fractions of *all* pixels (unlabelled ones included), so that
  :func:`ratio_splits` must not renormalise them (ADE20K's objectInfo150
  ratios sum to 0.927, not 1).
- ``"image_counts"``, ``"instance_counts"``: other units of the same classes.
- ``"frequency"``: LVIS ``'r'/'c'/'f'`` letters, one per class.

This module is framework-free (no OpenMMLab import).
"""
from __future__ import annotations

import json
import math
import numbers
import os
import os.path as osp
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Union

import torch

from .checks import as_counts, check_choice, check_range

FORMAT = 'lt_mm.class_stats/v1'
UNITS = ('images', 'instances', 'pixels')
_UNIT_WORDS = {
    'images': 'per-class image counts',
    'instances': 'per-class instance counts',
    'pixels': 'per-pixel frequencies',
}
_HOW_TO_CREATE = ('python tools/class_stats.py CONFIG --out PATH '
                  '(add --unit images|instances|pixels)')
#: Statistics shipped with lt_mm, usable as ``stats_file='builtin:<name>'``.
BUILTIN_STATS = {'ade20k': 'ade20k_stats.json'}

PathLike = Union[str, 'os.PathLike[str]']
CountsLike = Union[Sequence[float], torch.Tensor]


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


def resolve_counts(counts: Optional[Union[CountsLike, ClassStats]] = None,
                   stats_file: Optional[PathLike] = None,
                   num_classes: Optional[int] = None,
                   unit: Optional[str] = None,
                   allow_zero: bool = False) -> List[float]:
    """Return per-class counts ``n_j`` from exactly one source.

    Used by every head and loss that needs training counts (e.g. DisAlign
    GRW weights, Eq. 6; Decoupling samplers, Eq. 1-2).

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


# ---------------------------------------------------------------------------
# Split rules
# ---------------------------------------------------------------------------
def shot_splits(counts: CountsLike,
                many_thr: float = 100,
                few_thr: float = 20) -> Dict[str, List[int]]:
    """Many/medium/few-shot splits (Liu et al. 2019, ImageNet-LT protocol).

    Boundaries (exact): ``many``: n_j > many_thr; ``few``: n_j < few_thr;
    ``medium``: few_thr <= n_j <= many_thr. With the defaults a class with
    100 images is medium, 101 is many, 20 is medium and 19 is few.

    Args:
        counts: training images per class, shape (C,).
        many_thr: many-shot threshold (strictly above).
        few_thr: few-shot threshold (strictly below).

    Returns:
        dict: ``{'many': [...], 'medium': [...], 'few': [...]}`` class indices
        in increasing order.
    """
    n = as_counts(counts, allow_zero=True).tolist()
    many_thr = check_range('many_thr', many_thr, low=0)
    few_thr = check_range(
        'few_thr',
        few_thr,
        low=0,
        high=many_thr,
        hint='few_thr must not exceed many_thr.')
    out: Dict[str, List[int]] = {'many': [], 'medium': [], 'few': []}
    for i, v in enumerate(n):
        if v > many_thr:
            out['many'].append(i)
        elif v < few_thr:
            out['few'].append(i)
        else:
            out['medium'].append(i)
    return out


def ratio_splits(counts: CountsLike,
                 head_thr: float = 0.01,
                 tail_thr: float = 0.001,
                 total: Optional[float] = None) -> Dict[str, List[int]]:
    """Head/body/tail splits on pixel ratios (DisAlign, ADE20K Table 16).

    ``r_j = n_j / total`` with ``total = sum_k n_k`` by default. Boundaries
    (exact): ``head``: r_j > head_thr (1 %); ``tail``: r_j <= tail_thr
    (0.1 %); ``body``: tail_thr < r_j <= head_thr. On DisAlign's ADE20K
    ratios this gives 20/55/75 classes (head >= 0.0103, body 0.0011-0.0098,
    tail <= 0.0010).

    Args:
        counts: pixels (or pixel ratios) per class, shape (C,).
        head_thr: head threshold on the ratio.
        tail_thr: tail threshold on the ratio.
        total: the denominator. Pass ``1.0`` when ``counts`` are already
            ratios of all pixels (ADE20K's ratios sum to 0.927 because
            unlabelled pixels count; renormalising them would move 'car'
            from body to head).

    Returns:
        dict: ``{'head': [...], 'body': [...], 'tail': [...]}``.
    """
    n = as_counts(counts, allow_zero=True)
    head_thr = check_range('head_thr', head_thr, low=0, high=1)
    tail_thr = check_range(
        'tail_thr',
        tail_thr,
        low=0,
        high=head_thr,
        hint='tail_thr must not exceed head_thr.')
    if total is None:
        total = float(n.sum())
    total = check_range(
        'total',
        total,
        low=0,
        low_inclusive=False,
        hint='the counts must not all be zero.')
    out: Dict[str, List[int]] = {'head': [], 'body': [], 'tail': []}
    for i, v in enumerate(n.tolist()):
        r = v / total
        if r > head_thr:
            out['head'].append(i)
        elif r <= tail_thr:
            out['tail'].append(i)
        else:
            out['body'].append(i)
    return out


def lvis_splits(image_counts: Optional[CountsLike] = None,
                frequency: Optional[Sequence[str]] = None,
                rare_max: int = 10,
                common_max: int = 100) -> Dict[str, List[int]]:
    """Rare/common/frequent splits of LVIS (Gupta et al., CVPR 2019).

    Boundaries (exact, on training *images* per class): ``rare``:
    n_j <= rare_max (1-10; a class with 0 images is also rare);
    ``common``: rare_max < n_j <= common_max (11-100); ``frequent``:
    n_j > common_max (>100). Alternatively give the ``'r'/'c'/'f'``
    ``frequency`` letters of the LVIS json ``categories``.

    Args:
        image_counts: training images per class, shape (C,).
        frequency: C letters in ``{'r', 'c', 'f'}``.
        rare_max: the largest image count of a rare class.
        common_max: the largest image count of a common class.

    Returns:
        dict: ``{'rare': [...], 'common': [...], 'frequent': [...]}``.
    """
    if (image_counts is None) == (frequency is None):
        raise ValueError(
            'lvis_splits needs exactly one of image_counts=[...] (training '
            "images per class) or frequency=['r'|'c'|'f', ...].")
    out: Dict[str, List[int]] = {'rare': [], 'common': [], 'frequent': []}
    if frequency is not None:
        key = {'r': 'rare', 'c': 'common', 'f': 'frequent'}
        for i, f in enumerate(frequency):
            if f not in key:
                raise ValueError(
                    f"frequency[{i}]={f!r}; expected 'r', 'c' or 'f'.")
            out[key[f]].append(i)
        return out
    n = as_counts(image_counts, name='image_counts', allow_zero=True)
    rare_max = check_range('rare_max', rare_max, low=0)
    common_max = check_range(
        'common_max',
        common_max,
        low=rare_max,
        hint='common_max must be at least rare_max.')
    for i, v in enumerate(n.tolist()):
        if v <= rare_max:
            out['rare'].append(i)
        elif v <= common_max:
            out['common'].append(i)
        else:
            out['frequent'].append(i)
    return out


SPLIT_RULES = ('shot', 'ratio', 'lvis')


def compute_splits(stats_or_counts: Union[ClassStats, CountsLike],
                   rule: str = 'shot',
                   **thr: Any) -> Dict[str, List[int]]:
    """Compute class splits with one of the rules above.

    Args:
        stats_or_counts: a :class:`ClassStats` or counts of shape (C,).
        rule: ``'shot'`` (:func:`shot_splits`), ``'ratio'``
            (:func:`ratio_splits`) or ``'lvis'`` (:func:`lvis_splits`).
        **thr: thresholds of the chosen rule (``many_thr``, ``few_thr``;
            ``head_thr``, ``tail_thr``, ``total``; ``rare_max``,
            ``common_max``).

    With a :class:`ClassStats`, ``'ratio'`` uses ``extra['total']`` when
    present, ``'lvis'`` uses image counts (``unit='images'`` or
    ``extra['image_counts']``) or else ``extra['frequency']``, and
    ``'shot'``/``'lvis'`` refuse pixel counts.

    Returns:
        dict: group name -> class indices.
    """
    check_choice('rule', rule, SPLIT_RULES)
    if not isinstance(stats_or_counts, ClassStats):
        if rule == 'lvis':
            return lvis_splits(image_counts=stats_or_counts, **thr)
        fn = shot_splits if rule == 'shot' else ratio_splits
        return fn(stats_or_counts, **thr)
    st = stats_or_counts
    if rule == 'ratio':
        if 'total' not in thr and st.extra.get('total') is not None:
            thr['total'] = st.extra['total']
        return ratio_splits(st.counts, **thr)
    image_counts = (
        st.counts if st.unit == 'images' else st.extra.get('image_counts'))
    if rule == 'shot':
        if st.unit != 'pixels':
            return shot_splits(st.counts, **thr)
        if image_counts is None:
            raise ValueError(
                "rule='shot' thresholds are numbers of samples but the "
                "counts are in 'pixels' and extra has no 'image_counts'; "
                "use rule='ratio' or image counts.")
        return shot_splits(image_counts, **thr)
    if image_counts is not None:
        return lvis_splits(image_counts=image_counts, **thr)
    if 'frequency' in st.extra:
        return lvis_splits(frequency=st.extra['frequency'])
    raise ValueError(
        f"rule='lvis' needs image counts but the counts are in {st.unit!r} "
        "and extra has neither 'image_counts' nor 'frequency'.")


# ---------------------------------------------------------------------------
# Statistics shipped with lt_mm
# ---------------------------------------------------------------------------
def _load_builtin(name: str) -> ClassStats:
    if name not in BUILTIN_STATS:
        raise ValueError(f'builtin:{name} is unknown; available: '
                         f'{["builtin:" + k for k in BUILTIN_STATS]}.')
    fname = BUILTIN_STATS[name]
    try:
        from importlib.resources import files
        text = files('lt_mm.core.data').joinpath(fname).read_text(
            encoding='utf-8')
    except (ModuleNotFoundError, FileNotFoundError, TypeError):
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


#: DisAlign's ADE20K thresholds (1 % and 0.1 % of all pixels at C = 150)
#: expressed as multiples of the uniform share 1 / C.
HEAD_SHARE = 1.5
TAIL_SHARE = 0.15


def pixel_splits(counts: Sequence[float],
                 total: Optional[float] = None,
                 head_share: float = HEAD_SHARE,
                 tail_share: float = TAIL_SHARE) -> Dict[str, List[int]]:
    """Head/body/tail classes from pixel counts (DisAlign Table 16 rule).

    ``r_c = n_c / total``; head: ``r_c > head_share / C``, tail:
    ``r_c <= tail_share / C``, body in between (``lt_mm.core.stats.
    ratio_splits``). With C = 150 the defaults are DisAlign's 1 % and
    0.1 %; for other C they keep the same relation to the uniform share
    ``1 / C`` (the paper's absolute thresholds would put every class of a
    10-class dataset into *head*).

    ``total`` defaults to the *labelled* pixels, ``sum(counts)``: the
    paper's ratios are fractions of all pixels, unlabelled ones included
    (ADE20K: 7 % unlabelled), but on data sets where most pixels are
    unlabelled ("other" / ignore) such ratios say little about the balance
    between the classes. For ADE20K itself lt_mm uses the paper's own
    labels (``ade20k_class_stats().splits``).

    Args:
        counts: pixels per class, shape (C,).
        total: denominator; default ``sum(counts)``.
        head_share, tail_share: thresholds as multiples of ``1 / C``.

    Returns:
        dict: ``{'head': [...], 'body': [...], 'tail': [...]}``.
    """
    n = as_counts(counts, allow_zero=True)
    c = n.numel()
    head_share = check_range('head_share', head_share, 0.0, c)
    tail_share = check_range(
        'tail_share',
        tail_share,
        0.0,
        head_share,
        hint='tail_share must not exceed head_share.')
    return ratio_splits(
        n, head_thr=head_share / c, tail_thr=tail_share / c, total=total)


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
