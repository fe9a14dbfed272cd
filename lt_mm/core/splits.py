"""Rules that group classes by their training counts.

* :func:`shot_splits` -- many / medium / few shot (Liu et al., CVPR 2019,
  the ImageNet-LT protocol);
* :func:`ratio_splits` -- head / body / tail by share of all pixels
  (DisAlign, Zhang et al., CVPR 2021, Table 16);
* :func:`pixel_splits` -- the same with DisAlign's thresholds rescaled to C
  classes (share of the labelled pixels);
* :func:`lvis_splits` -- rare / common / frequent (Gupta et al., CVPR 2019);
* :func:`compute_splits` -- one of the above by name, on counts or on a
  :class:`~lt_mm.core.stats_io.ClassStats`.

Every rule returns ``{group name: [class indices in increasing order]}``.
Framework-free (no OpenMMLab import).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Union

from .checks import CountsLike, as_counts, check_choice, check_range
from .stats_io import ClassStats


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


SPLIT_RULES = ('shot', 'ratio', 'pixel', 'lvis')


def compute_splits(stats_or_counts: Union[ClassStats, CountsLike],
                   rule: str = 'shot',
                   **thr: Any) -> Dict[str, List[int]]:
    """Compute class splits with one of the rules above.

    Args:
        stats_or_counts: a :class:`ClassStats` or counts of shape (C,).
        rule: ``'shot'`` (:func:`shot_splits`), ``'ratio'``
            (:func:`ratio_splits`), ``'pixel'`` (:func:`pixel_splits`) or
            ``'lvis'`` (:func:`lvis_splits`).
        **thr: thresholds of the chosen rule (``many_thr``, ``few_thr``;
            ``head_thr``, ``tail_thr``, ``total``; ``head_share``,
            ``tail_share``, ``total``; ``rare_max``, ``common_max``).

    With a :class:`ClassStats`, ``'ratio'`` uses ``extra['total']`` when
    present, ``'pixel'`` uses pixel counts (``unit='pixels'`` or
    ``extra['pixel_counts']``), ``'lvis'`` uses image counts
    (``unit='images'`` or ``extra['image_counts']``) or else
    ``extra['frequency']``, and ``'shot'``/``'lvis'`` refuse pixel counts.

    Returns:
        dict: group name -> class indices.
    """
    check_choice('rule', rule, SPLIT_RULES)
    if not isinstance(stats_or_counts, ClassStats):
        if rule == 'lvis':
            return lvis_splits(image_counts=stats_or_counts, **thr)
        fn = dict(
            shot=shot_splits, ratio=ratio_splits, pixel=pixel_splits)[rule]
        return fn(stats_or_counts, **thr)
    st = stats_or_counts
    if rule == 'ratio':
        if 'total' not in thr and st.extra.get('total') is not None:
            thr['total'] = st.extra['total']
        return ratio_splits(st.counts, **thr)
    if rule == 'pixel':
        pixels = (
            st.counts if st.unit == 'pixels' else st.extra.get('pixel_counts'))
        if pixels is None:
            raise ValueError(
                f"rule='pixel' needs pixel counts but the counts are in "
                f"{st.unit!r} and extra has no 'pixel_counts'.")
        return pixel_splits(pixels, **thr)
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
