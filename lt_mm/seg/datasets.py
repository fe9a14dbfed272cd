"""ADE20K-layout datasets with any vocabulary, and per-class pixel counting.

* :class:`ADE20KLTDataset` -- mmseg's ``ADE20KDataset`` (``.jpg`` images,
  ``.png`` labels, ``reduce_zero_label=True``) that also accepts a class
  list that is *not* a subset of ADE20K's 150 classes (e.g. the quickstart's
  ``'digit 0'..'digit 9'``) and lists the classes present in each image
  (``get_cat_ids``, for mmengine's ``ClassBalancedDataset``).
* :func:`load_seg_label` / :func:`count_seg_pixels` -- read label PNGs
  exactly as mmseg's ``LoadAnnotations`` does and count pixels per class,
  the statistics of DisAlign's ADE20K head/body/tail split (Table 16) and
  of the GRW / CDT pixel losses.
"""
from __future__ import annotations

import os
import os.path as osp
from typing import Dict, List, Mapping, Optional, Sequence, Union

import mmcv
import numpy as np
from mmengine import fileio
from mmseg.datasets import ADE20KDataset
from mmseg.registry import DATASETS

#: The ADE20K folder layout, for error messages.
ADE20K_LAYOUT = (
    'Expected ADE20K layout (ADEChallengeData2016): <data_root>/images/'
    '{training,validation}/*.jpg and <data_root>/annotations/'
    '{training,validation}/*.png with the same names.')


