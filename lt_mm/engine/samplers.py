"""Class re-balancing data samplers for mmengine (Decoupling, ICLR 2020).

Registered in mmengine's root ``DATA_SAMPLERS`` registry, so every
OpenMMLab 2.x toolbox (mmpretrain, mmseg, mmdet) finds them by type name::

    custom_imports = dict(imports=['lt_mm.engine.samplers'],
                          allow_failed_imports=False)
    train_dataloader = dict(
        sampler=dict(type='ClassBalancedSampler', samples_per_class=4),
        ...)

- :class:`ClassBalancedSampler`: Eq. 1 with q = 0 via the ``ClassAware``
  scheme (4 consecutive samples per class visit).
- :class:`SquareRootSampler`: Eq. 1 with q = 1/2.
- :class:`ProgressivelyBalancedSampler`: Eq. 2, re-computed in
  ``set_epoch`` (mmengine's ``DistSamplerSeedHook`` calls it before every
  training epoch; ``IterBasedTrainLoop`` calls it each time the sampler is
  used up).

Like mmengine's ``DefaultSampler`` they are deterministic given ``seed`` and
the epoch, and DDP-aware: each epoch one global index list of
``total_size = ceil(num_samples / world_size) * world_size`` indices is
generated (identically on every rank) and rank r takes positions
``r::world_size``; ``len(sampler)`` is the per-rank number.

The classes of each sample come from :func:`get_sample_classes`.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import os.path as osp
from typing import Any, Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch
from mmengine.dist import get_dist_info, sync_random_seed
from mmengine.fileio import get as file_get
from mmengine.logging import print_log
from mmengine.registry import DATA_SAMPLERS
from PIL import Image
from torch.utils.data import Sampler

from lt_mm.core.checks import check_range
from lt_mm.core.sampling import (class_aware_indices, class_sampling_probs,
                                 class_weighted_indices,
                                 progressive_class_probs)

_CACHE_FORMAT = 'lt_mm.sample_classes/v1'


# ---------------------------------------------------------------------------
# Classes of each sample
# ---------------------------------------------------------------------------
def _has_cat_ids(dataset: Any) -> bool:
    """Whether ``dataset.get_cat_ids`` exists and is implemented."""
    fn = getattr(dataset, 'get_cat_ids', None)
    if not callable(fn):
        return False
    try:
        fn(0)
    except NotImplementedError:  # mmengine BaseDataset's default
        return False
    return True


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


def _read_seg_classes(path: str,
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
    h = hashlib.sha1()
    for p, r, m in zip(paths, rzl, label_maps):
        h.update(f'{p}|{int(r)}|{sorted(m.items()) if m else None}\n'.encode())
    return h.hexdigest()


def _resolve_cache_file(dataset: Any, cache_file: str) -> str:
    cache_file = os.fspath(cache_file)
    data_root = getattr(dataset, 'data_root', None)
    if not osp.isabs(cache_file) and data_root:
        cache_file = osp.join(data_root, cache_file)
    return cache_file


def _seg_sample_classes(dataset: Any, n: int, cache_file: Optional[str],
                        ignore_index: int) -> List[List[int]]:
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
        _read_seg_classes(p, s[0], s[1], ignore_index, backend_args)
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


def get_sample_classes(dataset: Any,
                       cache_file: Optional[str] = None,
                       ignore_index: int = 255) -> List[List[int]]:
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
        ignore_index: label value that is not a class (mmseg: 255).

    Returns:
        list[list[int]]: ``len(dataset)`` sorted lists of class indices
        (possibly empty, e.g. an image without instances).
    """
    n = len(dataset)
    if n == 0:
        raise ValueError('the dataset is empty; nothing to sample.')
    if _has_cat_ids(dataset):
        return [
            sorted({int(c)
                    for c in dataset.get_cat_ids(i)}) for i in range(n)
        ]
    info = _data_info(dataset, 0)
    if isinstance(info, dict) and 'seg_map_path' in info:
        return _seg_sample_classes(dataset, n, cache_file, ignore_index)
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
        f'{type(dataset).__name__}: it implements no get_cat_ids(idx) '
        '(mmpretrain / mmdet datasets) and its data infos have no '
        "'seg_map_path' (mmseg datasets). Pass sample_classes=[[class "
        'indices of sample 0], ...] to the sampler.')


