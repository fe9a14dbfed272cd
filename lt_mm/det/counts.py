"""Per-class training counts for the detection adapter (LVIS).

Every count-based method of lt_mm needs ``n_j``, the number of training
samples of each foreground class: DisAlign's generalized re-weighting
(Zhang et al., CVPR 2021, Eq. 11) and the class-dependent temperatures of
CDT (Ye et al., Eq. 3). LVIS (Gupta et al., CVPR 2019) ships them in its
annotation json: every entry of ``categories`` carries ``image_count``
(training images containing the class, the quantity that defines the
rare / common / frequent bins) and ``instance_count`` (training instances).

:func:`lvis_class_stats` turns those fields into a
``lt_mm.class_stats/v1`` :class:`~lt_mm.core.stats.ClassStats`, cached next
to the json (``<stem>_class_stats_<unit>.json``) because the LVIS v1 train
json is over 1 GB. :func:`resolve_det_counts` adds this source
(``train_ann_file``) to :func:`lt_mm.core.stats.resolve_counts`, so losses
can be configured with ``counts=[...]``, ``stats_file=PATH`` or
``train_ann_file=PATH``. Counts always cover the C foreground classes only
(mmdet's background column is not a class of the dataset).

Command line (writes the statistics file used by the paper configs)::

    python tools/lvis_counts.py \
        data/lvis_v1/annotations/lvis_v1_train.json --unit images

(default output: ``lvis_v1_train_class_stats_images.json`` next to the json,
the ``stats_file`` of the paper configs).
"""
from __future__ import annotations

import argparse
import json
import os.path as osp
from typing import Any, List, Optional, Sequence, Union

import numpy as np

from lt_mm.core.stats import ClassStats, cached_class_stats, check_one_source
from lt_mm.core.stats import default_cache_file as _default_cache_file
from lt_mm.core.stats import lvis_splits, resolve_counts
from lt_mm.engine.counts import without_pipelines

#: LVIS category field per ``lt_mm.class_stats/v1`` unit.
LVIS_COUNT_FIELDS = {'images': 'image_count', 'instances': 'instance_count'}


def default_cache_file(ann_file: str, unit: str) -> str:
    """``<dir>/<json stem>_class_stats_<unit>.json`` next to ``ann_file``
    (:func:`lt_mm.core.stats.default_cache_file`)."""
    return _default_cache_file(ann_file, unit)


def _counts_from_annotations(doc: dict, cat_ids: Sequence[int],
                             unit: str) -> List[int]:
    """Count images / instances per category from ``annotations`` (for
    COCO-style files whose categories lack the LVIS count fields)."""
    index = {c: i for i, c in enumerate(cat_ids)}
    counts = [0] * len(cat_ids)
    seen = set()
    for ann in doc.get('annotations', []):
        k = index.get(ann.get('category_id'))
        if k is None:
            continue
        if unit == 'instances':
            counts[k] += 1
        elif (ann.get('image_id'), k) not in seen:
            seen.add((ann.get('image_id'), k))
            counts[k] += 1
    return counts