@DATASETS.register_module()
class ADE20KLTDataset(ADE20KDataset):
    """ADE20K folder layout with ADE20K's or any other vocabulary.

    mmseg's ``ADE20KDataset`` only accepts ``metainfo=dict(classes=...)``
    when the classes are a subset of its 150 (it then remaps labels). Here a
    class list that is not such a subset defines a *new vocabulary*: label
    PNG value ``k`` is class ``k - 1`` of ``classes`` after
    ``reduce_zero_label`` (0 = "other" -> 255, ignored), no remapping; the
    palette is the first ``len(classes)`` ADE20K colours (or the given
    one). Subsets of ADE20K's classes behave exactly as in mmseg.

    Checked when the dataset is built (before any training iteration):

    * the image folder exists and holds at least one image (an empty or
      missing folder is named, with the expected ADE20K layout);
    * ``check_files``: every image of an ``ann_file`` list and every label
      map exists (all missing ones counted, the first few named);
    * ``check_labels``: one cheap scan of the label maps (PIL decode,
      ``np.unique``; cached as the class lists of
      :mod:`lt_mm.engine.samplers`, which then reuse them through
      :meth:`get_cat_ids`) verifies that every value, after
      ``reduce_zero_label`` and ``label_map``, is a class index in
      ``[0, C)`` or the ``ignore_index``; the error names the file and the
      value.

    Args:
        check_labels: scan the label maps at build time (default True).
        check_files: check that listed images and label maps exist.
        label_cache: JSON cache of the scan (format
            ``lt_mm.sample_classes/v1`` of :mod:`lt_mm.engine.samplers`):
            ``None`` = ``<label folder>.lt_mm_classes.json`` next to the
            label folder when that folder's parent is writable, ``False`` =
            no cache, or a path (relative to ``data_root``).
        **kwargs: as ``ADE20KDataset``.
    """

    def __init__(self,
                 *args,
                 check_labels: bool = True,
                 check_files: bool = True,
                 label_cache: Union[str, bool, None] = None,
                 **kwargs) -> None:
        for name, value in (('check_labels', check_labels), ('check_files',
                                                             check_files)):
            if not isinstance(value, bool):
                raise ValueError(f'{name}={value!r} must be True or False.')
        self.check_labels = check_labels
        self.check_files = check_files
        self.label_cache = label_cache
        super().__init__(*args, **kwargs)

    def load_data_list(self) -> List[dict]:
        """mmseg's folder/list reading, with clear errors for a missing or
        empty image folder and (``check_files``) missing files."""
        img_dir = self.data_prefix.get('img_path', None) or ''
        seg_dir = self.data_prefix.get('seg_map_path', None)
        listed = bool(self.ann_file) and not osp.isdir(self.ann_file)
        local = '://' not in img_dir and (self.backend_args or {}).get(
            'backend', 'local') in ('local', 'disk')
        if listed and local and not osp.isfile(self.ann_file):
            raise FileNotFoundError(
                f'ann_file {self.ann_file!r} does not exist; it lists the '
                'image names (one per line, without suffix). Give the '
                'right data_root / ann_file, or ann_file=\'\' to use every '
                f'{self.img_suffix} image of {img_dir!r}.')
        if not listed and local and not osp.isdir(img_dir):
            raise FileNotFoundError(
                f'image folder {img_dir!r} does not exist. {ADE20K_LAYOUT} '
                'Set data_root (and data_prefix) to it.')
        data_list = super().load_data_list()
        if not data_list:
            where = (f'ann_file {self.ann_file!r}'
                     if listed else f'image folder {img_dir!r}')
            raise ValueError(
                f'{where} holds no {self.img_suffix!r} image: the dataset '
                f'is empty. {ADE20K_LAYOUT}')
        if self.check_files and local:
            from lt_mm.cls.datasets import check_files_exist
            if listed:
                check_files_exist(
                    self.ann_file, [d['img_path'] for d in data_list],
                    what='images')
            if seg_dir is not None:
                check_files_exist(
                    seg_dir, [d['seg_map_path'] for d in data_list],
                    what=f'label maps (one {self.seg_map_suffix} per '
                    'image, same name)')
        return data_list

    def full_init(self) -> None:
        """Load the data list, then scan the label maps (``check_labels``)."""
        if self._fully_initialized:
            return
        super().full_init()
        if self.check_labels and len(self) and 'seg_map_path' in (
                self.get_data_info(0)):
            self._check_label_values()

    def _default_label_cache(self) -> Optional[str]:
        seg_dir = self.data_prefix.get('seg_map_path', None)
        if not seg_dir or '://' in seg_dir:
            return None
        seg_dir = osp.normpath(seg_dir)
        parent = osp.dirname(osp.abspath(seg_dir))
        if not os.access(parent, os.W_OK):
            return None
        return osp.abspath(seg_dir) + '.lt_mm_classes.json'

    def _check_label_values(self) -> None:
        """Every label value (after reduce_zero_label / label_map) must be a
        class index or the ignore index; raise naming the file and value."""
        from lt_mm.engine.sample_classes import seg_sample_classes
        cache = self.label_cache
        if cache is None:
            cache = self._default_label_cache()
        elif cache is False:
            cache = None
        n = len(self)
        num_classes = len(self._metainfo.get('classes') or ())
        classes = seg_sample_classes(self, n, cache, self.ignore_index)
        bad = _out_of_range(classes, num_classes)
        if bad and cache and osp.isfile(_resolve(self, cache)):
            # the cache may predate a fix of the label maps: drop it and
            # read the maps again before blaming them
            try:
                os.remove(_resolve(self, cache))
            except OSError:
                pass
            classes = seg_sample_classes(self, n, None, self.ignore_index)
            bad = _out_of_range(classes, num_classes)
        if bad:
            i, vals = bad[0]
            path = self.get_data_info(i)['seg_map_path']
            raw = ''
            if self.reduce_zero_label and not self.label_map:
                raw = (f' (PNG values {[v + 1 for v in vals]} before '
                       'reduce_zero_label)')
            others = (f'; {len(bad) - 1} more label maps have such values'
                      if len(bad) > 1 else '')
            raise ValueError(
                f'{path} has label values {vals}{raw} outside [0, '
                f'{num_classes}) that are not ignore_index='
                f'{self.ignore_index}{others}. The dataset has '
                f'{num_classes} classes (metainfo classes), '
                f'reduce_zero_label={self.reduce_zero_label} (ADE20K '
                'layout: PNG 0 = other, class k is PNG k + 1); fix the '
                'classes / reduce_zero_label or the label maps, or pass '
                'check_labels=False to skip this check.')
        cat_cache = self.__dict__.setdefault('_cat_ids_cache', {})
        for i, cls in enumerate(classes):
            cat_cache[i] = list(cls)

    @classmethod
    def get_label_map(
            cls,
            new_classes: Optional[Sequence] = None
    ) -> Optional[Dict[int, int]]:
        """mmseg's label map for subsets of ADE20K; None for a new
        vocabulary (labels are used as they are)."""
        if new_classes is not None and not set(new_classes).issubset(
                cls.METAINFO['classes']):
            return None
        return super().get_label_map(new_classes)

    def _update_palette(self) -> list:
        palette = self._metainfo.get('palette', [])
        classes = self._metainfo.get('classes', [])
        if self.label_map is None and len(palette) > len(classes):
            return list(palette[:len(classes)])
        return super()._update_palette()

    def get_cat_ids(self, idx: int) -> List[int]:
        """Classes present in image ``idx`` (reads its label PNG once).

        Used by mmengine's ``ClassBalancedDataset`` (repeat-factor
        sampling). Ignored pixels are not a class.
        """
        cache = self.__dict__.setdefault('_cat_ids_cache', {})
        if idx not in cache:
            info = self.get_data_info(idx)
            label = load_seg_label(info['seg_map_path'],
                                   info.get('reduce_zero_label', False),
                                   info.get('label_map'), self.backend_args)
            ids = np.unique(label)
            cache[idx] = [int(i) for i in ids if i != self.ignore_index]
        return list(cache[idx])