# ---------------------------------------------------------------------------
# Samplers
# ---------------------------------------------------------------------------
class BaseClassSampler(Sampler):
    """Shared base of the class re-balancing samplers (not registered).

    Args:
        dataset: the training dataset (see :func:`get_sample_classes`).
        num_samples: global number of indices per epoch, before rounding up
            to a multiple of ``world_size``; defaults to ``len(dataset)``.
        seed: RNG seed, identical on all ranks; ``None`` uses
            ``mmengine.dist.sync_random_seed()``. Epoch e uses
            ``seed + e``.
        rank, world_size: default to ``mmengine.dist.get_dist_info()``.
        sample_classes: classes of each sample, overriding
            :func:`get_sample_classes`.
        num_classes: C; defaults to ``len(dataset.metainfo['classes'])``
            or the largest class index + 1.
        cache_file: label-map cache for segmentation datasets.

    Attributes:
        sample_classes (list[list[int]]): classes of each sample.
        class_to_indices (list[list[int]]): dataset indices per class.
        class_counts (torch.Tensor): shape (C,), number of samples that
            contain each class (``n_j``).
        total_size (int): indices per epoch over all ranks.
        num_samples (int): indices per epoch on this rank (``len(self)``).
    """

    def __init__(self,
                 dataset: Any,
                 num_samples: Optional[int] = None,
                 seed: Optional[int] = None,
                 rank: Optional[int] = None,
                 world_size: Optional[int] = None,
                 sample_classes: Optional[Sequence[Sequence[int]]] = None,
                 num_classes: Optional[int] = None,
                 cache_file: Optional[str] = None) -> None:
        dist_rank, dist_world = get_dist_info()
        self.rank = dist_rank if rank is None else int(rank)
        self.world_size = dist_world if world_size is None else int(world_size)
        check_range('world_size', self.world_size, low=1)
        check_range(
            'rank',
            self.rank,
            low=0,
            high=self.world_size - 1,
            hint=f'rank must be in [0, world_size={self.world_size}).')
        self.dataset = dataset
        if seed is None:
            seed = sync_random_seed()
        self.seed = int(seed)
        self.epoch = 0

        if sample_classes is None:
            sample_classes = get_sample_classes(dataset, cache_file)
        elif len(sample_classes) != len(dataset):
            raise ValueError(
                f'sample_classes has {len(sample_classes)} entries but the '
                f'dataset has {len(dataset)} samples.')
        self.sample_classes = [
            sorted({int(c)
                    for c in cls}) for cls in sample_classes
        ]
        self.num_classes = self._infer_num_classes(num_classes)
        self.class_to_indices: List[List[int]] = [
            [] for _ in range(self.num_classes)
        ]
        for idx, cls in enumerate(self.sample_classes):
            for c in cls:
                self.class_to_indices[c].append(idx)
        self.class_counts = torch.tensor(
            [len(v) for v in self.class_to_indices], dtype=torch.float64)
        if not (self.class_counts > 0).any():
            raise ValueError(
                f'no sample of {type(dataset).__name__} has any class; '
                'class-balanced sampling is impossible.')

        if num_samples is None:
            num_samples = len(dataset)
        if isinstance(num_samples, bool) or int(num_samples) != num_samples:
            raise ValueError(
                f'num_samples={num_samples!r} must be a positive integer.')
        check_range('num_samples', num_samples, low=1)
        self.epoch_length = int(num_samples)
        self.num_samples = math.ceil(self.epoch_length / self.world_size)
        self.total_size = self.num_samples * self.world_size

    def _infer_num_classes(self, num_classes: Optional[int]) -> int:
        largest = max((max(c) for c in self.sample_classes if c), default=-1)
        smallest = min((min(c) for c in self.sample_classes if c), default=0)
        if smallest < 0:
            raise ValueError(
                f'class index {smallest} is negative; class indices must be '
                'in [0, num_classes).')
        if num_classes is None:
            meta = getattr(self.dataset, 'metainfo', None)
            names = meta.get('classes') if isinstance(meta, dict) else None
            num_classes = len(names) if names else largest + 1
        num_classes = int(num_classes)
        if largest >= num_classes:
            raise ValueError(
                f'a sample has class index {largest} but num_classes='
                f'{num_classes}; check the label maps (reduce_zero_label?) '
                'or pass num_classes.')
        return max(num_classes, 1)

    # -- to implement ------------------------------------------------------
    def _generate(self, generator: torch.Generator, n: int) -> List[int]:
        """Return ``n`` global indices for the current epoch."""
        raise NotImplementedError

    # -- mmengine sampler protocol ------------------------------------------
    def global_indices(self) -> List[int]:
        """All ``total_size`` indices of the current epoch (every rank)."""
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        return self._generate(g, self.total_size)

    def __iter__(self) -> Iterator[int]:
        indices = self.global_indices()
        return iter(indices[self.rank:self.total_size:self.world_size])

    def __len__(self) -> int:
        """Number of indices this rank yields per epoch."""
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch (changes the random order deterministically)."""
        self.epoch = int(epoch)


@DATA_SAMPLERS.register_module()
class ClassBalancedSampler(BaseClassSampler):
    """Class-balanced sampling (Decoupling Eq. 1, q = 0; cRT / LWS stage).

    Cycles through a shuffled class list (reshuffled each pass) and takes
    ``samples_per_class`` consecutive samples from that class's shuffled
    cycle, like the classifier-balancing ``ClassAwareSampler``; classes
    without samples are skipped. See :class:`BaseClassSampler` for the
    other arguments.

    Args:
        samples_per_class: consecutive samples per class visit (4).
    """

    def __init__(self,
                 dataset: Any,
                 samples_per_class: int = 4,
                 num_samples: Optional[int] = None,
                 seed: Optional[int] = None,
                 **kwargs: Any) -> None:
        if isinstance(samples_per_class,
                      bool) or int(samples_per_class) != samples_per_class:
            raise ValueError(f'samples_per_class={samples_per_class!r} must '
                             'be a positive integer.')
        check_range('samples_per_class', samples_per_class, low=1)
        self.samples_per_class = int(samples_per_class)
        super().__init__(dataset, num_samples=num_samples, seed=seed, **kwargs)

    def _generate(self, generator: torch.Generator, n: int) -> List[int]:
        return class_aware_indices(self.class_to_indices, n,
                                   self.samples_per_class, generator)


@DATA_SAMPLERS.register_module()
class SquareRootSampler(BaseClassSampler):
    """Square-root sampling, ``p_j ∝ n_j^q`` with q = 1/2 (Decoupling Eq. 1).

    A class is drawn from ``class_probs``, then the next sample of that
    class's shuffled cycle. ``n_j`` = number of samples containing class j.

    Args:
        q: the exponent (0.5 = square-root; kept configurable).
    """

    def __init__(self,
                 dataset: Any,
                 num_samples: Optional[int] = None,
                 seed: Optional[int] = None,
                 q: float = 0.5,
                 **kwargs: Any) -> None:
        super().__init__(dataset, num_samples=num_samples, seed=seed, **kwargs)
        self.q = q
        self.class_probs = class_sampling_probs(self.class_counts, q)

    def _generate(self, generator: torch.Generator, n: int) -> List[int]:
        return class_weighted_indices(self.class_to_indices, self.class_probs,
                                      n, generator)


@DATA_SAMPLERS.register_module()
class ProgressivelyBalancedSampler(BaseClassSampler):
    """Progressively-balanced sampling (Decoupling Eq. 2).

    ``p_j(t) = (1 - t/T) n_j/N + (t/T)/C``, recomputed by ``set_epoch``.
    By default t = the mmengine epoch (0-based) and T = ``total_epochs``,
    exactly Eq. 2: the first epoch is instance-balanced and the last uses
    ``t/T = (T-1)/T``. With ``last_epoch_balanced=True`` the schedule is
    ``t/(T-1)`` as in the classifier-balancing code (``linspace(0, 1, T)``),
    so the last epoch is fully class-balanced.

    Args:
        total_epochs: T, the number of training epochs.
        last_epoch_balanced: use ``t/(T-1)`` instead of ``t/T``.
    """

    def __init__(self,
                 dataset: Any,
                 total_epochs: int,
                 num_samples: Optional[int] = None,
                 seed: Optional[int] = None,
                 last_epoch_balanced: bool = False,
                 **kwargs: Any) -> None:
        check_range('total_epochs', total_epochs, low=1)
        self.total_epochs = total_epochs
        self.last_epoch_balanced = bool(last_epoch_balanced)
        super().__init__(dataset, num_samples=num_samples, seed=seed, **kwargs)
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch and recompute ``class_probs`` (Eq. 2)."""
        super().set_epoch(epoch)
        T = self.total_epochs
        if self.last_epoch_balanced:
            T = max(T - 1, 1)
        self.class_probs = progressive_class_probs(self.class_counts,
                                                   self.epoch, T)

    def _generate(self, generator: torch.Generator, n: int) -> List[int]:
        return class_weighted_indices(self.class_to_indices, self.class_probs,
                                      n, generator)