def lvis_class_stats(ann_file: str,
                     unit: str = 'images',
                     cache_file: Union[str, bool, None] = None) -> ClassStats:
    """Class statistics of an LVIS (or COCO-format) training json.

    The C categories are in the order of the json's ``categories`` list,
    which is the label order of mmdet's ``LVISV05Dataset`` /
    ``LVISV1Dataset`` (``cat_ids = lvis.LVIS.get_cat_ids()``, the keys of a
    dict filled in file order) and ``CocoDataset`` (``COCO.get_cat_ids``
    walks ``dataset['categories']`` in file order): label ``j`` is the
    ``j``-th category of the file, whatever the ids (a json whose
    categories are not sorted by id keeps its own order; the ids are in
    ``extra['category_ids']``). ``counts[j]`` is the category's
    ``image_count`` (``unit='images'``) or ``instance_count``
    (``unit='instances'``) when present (LVIS), otherwise they are counted
    from ``annotations``. ``splits`` are LVIS' ``rare`` / ``common`` /
    ``frequent`` groups from the ``frequency`` letters (or, without them,
    from the image counts with the LVIS thresholds 10 / 100).

    Args:
        ann_file: the *training* annotation json.
        unit: ``'images'`` or ``'instances'``.
        cache_file: cache path; ``None`` = :func:`default_cache_file`,
            ``False`` = no cache (``''``: deprecated alias). lt_mm's one
            counts cache (:func:`lt_mm.core.stats.cached_class_stats`):
            reused while the json's content (SHA-1) is unchanged.

    Returns:
        ClassStats: counts (C,), names, splits, ``extra['frequency']`` and
        ``extra['category_ids']``.
    """
    if unit not in LVIS_COUNT_FIELDS:
        raise ValueError(f'unit={unit!r} is not supported for detection '
                         f'counts; choose one of {list(LVIS_COUNT_FIELDS)}.')
    if not osp.isfile(ann_file):
        raise FileNotFoundError(
            f'annotation file {ann_file!r} does not exist; expected the '
            'LVIS (or COCO-format) training json, e.g. '
            'data/lvis_v1/annotations/lvis_v1_train.json.')
    return cached_class_stats(
        ann_file,
        # order='file': caches of the id-sorted reader are not reused
        dict(reader='det.json', unit=unit, order='file'),
        lambda: _read_json_stats(ann_file, unit),
        cache_file,
        default=default_cache_file(ann_file, unit))


def _read_json_stats(ann_file: str, unit: str) -> ClassStats:
    """Read the json (no cache): see :func:`lvis_class_stats`."""
    with open(ann_file, encoding='utf-8') as f:
        doc = json.load(f)
    # file order = mmdet's label order (not sorted by id, see above)
    cats = list(doc.get('categories') or [])
    if not cats:
        raise ValueError(f'{ann_file} has no categories; expected an LVIS '
                         'or COCO-format annotation json.')
    field = LVIS_COUNT_FIELDS[unit]
    cat_ids = [int(c['id']) for c in cats]
    if all(field in c for c in cats):
        counts = [int(c[field]) for c in cats]
    else:
        counts = _counts_from_annotations(doc, cat_ids, unit)
    freq = [c.get('frequency') for c in cats]
    if all(f in ('r', 'c', 'f') for f in freq):
        splits = lvis_splits(frequency=freq)
    elif unit == 'images':
        splits = lvis_splits(image_counts=counts)
    else:
        splits = {}
    stats = ClassStats(
        counts=counts,
        unit=unit,
        names=[str(c.get('name', c['id'])) for c in cats],
        splits=splits,
        dataset=osp.basename(ann_file),
        extra=dict(
            source=osp.abspath(ann_file),
            category_ids=cat_ids,
            frequency=freq if all(f is not None for f in freq) else None))
    return stats


#: ``source`` values of :func:`read_det_counts`.
DET_SOURCES = ('json', 'dataset')


def _ann_path(dataset: dict) -> str:
    ann = dataset.get('ann_file') or ''
    root = dataset.get('data_root') or ''
    return ann if not ann or osp.isabs(ann) or not root else osp.join(
        root, ann)


def build_det_dataset(dataset: dict) -> Any:
    """Build an mmdet dataset config without its pipeline (only the
    annotations are read)."""
    from lt_mm.engine.counts import build_without_pipeline
    return build_without_pipeline(dataset, 'mmdet')


