"""ImageNet-LT style list datasets for mmpretrain.

ImageNet-LT (Liu et al., "Large-Scale Long-Tailed Recognition in an Open
World", CVPR 2019, Sec. 5) is published as ``ImageNet_LT_{train,val,test}
.txt`` lists with one ``<relative path> <label>`` line per image under an
image root; Places-LT and the iNaturalist lists used by Decoupling (Kang et
al., ICLR 2020, Sec. 5) share the format. :class:`ImageNetLTDataset` reads
any of them; the training split also yields the per-class counts ``n_j``
(computed once, cached as ``lt_mm.class_stats/v1`` JSON, ``unit='images'``).
"""
from __future__ import annotations

import os.path as osp
from typing import List, Optional, Sequence, Union

from mmengine.fileio import list_from_file
from mmpretrain.datasets import CustomDataset
from mmpretrain.registry import DATASETS

from lt_mm.core.stats import ClassStats
from .counts import FEW_THR, MANY_THR, class_stats_from_list, read_list_file


@DATASETS.register_module()
class ImageNetLTDataset(CustomDataset):
    """A long-tailed classification set given by list files.

    Args:
        ann_file: the list (``ImageNet_LT_train.txt``, ``_val.txt``,
            ``_test.txt``, ``Places_LT_*.txt``, iNaturalist lists), relative
            to ``data_root`` unless absolute.
        data_root: the dataset root.
        data_prefix: the image root, relative to ``data_root`` (default:
            ``data_root`` itself, as in the published lists whose paths
            start with ``train/``, ``val/``...).
        classes: class names: a sequence, or a ``classes.txt`` path (one
            name per line; relative to ``data_root`` unless absolute).
        num_classes: C. Default: ``len(classes)`` when given; otherwise the
            labels decide (largest label + 1 of the list). Labels outside
            ``[0, C)`` raise a ``ValueError`` when the list is loaded.
        stats_cache: where :meth:`class_stats` caches the statistics of
            this list (``None`` = next to the list, ``False`` = no cache).
        **kwargs: other :class:`mmpretrain.datasets.CustomDataset`
            arguments (``pipeline``, ``test_mode``, ``lazy_init``...).
    """

    def __init__(self,
                 ann_file: str,
                 data_root: str = '',
                 data_prefix: Union[str, dict] = '',
                 classes: Union[str, Sequence[str], None] = None,
                 num_classes: Optional[int] = None,
                 stats_cache: Union[str, bool, None] = None,
                 **kwargs) -> None:
        if not ann_file:
            raise ValueError(
                'ImageNetLTDataset needs ann_file (e.g. '
                "'ImageNet_LT_train.txt'); it reads list files only.")
        if isinstance(classes, str):
            path = classes
            if not osp.isabs(path) and data_root:
                path = osp.join(data_root, path)
            if not osp.isfile(path):
                raise FileNotFoundError(
                    f'classes file {path!r} does not exist; give a list of '
                    'names or a classes.txt with one name per line.')
            classes = [c.strip() for c in list_from_file(path) if c.strip()]
        if classes is not None:
            classes = tuple(classes)
            if num_classes is not None and num_classes != len(classes):
                raise ValueError(
                    f'num_classes={num_classes} but {len(classes)} class '
                    'names were given.')
            num_classes = len(classes)
        elif num_classes is not None:
            classes = tuple(str(i) for i in range(int(num_classes)))
        self._num_classes = None if num_classes is None else int(num_classes)
        self.stats_cache = stats_cache
        super().__init__(
            ann_file=ann_file,
            data_root=data_root,
            data_prefix=data_prefix,
            with_label=True,
            classes=classes,
            **kwargs)

    def load_data_list(self) -> List[dict]:
        """Read ``(img_path, gt_label)`` from the list file."""
        samples = read_list_file(self.ann_file)
        largest = max(y for _, y in samples)
        if self._num_classes is None:
            self._num_classes = largest + 1
            self._metainfo['classes'] = tuple(
                str(i) for i in range(self._num_classes))
        elif largest >= self._num_classes:
            raise ValueError(
                f'{self.ann_file} has label {largest} but the dataset has '
                f'{self._num_classes} classes (num_classes / classes).')
        prefix = self.img_prefix
        return [
            dict(img_path=osp.join(prefix, p) if prefix else p, gt_label=y)
            for p, y in samples
        ]

    @property
    def num_classes(self) -> int:
        """Number of classes C."""
        if self._num_classes is None:
            self.full_init()
        return int(self._num_classes)

    def class_stats(self,
                    many_thr: float = MANY_THR,
                    few_thr: float = FEW_THR) -> ClassStats:
        """Statistics of this list: ``n_j`` and many/medium/few splits.

        Meaningful for the training split (the splits of the ImageNet-LT
        protocol are defined by training counts). Cached next to the list
        (see :func:`lt_mm.cls.counts.class_stats_from_list`).
        """
        names = self.CLASSES
        return class_stats_from_list(
            self.ann_file,
            num_classes=self.num_classes,
            names=None if names is None else list(names),
            cache_file=self.stats_cache,
            many_thr=many_thr,
            few_thr=few_thr)

    def get_class_counts(self) -> List[int]:
        """Training images per class, (C,) (the ``n_j`` of the papers)."""
        return [int(c) for c in self.class_stats().counts]