def _resolve(dataset, cache: str) -> str:
    root = getattr(dataset, 'data_root', None)
    if not osp.isabs(cache) and root:
        return osp.join(root, cache)
    return cache


def _out_of_range(classes: Sequence[Sequence[int]],
                  num_classes: int) -> List[tuple]:
    """``[(sample index, [bad values])]`` for classes outside [0, C)."""
    bad = [(i, [c for c in cls if not 0 <= c < num_classes])
           for i, cls in enumerate(classes)]
    return [(i, vals) for i, vals in bad if vals]


def load_seg_label(path: str,
                   reduce_zero_label: bool = False,
                   label_map: Optional[Mapping[int, int]] = None,
                   backend_args: Optional[dict] = None) -> np.ndarray:
    """Read a label PNG as mmseg's ``LoadAnnotations`` does.

    Decoding with Pillow (``flag='unchanged'``) to uint8, then
    ``reduce_zero_label`` (0 -> 255, k -> k - 1, 255 stays 255), then the
    dataset's ``label_map`` (old id -> new id), in this order.

    Args:
        path: label file (any mmengine file backend).
        reduce_zero_label: the dataset's setting.
        label_map: the dataset's label map (custom class subsets) or None.
        backend_args: mmengine file backend arguments.

    Returns:
        np.ndarray: (H, W) uint8 labels.
    """
    data = fileio.get(path, backend_args=backend_args)
    gt = mmcv.imfrombytes(
        data, flag='unchanged', backend='pillow').squeeze().astype(np.uint8)
    if reduce_zero_label:
        gt[gt == 0] = 255
        gt = gt - 1
        gt[gt == 254] = 255
    if label_map:
        orig = gt.copy()
        for old_id, new_id in label_map.items():
            gt[orig == old_id] = new_id
    return gt


def count_seg_pixels(data_list: Sequence[dict],
                     num_classes: int,
                     ignore_index: int = 255,
                     backend_args: Optional[dict] = None,
                     progress: bool = True) -> Dict[str, object]:
    """Count pixels and images per class over label maps (one pass).

    Args:
        data_list: mmseg data infos with ``seg_map_path`` and optionally
            ``reduce_zero_label`` / ``label_map`` (``dataset.data_list`` or
            ``[dataset.get_data_info(i) ...]``).
        num_classes: C; labels must lie in ``[0, C)`` or be
            ``ignore_index``.
        ignore_index: the ignore label (not counted as a class).
        backend_args: mmengine file backend arguments.
        progress: show an ``mmengine.utils.ProgressBar``.

    Returns:
        dict: ``pixels`` (C ints), ``images`` (C ints: images containing the
        class), ``ignored`` (pixels equal to ``ignore_index``), ``total``
        (all pixels, ignored ones included) and ``num_images``.

    Raises:
        ValueError: a label file holds values outside ``[0, C)`` that are
            not ``ignore_index`` (wrong ``num_classes`` or
            ``reduce_zero_label``).
    """
    from mmengine.utils import ProgressBar
    pixels = np.zeros(num_classes, dtype=np.int64)
    images = np.zeros(num_classes, dtype=np.int64)
    ignored = total = 0
    bar = ProgressBar(len(data_list)) if progress and data_list else None
    for info in data_list:
        path = info['seg_map_path']
        gt = load_seg_label(path, info.get('reduce_zero_label', False),
                            info.get('label_map'), backend_args)
        hist = np.bincount(gt.ravel(), minlength=256)
        n_ign = int(hist[ignore_index]) if 0 <= ignore_index < 256 else 0
        hist_cls = hist.copy()
        if 0 <= ignore_index < 256:
            hist_cls[ignore_index] = 0
        bad = np.nonzero(hist_cls[num_classes:])[0] + num_classes
        if bad.size:
            raise ValueError(
                f'{path} has label values {bad.tolist()} outside [0, '
                f'{num_classes}) that are not ignore_index={ignore_index}; '
                'check the classes in metainfo and reduce_zero_label '
                '(ADE20K layout: 0 = other, classes start at 1).')
        pixels += hist_cls[:num_classes]
        images += hist_cls[:num_classes] > 0
        ignored += n_ign
        total += int(gt.size)
        if bar is not None:
            bar.update()
    if bar is not None:
        print()
    return dict(
        pixels=pixels.tolist(),
        images=images.tolist(),
        ignored=int(ignored),
        total=int(total),
        num_images=len(data_list))
