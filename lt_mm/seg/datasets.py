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

from typing import Dict, List, Mapping, Optional, Sequence

import mmcv
import numpy as np
from mmengine import fileio
from mmseg.datasets import ADE20KDataset
from mmseg.registry import DATASETS


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

    Args:
        **kwargs: as ``ADE20KDataset``.
    """

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