def _check_class_order(ds: Any, classes: Sequence[str],
                       cat_ids: Sequence[int]) -> None:
    """Refuse ``metainfo`` classes listed in another order than the json's
    categories.

    mmdet's ``CocoDataset`` numbers its labels in the order of the json's
    categories (``COCO.get_cat_ids(cat_names=...)`` keeps the file order,
    as its comment says), whatever the order of ``metainfo['classes']``,
    while everything that names a label (the class statistics, the
    visualizer, a per-class table) takes ``classes[i]``: label ``i`` would
    carry another class's name. Checked when the classes are the config's
    own (a dataset's built-in ``METAINFO`` follows its json) and the json
    is a local file; names that are not a reordering of the categories
    (LVIS numbers all its categories, whatever the names) are left alone.

    Raises:
        ValueError: naming the first mislabelled label and the classes in
            the json's order.
    """
    ann = getattr(ds, 'ann_file', None)
    builtin = (getattr(type(ds), 'METAINFO', None) or {}).get('classes')
    if (builtin is not None and tuple(classes) == tuple(
            str(n) for n in builtin)) or not ann or not osp.isfile(ann):
        return
    with open(ann, encoding='utf-8') as f:
        cats = json.load(f).get('categories') or []
    names = {cat.get('id'): str(cat.get('name')) for cat in cats}
    in_file = [names.get(i) for i in cat_ids]
    if in_file == list(classes) or sorted(map(str,
                                              in_file)) != sorted(classes):
        return
    i = next(k for k, (a, b) in enumerate(zip(in_file, classes)) if a != b)
    raise ValueError(
        f'{type(ds).__name__}: metainfo classes are not in the order of the '
        f'categories of {ann}: mmdet numbers labels in the file\'s order, '
        f'so label {i} is {in_file[i]!r} but would be named {classes[i]!r}. '
        f'List the classes in the file\'s order: classes={tuple(in_file)!r}.')


def _count_data_list(ds: Any, progress: bool) -> dict:
    """Instances / images per class of a built mmdet dataset's
    ``data_list`` (``ignore_flag`` instances skipped)."""
    meta = getattr(ds, 'metainfo', None) or {}
    classes = meta.get('classes') or getattr(ds, 'CLASSES', None)
    if not classes:
        raise ValueError(
            f'{type(ds).__name__} has no classes in its metainfo; set '
            'metainfo=dict(classes=(...)) in the dataset config.')
    classes = [str(c) for c in classes]
    c = len(classes)
    if hasattr(ds, 'full_init'):
        ds.full_init()
    cat_ids = getattr(ds, 'cat_ids', None)
    if cat_ids is not None and len(cat_ids) != c:
        raise ValueError(
            f'the annotation file has {len(cat_ids)} categories but the '
            f'dataset metainfo lists {c} classes; set metainfo=dict('
            'classes=(...)) to the categories of the annotation file.')
    if cat_ids is not None:
        _check_class_order(ds, classes, cat_ids)
    instances = np.zeros(c, np.int64)
    images = np.zeros(c, np.int64)
    bar = None
    if progress and len(ds):
        from mmengine.utils import ProgressBar
        bar = ProgressBar(len(ds))
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        labels = [
            int(inst['bbox_label']) for inst in info.get('instances', [])
            if not inst.get('ignore_flag', 0)
        ]
        bad = [v for v in labels if not 0 <= v < c]
        if bad:
            raise ValueError(f'image {info.get("img_path")} has labels '
                             f'{bad} outside [0, {c}).')
        if labels:
            hist = np.bincount(labels, minlength=c)
            instances += hist
            images += hist > 0
        if bar is not None:
            bar.update()
    if bar is not None:
        print()
    return dict(
        classes=classes,
        instances=instances.tolist(),
        images=images.tolist(),
        num_images=len(ds))


