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
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional, Sequence, Tuple, Union

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
        check_files: check when the list is loaded (dataset build time)
            that every listed image exists, and raise one
            ``FileNotFoundError`` counting all missing images and naming
            the first few (local paths only). Default True; ``False``
            skips the check for very large lists on slow storage.
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
                 check_files: bool = True,
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
        if not isinstance(check_files, bool):
            raise ValueError(
                f'check_files={check_files!r} must be True or False.')
        self.check_files = check_files
        super().__init__(
            ann_file=ann_file,
            data_root=data_root,
            data_prefix=data_prefix,
            with_label=True,
            classes=classes,
            **kwargs)

    def load_data_list(self) -> List[dict]:
        """Read ``(img_path, gt_label)`` from the list file.

        Checked here, i.e. when the dataset is built: every label lies in
        ``[0, C)`` (the error names the list, the line and the label) and,
        with ``check_files``, every listed image exists.
        """
        samples = read_list_file(self.ann_file)
        largest = max(y for _, y in samples)
        if self._num_classes is None:
            self._num_classes = largest + 1
            self._metainfo['classes'] = tuple(
                str(i) for i in range(self._num_classes))
        elif largest >= self._num_classes:
            lineno, label = first_label_at_least(self.ann_file,
                                                 self._num_classes)
            raise ValueError(
                f'{self.ann_file}:{lineno}: label {label} is out of range '
                f'[0, {self._num_classes}): the dataset has '
                f'{self._num_classes} classes (num_classes / classes). Use '
                'the list of the dataset the model is built for, or fix '
                'num_classes.')
        prefix = self.img_prefix
        data_list = [
            dict(img_path=osp.join(prefix, p) if prefix else p, gt_label=y)
            for p, y in samples
        ]
        if self.check_files:
            check_files_exist(
                self.ann_file, [d['img_path'] for d in data_list],
                backend_args=getattr(self, 'backend_args', None))
        return data_list

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


def first_label_at_least(ann_file: str, num_classes: int) -> Tuple[int, int]:
    """``(line number, label)`` of the first line of an ImageNet-LT list
    whose label is ``>= num_classes`` (``(0, -1)`` when there is none).

    Lines are ``<path> <label>`` (see :func:`lt_mm.cls.counts.
    read_list_file`, which validates the format); line numbers start at 1.
    """
    with open(ann_file, encoding='utf-8') as f:
        for lineno, line in enumerate(f, 1):
            parts = line.strip().rsplit(' ', 1)
            if len(parts) == 2 and parts[1].lstrip('-').isdigit():
                if int(parts[1]) >= num_classes:
                    return lineno, int(parts[1])
    return 0, -1


#: how many missing files an error message names
MAX_NAMED = 5


def _is_local(path: str, backend_args: Optional[dict]) -> bool:
    if '://' in path:
        return False
    backend = (backend_args or {}).get('backend', 'local')
    return backend in ('local', 'disk')


def check_files_exist(source: str,
                      paths: Sequence[str],
                      backend_args: Optional[dict] = None,
                      what: str = 'images',
                      hint: str = '') -> None:
    """Raise one ``FileNotFoundError`` when listed files do not exist.

    Checks local paths only (other mmengine backends are skipped). The
    ``os.stat`` calls run in a thread pool for long lists, so the check
    stays cheap on network file systems. The message counts *all* missing
    files and names the first :data:`MAX_NAMED`, with their line in
    ``source`` when ``source`` is a list file (non-empty lines, in order).

    Args:
        source: the list file (or folder) the paths come from.
        paths: the resolved file paths (e.g. ``img_path`` of each sample).
        backend_args: the dataset's mmengine file backend arguments.
        what: what the paths are, for the message.
        hint: extra text for the message.

    Raises:
        FileNotFoundError: at least one file does not exist.
    """
    if not paths or not _is_local(str(paths[0]), backend_args):
        return
    if len(paths) > 2000:
        with ThreadPoolExecutor(max_workers=16) as pool:
            exists = list(pool.map(osp.isfile, paths, chunksize=256))
    else:
        exists = [osp.isfile(p) for p in paths]
    missing = [i for i, ok in enumerate(exists) if not ok]
    if not missing:
        return
    linenos = None
    if osp.isfile(source):
        with open(source, encoding='utf-8') as f:
            linenos = [n for n, line in enumerate(f, 1) if line.strip()]
        if len(linenos) != len(paths):
            linenos = None
    named = ', '.join(
        (f'line {linenos[i]}: ' if linenos else '') + repr(paths[i])
        for i in missing[:MAX_NAMED])
    more = (f' and {len(missing) - MAX_NAMED} more'
            if len(missing) > MAX_NAMED else '')
    raise FileNotFoundError(
        f'{source}: {len(missing)} of {len(paths)} {what} do not exist '
        f'({named}{more}). Check data_root / data_prefix (the image root) '
        f'or the list; {hint}pass check_files=False to skip this '
        'check (very large lists on slow storage).')
