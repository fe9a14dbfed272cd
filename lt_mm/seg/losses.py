"""Long-tail pixel losses for mmseg decode heads (mmseg ``MODELS``).

* :class:`GRWCrossEntropyLoss` -- DisAlign's generalized re-weighting
  (Zhang et al., CVPR 2021, Eq. 11) with per-class *pixel* frequencies.
* :class:`CDTCrossEntropyLoss` -- class-dependent temperatures (Ye et al.,
  arXiv 2001.01385, Eq. 3) with pixel counts.

Both follow mmseg's loss interface: ``forward(cls_score, label, weight=None,
ignore_index=255, ...)`` with ``cls_score`` (N, C, H, W) and ``label``
(N, H, W), and a ``loss_name`` property (default ``'loss_ce'``, so they
replace mmseg's ``CrossEntropyLoss`` in logs and configs). Class counts
come from ``counts=[...]`` or ``stats_file=`` (a ``lt_mm.class_stats/v1``
file in unit ``'pixels'``, e.g. ``'builtin:ade20k'`` or the output of
``tools/class_stats.py``) and are checked when the loss is built.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn
from mmseg.models.losses.cross_entropy_loss import cross_entropy
from mmseg.registry import MODELS
from torch import Tensor

from lt_mm.core.cdt import cdt_logits, cdt_temperatures
from lt_mm.core.checks import check_choice, check_range
from lt_mm.core.grw import GRW_REDUCTIONS, grw_class_weights, grw_cross_entropy
from lt_mm.core.stats import resolve_counts


def _pixel_counts(counts, stats_file, num_classes) -> list:
    return resolve_counts(
        counts, stats_file, num_classes=num_classes, unit='pixels')


@MODELS.register_module()
class GRWCrossEntropyLoss(nn.Module):
    """Generalized re-weighting cross-entropy (DisAlign Eq. 9-11) per pixel.

    ``r_c = n_c / sum_k n_k`` (pixel frequencies), ``w_c = r_c ** (-rho)``
    rescaled to ``sum_c w_c = C``; the loss of pixel ``i`` is
    ``w_{y_i} CE_i``. Ignored pixels (``ignore_index``, e.g. 255) are removed
    *before* any weight is gathered (mmseg's ``class_weight`` path indexes
    the weights with 255 and crashes).

    Reductions (``M`` = all pixels of the batch):

    * ``'mean'`` (default, the DisAlign segmentation reference on mmseg
      0.x): ``sum_i w_i CE_i / M`` (ignored pixels count as 0), or over the
      non-ignored pixels with ``avg_non_ignore=True``;
    * ``'weighted_mean'``: ``sum_i w_i CE_i / sum_i w_i`` (the
      classification / detection reference, PyTorch ``weight=`` semantics);
    * ``'sum'``, ``'none'``.

    A pixel-sampler ``weight`` (N, H, W) multiplies the per-pixel losses
    (and the weights of ``'weighted_mean'``).

    Args:
        rho: scale exponent ``>= 0`` (DisAlign ADE20K: 0.3 in the paper's
            appendix B.2, 0.2 in the released config).
        counts: per-class pixel counts (or ratios), shape (C,).
        stats_file: alternatively a class-statistics file in ``'pixels'``.
        num_classes: optional C, checked against the counts at build time
            (:class:`~lt_mm.seg.heads.LTDecodeHead` checks it anyway).
        reduction: see above.
        avg_non_ignore: see ``'mean'``.
        ignore_index: default ignore label (mmseg heads pass their own).
        loss_weight: multiplier.
        loss_name: key of the loss in the log (must start with ``loss_``).
    """

    def __init__(self,
                 rho: float = 0.3,
                 counts: Optional[Sequence[float]] = None,
                 stats_file: Optional[str] = None,
                 num_classes: Optional[int] = None,
                 reduction: str = 'mean',
                 avg_non_ignore: bool = False,
                 ignore_index: int = 255,
                 loss_weight: float = 1.0,
                 loss_name: str = 'loss_ce') -> None:
        super().__init__()
        self.rho = check_range(
            'rho',
            rho,
            0.0,
            hint='rho=0 is plain CE, rho=1 inverse-frequency '
            'weighting (DisAlign ADE20K: 0.3).')
        self.reduction = check_choice('reduction', reduction, GRW_REDUCTIONS)
        self.avg_non_ignore = bool(avg_non_ignore)
        self.ignore_index = int(ignore_index)
        self.loss_weight = check_range('loss_weight', loss_weight)
        self._loss_name = loss_name
        n = _pixel_counts(counts, stats_file, num_classes)
        # derived from counts and rho: not saved in checkpoints
        self.register_buffer(
            'class_weight', grw_class_weights(n, self.rho), persistent=False)

    @property
    def num_classes(self) -> int:
        """Number of classes C the weights were built for."""
        return self.class_weight.numel()

    @property
    def loss_name(self) -> str:
        """Name of the loss in the log dict (mmseg convention)."""
        return self._loss_name

    def forward(self,
                cls_score: Tensor,
                label: Tensor,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None,
                ignore_index: Optional[int] = None,
                **kwargs) -> Tensor:
        """GRW loss (DisAlign Eq. 11).

        Args:
            cls_score: logits (N, C, H, W) (or (N, C)).
            label: (N, H, W) (or (N,)) in ``[0, C)`` or ``ignore_index``.
            weight: optional per-pixel weights, shape of ``label``.
            avg_factor: optional denominator for ``'mean'``.
            reduction_override: overrides ``reduction``.
            ignore_index: overrides the default ignore label.

        Returns:
            Tensor: the loss times ``loss_weight``.
        """
        reduction = check_choice('reduction', reduction_override
                                 or self.reduction, GRW_REDUCTIONS)
        ignore = self.ignore_index if ignore_index is None else ignore_index
        if weight is None and avg_factor is None:
            loss = grw_cross_entropy(
                cls_score,
                label,
                self.class_weight,
                reduction=reduction,
                ignore_index=ignore,
                avg_non_ignore=self.avg_non_ignore)
            return self.loss_weight * loss
        # per-pixel weights / explicit denominator: reduce here
        per = grw_cross_entropy(
            cls_score,
            label,
            self.class_weight,
            reduction='none',
            ignore_index=ignore)
        valid = label != ignore
        if weight is not None:
            per = per * weight.to(per.dtype).reshape(per.shape)
        if reduction == 'none':
            return self.loss_weight * per
        total = per.sum()
        if reduction == 'sum':
            return self.loss_weight * total
        if reduction == 'weighted_mean':
            w = torch.zeros_like(per)
            cw = self.class_weight.to(per.device, per.dtype)
            w[valid] = cw[label[valid].long()]
            if weight is not None:
                w = w * weight.to(per.dtype).reshape(per.shape)
            denom = w.sum() if avg_factor is None else avg_factor
        elif avg_factor is not None:
            denom = avg_factor
        elif self.avg_non_ignore:
            denom = valid.sum().clamp_min(1)
        else:
            denom = max(label.numel(), 1)
        return self.loss_weight * total / torch.as_tensor(
            denom, dtype=total.dtype, device=total.device).clamp_min(
                torch.finfo(total.dtype).tiny)

    def extra_repr(self) -> str:
        return (f'num_classes={self.num_classes}, rho={self.rho}, '
                f'reduction={self.reduction!r}, '
                f'avg_non_ignore={self.avg_non_ignore}')


@MODELS.register_module()
class CDTCrossEntropyLoss(nn.Module):
    """Class-dependent temperature cross-entropy (CDT, Eq. 3) per pixel.

    ``a_c = (N_max / N_c) ** gamma`` from per-class *pixel* counts; the
    training loss is mmseg's cross-entropy on ``z_c / a_c`` (same ignore
    handling and reduction as mmseg's ``CrossEntropyLoss``: ``'mean'`` over
    all pixels, or over the non-ignored ones with ``avg_non_ignore=True``).
    Inference uses the raw logits (nothing changes in the head).

    Args:
        gamma: ``>= 0`` (0 = plain CE). No published value for
            segmentation; the CDT reference grids are [0, 0.4] (CIFAR-10),
            [0, 0.2] (CIFAR-100), [0, 0.1] (iNaturalist).
        counts: per-class pixel counts, shape (C,).
        stats_file: alternatively a class-statistics file in ``'pixels'``.
        num_classes: optional C, checked against the counts.
        reduction: ``'mean'``, ``'sum'`` or ``'none'``.
        avg_non_ignore: see above.
        ignore_index: default ignore label (mmseg heads pass their own).
        loss_weight: multiplier.
        loss_name: key in the log dict.
    """

    def __init__(self,
                 gamma: float = 0.1,
                 counts: Optional[Sequence[float]] = None,
                 stats_file: Optional[str] = None,
                 num_classes: Optional[int] = None,
                 reduction: str = 'mean',
                 avg_non_ignore: bool = False,
                 ignore_index: int = 255,
                 loss_weight: float = 1.0,
                 loss_name: str = 'loss_ce') -> None:
        super().__init__()
        self.gamma = check_range('gamma', gamma, 0.0)
        self.reduction = check_choice('reduction', reduction,
                                      ('mean', 'sum', 'none'))
        self.avg_non_ignore = bool(avg_non_ignore)
        self.ignore_index = int(ignore_index)
        self.loss_weight = check_range('loss_weight', loss_weight)
        self._loss_name = loss_name
        n = _pixel_counts(counts, stats_file, num_classes)
        self.register_buffer(
            'temperatures', cdt_temperatures(n, self.gamma), persistent=False)

    @property
    def num_classes(self) -> int:
        """Number of classes C the temperatures were built for."""
        return self.temperatures.numel()

    @property
    def loss_name(self) -> str:
        """Name of the loss in the log dict (mmseg convention)."""
        return self._loss_name

    def forward(self,
                cls_score: Tensor,
                label: Tensor,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None,
                ignore_index: Optional[int] = None,
                **kwargs) -> Tensor:
        """CDT loss (Eq. 3): ``CE(z / a, y)``.

        Args:
            cls_score: logits (N, C, H, W).
            label: (N, H, W).
            weight: optional per-pixel weights.
            avg_factor: optional denominator for ``'mean'``.
            reduction_override: overrides ``reduction``.
            ignore_index: overrides the default ignore label.

        Returns:
            Tensor: the loss times ``loss_weight``.
        """
        reduction = check_choice('reduction', reduction_override
                                 or self.reduction, ('mean', 'sum', 'none'))
        ignore = self.ignore_index if ignore_index is None else ignore_index
        scaled = cdt_logits(cls_score, self.temperatures)
        loss = cross_entropy(
            scaled,
            label,
            weight=weight,
            reduction=reduction,
            avg_factor=avg_factor,
            ignore_index=ignore,
            avg_non_ignore=self.avg_non_ignore)
        return self.loss_weight * loss

    def extra_repr(self) -> str:
        return (f'num_classes={self.num_classes}, gamma={self.gamma}, '
                f'reduction={self.reduction!r}, '
                f'avg_non_ignore={self.avg_non_ignore}')