def class_stats_from_dataset(dataset: dict,
                             unit: str = 'images',
                             cache_file: Union[str, bool, None] = None,
                             progress: bool = False) -> ClassStats:
    """Class statistics of an mmdet dataset config, as mmdet loads it.

    The dataset is built without its pipeline; ``n_j`` counts the
    instances of its ``data_list`` (or the images holding the class),
    which honours everything mmdet applies when it parses the
    annotations: the dataset's ``metainfo`` classes (a subset of the
    categories), ``filter_cfg``, the boxes mmdet drops, and ``iscrowd``
    instances (``ignore_flag``, not counted). Cached like
    :func:`lvis_class_stats` (keyed by the json and the dataset config)
    when the config names an existing ``ann_file``.

    Args:
        dataset: an mmdet dataset config dict.
        unit: ``'images'`` or ``'instances'``.
        cache_file: see :func:`lt_mm.core.stats.cached_class_stats`.
        progress: show a progress bar.

    Returns:
        ClassStats: C counts in ``unit``, the dataset's class names, LVIS
        splits from the image counts (``lt_mm.core.stats.lvis_splits``),
        ``extra`` ``instance_counts``, ``image_counts``, ``num_images``.

    Raises:
        ValueError: the json has another number of categories than the
            dataset's classes; a label outside ``[0, C)``.
    """
    if unit not in LVIS_COUNT_FIELDS:
        raise ValueError(f'unit={unit!r} is not supported for detection '
                         f'counts; choose one of {list(LVIS_COUNT_FIELDS)}.')
    cfg = without_pipelines(dataset)
    ann = _ann_path(cfg)

    def compute() -> ClassStats:
        ds = build_det_dataset(cfg)
        res = _count_data_list(ds, progress)
        return ClassStats(
            counts=res[unit],
            unit=unit,
            names=res['classes'],
            splits=lvis_splits(image_counts=res['images']),
            dataset=osp.basename(ann) if ann else None,
            extra=dict(
                source=osp.abspath(ann) if ann else None,
                dataset_type=type(ds).__name__,
                num_images=res['num_images'],
                instance_counts=res['instances'],
                image_counts=res['images']))

    if cache_file is False or not ann or not osp.isfile(ann):
        if cache_file not in (None, False):
            raise ValueError(
                f'cache_file={cache_file!r}: the dataset has no annotation '
                'file to key the cache on; use cache_file=None or False.')
        return compute()
    params = dict(
        reader='det.dataset',
        unit=unit,
        # caches written before the class-order check are recomputed
        classes='file order checked',
        config=json.dumps(cfg, sort_keys=True, default=str))
    return cached_class_stats(
        ann,
        params,
        compute,
        cache_file,
        default=default_cache_file(ann, unit))


def read_det_counts(dataset: Union[str, dict],
                    unit: Optional[str] = 'images',
                    num_classes: Optional[int] = None,
                    cache_file: Union[str, bool, None] = None,
                    source: str = 'json',
                    progress: bool = False) -> ClassStats:
    """The detection counts reader (``resolve_counts(dataset=...)``).

    Two ways to count the C foreground classes:

    * ``'json'`` (default, the counts pipeline): the annotation json
      itself (:func:`lvis_class_stats`: LVIS' ``image_count`` /
      ``instance_count`` fields, else counted from ``annotations``; every
      category of the file);
    * ``'dataset'``: the dataset as mmdet loads it
      (:func:`class_stats_from_dataset`: its ``metainfo`` classes, its
      filters, ``ignore_flag`` instances skipped), what
      ``tools/class_stats.py`` writes.

    Args:
        dataset: an LVIS / COCO-format training json, or a dataset config
            dict whose ``data_root`` + ``ann_file`` is one.
        unit: ``'images'`` or ``'instances'`` (None: images).
        num_classes: C foreground classes; other counts are rejected.
        cache_file: see :func:`lt_mm.core.stats.cached_class_stats`.
        source: ``'json'`` or ``'dataset'`` (needs a config dict).
        progress: progress bar (``'dataset'`` only).

    Returns:
        ClassStats: C foreground counts.
    """
    if source not in DET_SOURCES:
        raise ValueError(f'source={source!r}; choose one of {DET_SOURCES}.')
    is_cfg = isinstance(dataset, dict) or hasattr(dataset, 'to_dict')
    if source == 'dataset':
        if not is_cfg:
            raise ValueError(
                f"source='dataset' needs a dataset config dict, got "
                f"{dataset!r}; pass a json path with source='json'.")
        stats = class_stats_from_dataset(dataset, unit or 'images', cache_file,
                                         progress)
        path = _ann_path(without_pipelines(dataset)) or 'the dataset'
        what = 'classes'
    else:
        if isinstance(dataset, dict):
            if not dataset.get('ann_file'):
                raise ValueError(
                    f'{dataset.get("type")} without ann_file: lt_mm counts '
                    'detection datasets from their LVIS/COCO json; give '
                    'stats_file=PATH or counts=[...].')
            path = _ann_path(dataset)
        else:
            path = str(dataset)
        stats = lvis_class_stats(path, unit or 'images', cache_file)
        what = 'categories'
    if num_classes is not None and stats.num_classes != num_classes:
        raise ValueError(
            f'{path} has {stats.num_classes} {what} but the box head '
            f'has num_classes={num_classes}; use the training json of the '
            'dataset the model is built for.')
    return stats


