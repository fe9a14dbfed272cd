"""Long-tail classification losses for mmpretrain heads.

Thin wrappers of :mod:`lt_mm.core` with mmpretrain's loss interface
``loss(cls_score, label, weight=None, avg_factor=None,
reduction_override=None)``:

* :class:`GRWLoss` -- DisAlign's generalized re-weighting (Zhang et al.,
  CVPR 2021, Eq. 8-11), :class:`lt_mm.core.grw.GRWCrossEntropy`;
* :class:`CDTLoss` -- class-dependent temperatures (Ye et al., CDT Eq. 3),
  :class:`lt_mm.core.cdt.CDTCrossEntropy`, with the epoch-aware start read
  from mmengine's ``MessageHub`` (``'epoch'``, set by ``RuntimeInfoHook``
  at the start of every training epoch).

Counts: ``counts=[...]``, ``stats_file=PATH`` or ``train_ann_file=PATH``
(resolved at build time, see :func:`lt_mm.cls.counts.resolve_cls_counts`).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch.nn as nn
from mmengine.logging import MessageHub
from mmpretrain.registry import MODELS
from torch import Tensor

from lt_mm.core.cdt import CDTCrossEntropy
from lt_mm.core.grw import GRWCrossEntropy
from .counts import resolve_cls_counts


def _hard_labels(cls_score: Tensor, label: Tensor, what: str) -> Tensor:
    if label.dim() != 1 or label.shape[0] != cls_score.shape[0]:
        raise ValueError(
            f'{what} needs hard labels of shape (N,), got '
            f'{tuple(label.shape)} for scores {tuple(cls_score.shape)}: '
            'batch augmentations that produce soft targets (Mixup, CutMix) '
            'are not supported.')
    return label


def _check_unsupported(weight, reduction_override, what: str) -> None:
    if weight is not None:
        raise ValueError(f'{what} does not support per-sample weights.')
    if reduction_override not in (None, 'mean'):
        raise ValueError(
            f'{what}: reduction_override={reduction_override!r} is not '
            "supported (only 'mean').")


@MODELS.register_module()
class GRWLoss(nn.Module):
    """Generalized re-weighting cross-entropy (DisAlign Eq. 8-11).

    ``L = sum_i w_{y_i} CE(z_i, y_i) / sum_i w_{y_i}`` with
    ``w_c ∝ (n_c / sum_k n_k) ** (-rho)`` normalised to mean 1
    (:func:`lt_mm.core.grw.grw_class_weights`). ``rho = 1.2`` (linear
    classifier) / ``1.5`` (cosine classifier) on ImageNet-LT
    (DisAlign Sec. A.1); ``rho = 0`` is plain CE.

    Args:
        rho: re-weighting exponent, ``>= 0``.
        counts, stats_file, train_ann_file: the class counts (one source).
        num_classes: optional C to check the counts against (the head also
            checks its own ``num_classes``).
        loss_weight: multiplier.
    """

    def __init__(self,
                 rho: float = 1.2,
                 counts: Optional[Sequence[float]] = None,
                 stats_file: Optional[str] = None,
                 train_ann_file: Optional[str] = None,
                 num_classes: Optional[int] = None,
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        n = resolve_cls_counts(
            counts, stats_file, train_ann_file, num_classes, what='GRWLoss')
        self.counts = n
        self.grw = GRWCrossEntropy(
            n, rho, reduction='weighted_mean', loss_weight=loss_weight)

    @property
    def num_classes(self) -> int:
        """C, the length of the counts."""
        return len(self.counts)

    def forward(self,
                cls_score: Tensor,
                label: Tensor,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[int] = None,
                reduction_override: Optional[str] = None,
                **kwargs) -> Tensor:
        """(N, C) scores, (N,) labels -> scalar loss."""
        _check_unsupported(weight, reduction_override, 'GRWLoss')
        return self.grw(cls_score, _hard_labels(cls_score, label, 'GRWLoss'))


@MODELS.register_module()
class CDTLoss(nn.Module):
    """Class-dependent temperature cross-entropy (CDT Eq. 3).

    ``L = CE(z / a, y)`` with ``a_c = (N_max / N_c) ** gamma``; inference
    uses the raw logits. Temperatures are on from ``start_epoch`` (0-based;
    the DRW-style deferred variant), read from the ``MessageHub`` epoch at
    each forward; outside a runner the epoch is 0. CDT needs a schedule
    that fits the few-shot training images (see
    :class:`lt_mm.core.cdt.CDTCrossEntropy`); with a shorter one it lowers
    few-shot accuracy.

    Args:
        gamma: ``>= 0`` (CDT uses 0.1-0.3; 0 is plain CE).
        counts, stats_file, train_ann_file: the class counts (one source).
        start_epoch: first epoch with temperatures.
        num_classes: optional C to check the counts against.
        loss_weight: multiplier.
    """

    def __init__(self,
                 gamma: float = 0.2,
                 counts: Optional[Sequence[float]] = None,
                 stats_file: Optional[str] = None,
                 train_ann_file: Optional[str] = None,
                 start_epoch: int = 0,
                 num_classes: Optional[int] = None,
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        n = resolve_cls_counts(
            counts, stats_file, train_ann_file, num_classes, what='CDTLoss')
        self.counts = n
        self.cdt = CDTCrossEntropy(
            n, gamma, start_epoch=start_epoch, loss_weight=loss_weight)

    @property
    def num_classes(self) -> int:
        """C, the length of the counts."""
        return len(self.counts)

    def forward(self,
                cls_score: Tensor,
                label: Tensor,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[int] = None,
                reduction_override: Optional[str] = None,
                **kwargs) -> Tensor:
        """(N, C) scores, (N,) labels -> scalar loss."""
        _check_unsupported(weight, reduction_override, 'CDTLoss')
        epoch = MessageHub.get_current_instance().get_info('epoch')
        self.cdt.epoch = int(epoch or 0)
        return self.cdt(cls_score, _hard_labels(cls_score, label, 'CDTLoss'))
