"""Box-classification losses for long-tailed detection (mmdet ``MODELS``).

Both take mmdet's ``loss_cls`` call ``loss(cls_score, labels,
label_weights, avg_factor=..., reduction_override=...)`` with
``cls_score`` of shape (N, C + 1) (background LAST) and labels in
``[0, C]``. The class counts cover the C foreground classes only and are
resolved when the loss is built (:func:`lt_mm.det.counts.resolve_det_counts`),
so a counts file of another vocabulary or counts that include the
background fail before training.

* :class:`GRWLoss` -- DisAlign's generalized re-weighting (Eq. 11) on the
  foreground classes, background weight 1 (the reference detection loss).
* :class:`CDTLoss` -- class-dependent temperatures (CDT Eq. 3) on the
  foreground logits, background temperature 1.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.registry import MODELS
from torch import Tensor

from lt_mm.core.cdt import cdt_logits, cdt_temperatures
from lt_mm.core.checks import check_choice, check_range
from lt_mm.core.grw import grw_class_weights, grw_cross_entropy
from .counts import resolve_det_counts

REDUCTIONS = ('none', 'mean', 'sum')


def _check_inputs(cls_score: Tensor, labels: Tensor, num_cols: int,
                  what: str) -> None:
    if cls_score.dim() != 2 or cls_score.shape[1] != num_cols:
        raise ValueError(
            f'{what}: cls_score has shape {tuple(cls_score.shape)} but the '
            f'loss was built for num_classes + 1 = {num_cols} columns '
            '(background last).')
    if labels.shape != cls_score.shape[:1]:
        raise ValueError(f'{what}: labels have shape {tuple(labels.shape)}; '
                         f'expected ({cls_score.shape[0]},).')


@MODELS.register_module()
class GRWLoss(nn.Module):
    """Generalized re-weighting cross-entropy for box heads (DisAlign Eq.
    8-11).

    Foreground weights ``w_j = r_j ** (-rho)`` with ``r_j = n_j / sum n``,
    rescaled to ``sum_j w_j = C``; the background gets the fixed weight 1
    (``w_C = 1``), i.e. "generalized re-weight is only used for
    foreground categories" (DisAlign Sec. C.2). With ``CE_i`` the softmax
    cross-entropy of RoI i, ``v_i`` mmdet's label weight and
    ``w_i = w[y_i]``::

        'mean': sum_i v_i w_i CE_i / sum_i v_i w_i     (reference:
                F.cross_entropy(weight=w), the weighted mean; mmdet's
                avg_factor is not used)
        'sum':  sum_i v_i w_i CE_i
        'none': v_i w_i CE_i                           (N,)

    Args:
        num_classes: C, the foreground classes of the box head (required:
            the counts are checked against it when the loss is built).
        rho: ``>= 0`` (DisAlign: 0.8 on LVIS v0.5 and v1).
        counts, stats_file, train_ann_file: exactly one source of the C
            training counts (see :func:`lt_mm.det.counts.resolve_det_counts`).
        count_unit: ``'images'`` (LVIS ``image_count``) or ``'instances'``.
        reduction: default reduction.
        loss_weight: multiplier.

    Buffer ``class_weight`` (C + 1,), non-persistent (derived from counts).
    """

    def __init__(self,
                 num_classes: int,
                 rho: float = 0.8,
                 counts: Optional[Sequence[float]] = None,
                 stats_file: Optional[str] = None,
                 train_ann_file: Optional[str] = None,
                 count_unit: str = 'images',
                 reduction: str = 'mean',
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        self.num_classes = int(check_range('num_classes', num_classes, 1))
        self.rho = check_range('rho', rho, 0.0)
        self.reduction = check_choice('reduction', reduction, REDUCTIONS)
        self.loss_weight = check_range('loss_weight', loss_weight)
        # class statistics are computed on the CPU (also when the model is
        # built under another default device, e.g. 'meta')
        with torch.device('cpu'):
            n = resolve_det_counts(
                counts,
                stats_file,
                train_ann_file,
                num_classes=self.num_classes,
                unit=count_unit,
                what='GRWLoss')
            weight = grw_class_weights(n, self.rho, background=True)
        self.register_buffer('class_weight', weight, persistent=False)

    def forward(self,
                cls_score: Tensor,
                labels: Tensor,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None) -> Tensor:
        """GRW loss of (N, C + 1) scores and (N,) labels in ``[0, C]``.

        Args:
            cls_score: (N, C + 1) logits.
            labels: (N,) labels.
            weight: (N,) mmdet label weights (``v_i``), optional.
            avg_factor: ignored (the reference uses the weighted mean).
            reduction_override: ``'none'``, ``'mean'`` or ``'sum'``.

        Returns:
            Tensor: scalar (or (N,) for ``'none'``) times ``loss_weight``.
        """
        reduction = check_choice('reduction', reduction_override
                                 or self.reduction, REDUCTIONS)
        _check_inputs(cls_score, labels, self.num_classes + 1, 'GRWLoss')
        labels = labels.long()
        # w_i * CE_i (DisAlign Eq. 9-11, lt_mm.core.grw)
        loss = grw_cross_entropy(
            cls_score, labels, self.class_weight, reduction='none')
        w = self.class_weight.to(loss.device)[labels]
        if weight is not None:
            w = w * weight.to(w.dtype)
            loss = loss * weight.to(loss.dtype)
        if reduction == 'sum':
            loss = loss.sum()
        elif reduction == 'mean':
            loss = loss.sum() / w.sum().clamp_min(torch.finfo(w.dtype).tiny)
        return loss * self.loss_weight

    def extra_repr(self) -> str:
        return f'num_classes={self.num_classes}, rho={self.rho}'


@MODELS.register_module()
class CDTLoss(nn.Module):
    """Class-dependent temperature cross-entropy for box heads (CDT Eq. 3).

    Training logits ``z_j / a_j`` with ``a_j = (N_max / N_j) ** gamma`` for
    the C foreground classes and ``a_C = 1`` for the background (last);
    inference uses the raw logits (the box head is unchanged). With mmdet's
    label weights ``v_i``::

        'mean': sum_i v_i CE_i / avg_factor   (mmdet convention; without
                avg_factor the mean over RoIs)
        'sum':  sum_i v_i CE_i;   'none': v_i CE_i  (N,)

    Args:
        num_classes: C (required, see :class:`GRWLoss`).
        gamma: ``>= 0``; 0 is plain cross-entropy (CDT grids: 0-0.4 on
            CIFAR, 0-0.1 on iNaturalist).
        counts, stats_file, train_ann_file: one source of the C counts.
        count_unit: ``'instances'`` (CDT's ``N_c`` is the number of
            training instances) or ``'images'``.
        reduction: default reduction.
        loss_weight: multiplier.

    Buffer ``temperatures`` (C,), non-persistent.
    """

    def __init__(self,
                 num_classes: int,
                 gamma: float = 0.1,
                 counts: Optional[Sequence[float]] = None,
                 stats_file: Optional[str] = None,
                 train_ann_file: Optional[str] = None,
                 count_unit: str = 'instances',
                 reduction: str = 'mean',
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        self.num_classes = int(check_range('num_classes', num_classes, 1))
        self.gamma = check_range('gamma', gamma, 0.0)
        self.reduction = check_choice('reduction', reduction, REDUCTIONS)
        self.loss_weight = check_range('loss_weight', loss_weight)
        with torch.device('cpu'):  # see GRWLoss
            n = resolve_det_counts(
                counts,
                stats_file,
                train_ann_file,
                num_classes=self.num_classes,
                unit=count_unit,
                what='CDTLoss')
            temps = cdt_temperatures(n, self.gamma)
        self.register_buffer('temperatures', temps, persistent=False)

    def forward(self,
                cls_score: Tensor,
                labels: Tensor,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None) -> Tensor:
        """CDT loss of (N, C + 1) scores and (N,) labels in ``[0, C]``.

        Returns:
            Tensor: scalar (or (N,) for ``'none'``) times ``loss_weight``.
        """
        reduction = check_choice('reduction', reduction_override
                                 or self.reduction, REDUCTIONS)
        _check_inputs(cls_score, labels, self.num_classes + 1, 'CDTLoss')
        scaled = cdt_logits(
            cls_score.float(), self.temperatures, background=True)
        loss = F.cross_entropy(scaled, labels.long(), reduction='none')
        if weight is not None:
            loss = loss * weight.to(loss.dtype)
        if reduction == 'sum':
            loss = loss.sum()
        elif reduction == 'mean':
            denom = float(avg_factor) if avg_factor is not None else float(
                max(loss.numel(), 1))
            loss = loss.sum() / max(denom, torch.finfo(loss.dtype).eps)
        return loss * self.loss_weight

    def extra_repr(self) -> str:
        return f'num_classes={self.num_classes}, gamma={self.gamma}'