def resolve_det_counts(counts=None,
                       stats_file: Optional[str] = None,
                       train_ann_file: Optional[str] = None,
                       num_classes: Optional[int] = None,
                       unit: str = 'images',
                       what: str = 'this method') -> List[float]:
    """Foreground class counts ``n_j`` from exactly one source.

    Wraps :func:`lt_mm.core.stats.resolve_counts` and adds
    ``train_ann_file`` (:func:`lvis_class_stats`). The result has exactly
    ``num_classes`` entries: a file of another vocabulary (e.g. LVIS v0.5's
    1230 classes for a 1203-class v1 model) or counts that include the
    background (``num_classes + 1`` entries) are rejected with a
    ``ValueError``.

    Args:
        counts: explicit counts (C,).
        stats_file: a ``lt_mm.class_stats/v1`` JSON file.
        train_ann_file: the LVIS / COCO-format training json.
        num_classes: required C (foreground classes of the box head).
        unit: ``'images'`` or ``'instances'``; checked for ``stats_file``.
        what: the component named in error messages.

    Returns:
        list[float]: C counts, all > 0.
    """
    check_one_source(
        what, 'counts=[...] (the foreground classes), stats_file=PATH (a '
        'lt_mm.class_stats/v1 JSON file, e.g. written by python -m '
        'lt_mm.det.counts TRAIN_JSON --out PATH) or train_ann_file=PATH '
        '(the LVIS training json)',
        counts=counts,
        stats_file=stats_file,
        train_ann_file=train_ann_file)
    if unit not in LVIS_COUNT_FIELDS:
        raise ValueError(f'{what}: unit={unit!r} is not supported; choose '
                         f'one of {list(LVIS_COUNT_FIELDS)}.')
    try:
        return resolve_counts(
            counts,
            stats_file,
            num_classes,
            unit=unit if counts is None else None,
            dataset=train_ann_file,
            reader=read_det_counts)
    except ValueError as e:
        raise ValueError(f'{what}: {e}') from None


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Write the class statistics of an LVIS training json."""
    parser = argparse.ArgumentParser(
        description='Per-class training counts of an LVIS json '
        '(lt_mm.class_stats/v1).')
    parser.add_argument('ann_file', help='LVIS training json')
    parser.add_argument(
        '--unit', choices=list(LVIS_COUNT_FIELDS), default='images')
    parser.add_argument(
        '--out', help='output path (default: next to the json)')
    args = parser.parse_args(argv)
    out = args.out or default_cache_file(args.ann_file, args.unit)
    stats = lvis_class_stats(args.ann_file, args.unit, cache_file=False)
    stats.save(out)
    print(f'{stats.num_classes} classes ({args.unit}) -> {out}')


if __name__ == '__main__':
    main()
