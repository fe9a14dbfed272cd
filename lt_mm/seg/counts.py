"""Per-class training counts for the segmentation adapter (label maps).

The count-based methods on segmentation (DisAlign's generalized
re-weighting with pixel frequencies, Zhang et al. CVPR 2021, Eq. 11 and
appendix B.2; CDT, Ye et al. Eq. 3) need ``n_j`` = the number of training
pixels of class j. :func:`read_seg_counts` is the segmentation *reader* of
lt_mm's one counts pipeline (:func:`lt_mm.core.stats.resolve_counts` with
``dataset=``; :mod:`lt_mm.engine.counts` for the config default): it lists
the label maps of a dataset config exactly as mmseg does (the dataset is
built without its pipeline) and counts them with
:func:`lt_mm.seg.datasets.count_seg_pixels` -- the same label-map decoder
as ``LoadAnnotations`` (``reduce_zero_label``, ``label_map``,
``ignore_index`` not counted), also used by ``tools/class_stats.py``. The
result goes through the one counts cache
(:func:`lt_mm.core.stats.cached_class_stats`, keyed by the SHA-1 of the
label maps' content), by default ``<label folder>_class_stats_<unit>.json``
beside the label folder.
"""
from __future__ import annotations

import os.path as osp
from typing import Any, Dict, List, Optional, Union

from lt_mm.core.stats import ClassStats, cached_class_stats, default_cache_file

__all__ = ['read_seg_counts', 'build_seg_dataset', 'seg_infos']


def build_seg_dataset(dataset: Union[dict, Any]) -> Any:
    """Build an mmseg dataset config without its pipeline (a built dataset
    is returned unchanged)."""
    from lt_mm.engine.counts import build_without_pipeline
    return build_without_pipeline(dataset, 'mmseg')


def seg_infos(ds: Any) -> List[dict]:
    """The data infos (``seg_map_path``, ``reduce_zero_label``,
    ``label_map``) of a built mmseg dataset."""
    if hasattr(ds, 'full_init'):
        ds.full_init()
    return [ds.get_data_info(i) for i in range(len(ds))]


def read_seg_counts(dataset: Union[dict, Any],
                    unit: Optional[str] = 'pixels',
                    num_classes: Optional[int] = None,
                    cache_file: Union[str, bool, None] = None,
                    progress: bool = False) -> ClassStats:
    """The segmentation counts reader (``resolve_counts(dataset=...)``).

    Args:
        dataset: an mmseg dataset config dict (or a built dataset).
        unit: ``'pixels'`` (class pixels, DisAlign's frequencies) or
            ``'images'`` (label maps containing the class); None = pixels.
        num_classes: C; default = the dataset's classes.
        cache_file: see :func:`lt_mm.core.stats.cached_class_stats`.
        progress: show a progress bar while decoding.

    Returns:
        ClassStats: C counts in ``unit``, the class names and, in
        ``extra``, ``pixel_counts``, ``image_counts``, ``ignored_pixels``,
        ``total`` (pixels incl. ignored ones; only with ``'pixels'``) and
        ``num_images``.
    """
    from .datasets import count_seg_pixels
    unit = unit or 'pixels'
    if unit not in ('pixels', 'images'):
        raise ValueError(f'unit={unit!r} is not available for segmentation '
                         "counts; choose 'pixels' or 'images'.")
    ds = build_seg_dataset(dataset)
    classes = [str(c) for c in (ds.metainfo.get('classes') or ())]
    c = int(num_classes) if num_classes is not None else len(classes)
    if not c:
        raise ValueError(f'{type(ds).__name__} has no classes; set '
                         'metainfo=dict(classes=(...)) or num_classes.')
    infos = seg_infos(ds)
    if not infos:
        raise ValueError(f'{type(ds).__name__} lists no label maps (check '
                         'data_root and data_prefix.seg_map_path).')
    paths = [info['seg_map_path'] for info in infos]
    ignore_index = int(getattr(ds, 'ignore_index', 255))
    backend_args = getattr(ds, 'backend_args', None)
    params: Dict[str, Any] = dict(
        reader='seg.label_maps',
        unit=unit,
        num_classes=c,
        ignore_index=ignore_index,
        settings=[[
            bool(i.get('reduce_zero_label', False)),
            sorted((int(k), int(v))
                   for k, v in (i.get('label_map') or {}).items())
        ] for i in infos])

    def compute() -> ClassStats:
        res = count_seg_pixels(infos, c, ignore_index, backend_args, progress)
        extra = dict(
            source=osp.abspath(osp.dirname(paths[0])),
            num_images=int(res['num_images']),
            ignored_pixels=int(res['ignored']),
            pixel_counts=[int(v) for v in res['pixels']],
            image_counts=[int(v) for v in res['images']])
        if unit == 'pixels':
            extra['total'] = int(res['total'])
        return ClassStats(
            counts=[int(v) for v in res[unit]],
            unit=unit,
            names=classes if len(classes) == c else None,
            extra=extra)

    return cached_class_stats(
        paths,
        params,
        compute,
        cache_file,
        default=default_cache_file(osp.dirname(paths[0]), unit))
