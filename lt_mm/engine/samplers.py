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

The classes of each sample come from
:func:`lt_mm.engine.sample_classes.get_sample_classes` (re-exported here).
"""
from __future__ import annotations

import math
from typing import Any, Iterator, List, Optional, Sequence

import torch
from mmengine.dist import get_dist_info, sync_random_seed
from mmengine.registry import DATA_SAMPLERS
from torch.utils.data import Sampler

from lt_mm.core.checks import check_range, check_size
from lt_mm.core.sampling import (class_aware_indices, class_sampling_probs,
                                 class_weighted_indices,
                                 progressive_class_probs)
from .sample_classes import get_sample_classes

__all__ = [
    'get_sample_classes', 'BaseClassSampler', 'ClassBalancedSampler',
    'SquareRootSampler', 'ProgressivelyBalancedSampler'
]


def _class_list(idx: int, classes: Any) -> List[int]:
    """Sorted distinct class indices of sample ``idx`` (validated)."""
    if isinstance(classes, (str, bytes)) or not hasattr(classes, '__iter__'):
        raise ValueError(
            f'sample_classes[{idx}]={classes!r} is not a list; give each '
            'sample a list of class indices, e.g. sample_classes=[[0], '
            '[2, 5], ...].')
    out = set()
    for c in classes:
        try:
            ok = not isinstance(c, bool) and float(c).is_integer()
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(
                f'sample_classes[{idx}] has class index {c!r}; class '
                'indices must be integers in [0, num_classes).')
        out.add(int(c))
    return sorted(out)


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
            or the largest class index + 1. When given and the metainfo
            names classes, both must agree (a ``ValueError`` otherwise).
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
        # check_size: a non-integer rank / world_size (2.7) is refused,
        # not truncated (a truncated world_size shards the epoch wrongly)
        self.world_size = check_size(
            'world_size', dist_world if world_size is None else world_size)
        self.rank = check_size(
            'rank', dist_rank if rank is None else rank, low=0)
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
            _class_list(i, cls) for i, cls in enumerate(sample_classes)
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
        self.epoch_length = check_size('num_samples', num_samples, low=1)
        self.num_samples = math.ceil(self.epoch_length / self.world_size)
        self.total_size = self.num_samples * self.world_size

    def _infer_num_classes(self, num_classes: Optional[int]) -> int:
        largest = max((max(c) for c in self.sample_classes if c), default=-1)
        smallest = min((min(c) for c in self.sample_classes if c), default=0)
        if smallest < 0:
            raise ValueError(
                f'class index {smallest} is negative; class indices must be '
                'in [0, num_classes).')
        meta = getattr(self.dataset, 'metainfo', None)
        names = meta.get('classes') if isinstance(meta, dict) else None
        if num_classes is None:
            num_classes = len(names) if names else largest + 1
        else:
            num_classes = check_size('num_classes', num_classes, low=1)
            if names and len(names) != num_classes:
                raise ValueError(
                    f'num_classes={num_classes} but the dataset metainfo '
                    f'has {len(names)} classes; pass the number of classes '
                    'of the training dataset (or leave num_classes unset to '
                    'use its metainfo).')
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
        self.samples_per_class = check_size(
            'samples_per_class', samples_per_class, low=1)
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
        # an integer: T = 2.5 would put the last epoch at t/T = 0.8
        self.total_epochs = check_size('total_epochs', total_epochs, low=1)
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
