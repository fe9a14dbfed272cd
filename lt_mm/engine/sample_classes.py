"""The classes present in each sample of a dataset (any toolbox).

The class re-balancing samplers of :mod:`lt_mm.engine.samplers`
(Decoupling, Kang et al., ICLR 2020, Eq. 1-2) group the samples by class;
this module finds those classes once per dataset:

- :func:`get_sample_classes`: mmpretrain / mmdet datasets through
  ``get_cat_ids`` (the image label; the classes of the instances), mmseg
  datasets through their label maps, mmengine's wrappers recursively;
- :func:`seg_sample_classes` / :func:`read_seg_classes`: the label-map
  part (also used by :mod:`lt_mm.seg.datasets` to check label values),
  decoded as mmseg's ``LoadAnnotations`` does, with an optional JSON cache.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from mmengine.fileio import get as file_get
from mmengine.logging import print_log
from PIL import Image

from .file_stamp import file_stamp

__all__ = ['get_sample_classes', 'seg_sample_classes', 'read_seg_classes']

_CACHE_FORMAT = 'lt_mm.sample_classes/v1'


# ---------------------------------------------------------------------------
# Classes of each sample
# ---------------------------------------------------------------------------
def _has_cat_ids(dataset: Any) -> bool:
    """Whether ``dataset.get_cat_ids`` exists and is implemented.

    Raises:
        ValueError: it exists but the data infos lack the label key it
            reads (a ``KeyError``, e.g. mmpretrain's ``with_label=False``).
    """
    fn = getattr(dataset, 'get_cat_ids', None)
    if not callable(fn):
        return False
    try:
        fn(0)
    except NotImplementedError:  # mmengine BaseDataset's default
        return False
    except KeyError as exc:
        raise _no_label_error(dataset, 0, exc) from None
    return True


def _describe(dataset: Any) -> str:
    """The dataset's type and, when known, its data root / annotation."""
    parts = []
    for attr in ('data_root', 'ann_file'):
        value = getattr(dataset, attr, None)
        if value:
            parts.append(f'{attr}={value!r}')
    name = type(dataset).__name__
    return f'{name}({", ".join(parts)})' if parts else name


def _no_label_error(dataset: Any, idx: int, exc: KeyError) -> ValueError:
    key = exc.args[0] if exc.args else None
    return ValueError(
        f'cannot determine the classes of each sample of '
        f'{_describe(dataset)}: its get_cat_ids({idx}) failed because the '
        f'data info of sample {idx} has no {key!r} key (a dataset without '
        'labels, e.g. mmpretrain with_label=False or an annotation file '
        'without labels?). Give the dataset labels, or pass '
        'sample_classes=[[class indices of sample 0], ...] to the sampler.')


def _data_info(dataset: Any, idx: int) -> Optional[dict]:
    if callable(getattr(dataset, 'get_data_info', None)):
        return dataset.get_data_info(idx)
    data_list = getattr(dataset, 'data_list', None)
    if data_list:
        return data_list[idx]
    return None


def _seg_settings(dataset: Any, info: dict) -> tuple:
    """``(reduce_zero_label, label_map)`` as mmseg's LoadAnnotations sees."""
    rzl = info.get('reduce_zero_label',
                   getattr(dataset, 'reduce_zero_label', False))
    label_map = info.get('label_map', getattr(dataset, 'label_map', None))
    return bool(rzl), (dict(label_map) if label_map else None)


def read_seg_classes(path: str,
                     reduce_zero_label: bool,
                     label_map: Optional[Dict[int, int]],
                     ignore_index: int,
                     backend_args: Optional[dict] = None) -> List[int]:
    """Classes present in one label map, as mmseg's training pipeline sees.

    Mirrors mmseg 1.x ``LoadAnnotations``: the map is decoded unchanged and
    cast to uint8; ``reduce_zero_label`` turns 0 into 255 and shifts the
    rest down by one (255 stays 255); then ``label_map`` old -> new is
    applied. ``ignore_index`` is dropped.
    """
    data = file_get(path, backend_args=backend_args)
    with Image.open(io.BytesIO(data)) as img:
        arr = np.array(img)
    arr = arr.squeeze()
    if arr.ndim != 2:
        raise ValueError(
            f'label map {path!r} has shape {arr.shape}; expected a single-'
            'channel (H, W) map of class indices.')
    arr = arr.astype(np.uint8)
    values = np.unique(arr)
    if reduce_zero_label:
        values = np.where(values == 0, 255, values - 1).astype(np.int64)
        values[values == 254] = 255
        values = np.unique(values)
    if label_map:
        mapped = values.copy()
        for old, new in label_map.items():
            mapped[values == int(old)] = int(new)
        values = np.unique(mapped)
    return sorted(int(v) for v in values if v != ignore_index)


def _seg_fingerprint(paths: Sequence[str], rzl: Sequence[bool],
                     label_maps: Sequence[Any]) -> str:
    """Paths, settings and, for local files, size and modification time:
    a label map rewritten under the same name (a regenerated data set)
    invalidates the cache."""
    h = hashlib.sha1()
    for p, r, m in zip(paths, rzl, label_maps):
        h.update(f'{p}|{file_stamp(p)}|{int(r)}|'
                 f'{sorted(m.items()) if m else None}\n'.encode())
    return h.hexdigest()


def _resolve_cache_file(dataset: Any, cache_file: str) -> str:
    cache_file = os.fspath(cache_file)
    data_root = getattr(dataset, 'data_root', None)
    if not osp.isabs(cache_file) and data_root:
        cache_file = osp.join(data_root, cache_file)
    return cache_file


def seg_sample_classes(dataset: Any, n: int, cache_file: Optional[str],
                       ignore_index: int) -> List[List[int]]:
    """The classes of the first ``n`` label maps of an mmseg dataset.

    Each map is read once (:func:`read_seg_classes`, as mmseg's
    ``LoadAnnotations`` sees it); with ``cache_file`` (relative paths are
    taken relative to ``dataset.data_root``) the result is stored as JSON
    (format ``lt_mm.sample_classes/v1``) and reused while the label-map
    paths (and, for local files, their sizes and modification times),
    ``reduce_zero_label`` / ``label_map`` settings and ``ignore_index`` are
    unchanged.

    Args:
        dataset: a built mmseg dataset (data infos with
            ``'seg_map_path'``).
        n: number of samples (``len(dataset)``).
        cache_file: optional JSON cache path.
        ignore_index: label value that is not a class.

    Returns:
        list[list[int]]: ``n`` sorted lists of class indices.
    """
    infos = [_data_info(dataset, i) for i in range(n)]
    paths = [info['seg_map_path'] for info in infos]
    settings = [_seg_settings(dataset, info) for info in infos]
    fingerprint = _seg_fingerprint(paths, [s[0] for s in settings],
                                   [s[1] for s in settings])
    if cache_file is not None:
        cache_file = _resolve_cache_file(dataset, cache_file)
        if osp.isfile(cache_file):
            try:
                with open(cache_file, encoding='utf-8') as f:
                    cached = json.load(f)
            except (OSError, json.JSONDecodeError):
                cached = None
            if (isinstance(cached, dict)
                    and cached.get('format') == _CACHE_FORMAT
                    and cached.get('fingerprint') == fingerprint
                    and cached.get('ignore_index') == ignore_index
                    and len(cached.get('classes', [])) == n):
                return [list(map(int, c)) for c in cached['classes']]
            print_log(
                f'lt_mm: {cache_file} does not match the dataset (other '
                'label maps or settings); recomputing it.',
                logger='current')
    backend_args = getattr(dataset, 'backend_args', None)
    print_log(
        f'lt_mm: reading {n} label maps once to find the classes of each '
        'sample' + (f' (cached to {cache_file})' if cache_file else ''),
        logger='current')
    classes = [
        read_seg_classes(p, s[0], s[1], ignore_index, backend_args)
        for p, s in zip(paths, settings)
    ]
    if cache_file is not None:
        os.makedirs(osp.dirname(osp.abspath(cache_file)), exist_ok=True)
        tmp = f'{cache_file}.tmp{os.getpid()}'
        with open(tmp, 'w', encoding='utf-8') as f:
            json.dump(
                dict(
                    format=_CACHE_FORMAT,
                    num_samples=n,
                    ignore_index=ignore_index,
                    fingerprint=fingerprint,
                    classes=classes), f)
        os.replace(tmp, cache_file)  # atomic: safe with several ranks
    return classes


def _dataset_ignore_index(dataset: Any) -> int:
    """``dataset.ignore_index`` (mmseg), looked up through mmengine's
    wrappers (``.dataset`` / ``.datasets[0]``); 255 (mmseg's default) when
    no dataset defines one."""
    seen = 0
    while dataset is not None and seen < 16:
        value = getattr(dataset, 'ignore_index', None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        inner = getattr(dataset, 'dataset', None)
        if inner is None:
            subs = getattr(dataset, 'datasets', None)
            inner = subs[0] if subs else None
        dataset, seen = inner, seen + 1
    return 255


def get_sample_classes(dataset: Any,
                       cache_file: Optional[str] = None,
                       ignore_index: Optional[int] = None) -> List[List[int]]:
    """The classes present in each sample of ``dataset``.

    Resolution order:

    1. ``dataset.get_cat_ids(idx)`` when implemented: mmpretrain datasets
       (the image label), mmdet datasets (the classes of the image's
       instances), mmengine's ``ClassBalancedDataset``.
    2. Segmentation (mmseg): data infos with ``'seg_map_path'``; each label
       map is read once (PIL + numpy) with the dataset's
       ``reduce_zero_label`` and ``label_map`` applied as mmseg's
       ``LoadAnnotations`` does, ``ignore_index`` removed. With
       ``cache_file`` the result is stored as JSON (a relative path is taken
       relative to ``dataset.data_root``) and reused while the label-map
       paths and settings are unchanged.
    3. ``ConcatDataset`` / ``RepeatDataset`` without ``get_cat_ids``: the
       wrapped datasets, concatenated / repeated.

    Args:
        dataset: the training dataset.
        cache_file: optional JSON cache for label-map scanning.
        ignore_index: label value that is not a class; ``None`` (default)
            uses the dataset's ``ignore_index`` (mmseg's
            ``BaseSegDataset``, also through wrappers) or 255, the same
            value the class counts (:mod:`lt_mm.seg.counts`) use.

    Returns:
        list[list[int]]: ``len(dataset)`` sorted lists of class indices
        (possibly empty, e.g. an image without instances).

    Raises:
        ValueError: the classes cannot be found (no ``get_cat_ids`` and no
            label maps, or data infos without the label key that
            ``get_cat_ids`` reads): pass ``sample_classes=`` instead.
    """
    n = len(dataset)
    if n == 0:
        raise ValueError('the dataset is empty; nothing to sample.')
    if _has_cat_ids(dataset):
        out = []
        for i in range(n):
            try:
                cat_ids = dataset.get_cat_ids(i)
            except KeyError as exc:
                raise _no_label_error(dataset, i, exc) from None
            out.append(sorted({int(c) for c in cat_ids}))
        return out
    info = _data_info(dataset, 0)
    if isinstance(info, dict) and 'seg_map_path' in info:
        if ignore_index is None:
            ignore_index = _dataset_ignore_index(dataset)
        return seg_sample_classes(dataset, n, cache_file, ignore_index)
    subs = getattr(dataset, 'datasets', None)
    if subs:
        out: List[List[int]] = []
        for sub in subs:
            out.extend(get_sample_classes(sub, None, ignore_index))
        if len(out) == n:
            return out
    inner = getattr(dataset, 'dataset', None)
    times = getattr(dataset, 'times', None)
    if inner is not None and isinstance(times, int):
        out = get_sample_classes(inner, cache_file, ignore_index) * times
        if len(out) == n:
            return out
    raise ValueError(
        f'cannot determine the classes of each sample of '
        f'{_describe(dataset)}: it implements no get_cat_ids(idx) '
        '(mmpretrain / mmdet datasets) and its data infos have no '
        "'seg_map_path' (mmseg datasets). Pass sample_classes=[[class "
        'indices of sample 0], ...] to the sampler.')
