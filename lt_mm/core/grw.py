"""Generalized re-weighting (GRW) loss of DisAlign (CVPR 2021, Sec. 3.2.2).

DisAlign aligns the calibrated prediction with a re-weighted reference
distribution (Eq. 8-10), which reduces to a class-weighted cross-entropy
with the weights of Eq. 11::

    r_c = n_c / sum_k n_k,     w_c = r_c ** (-rho) / sum_k r_k ** (-rho).

As in the reference code the weights are rescaled so that
``sum_c w_c = C`` (mean weight 1) instead of 1; this factor cancels in the
weighted mean used for classification and detection but sets the loss scale
of the per-pixel ``'mean'`` reduction used for segmentation.
``rho = 0`` gives instance-balanced CE, ``rho = 1`` inverse-frequency
(class-balanced) weights.

Detection (mmdet convention): the logits have ``C + 1`` columns, background
last; the background is not re-weighted and gets the fixed weight 1.0
(``background=True``), while the C foreground weights are normalised to sum
to C.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .checks import CountsLike, as_counts, check_range
from .reduction import (REDUCTIONS, LongTailCrossEntropy,
                        reduced_cross_entropy, toolbox_loss)

GRW_REDUCTIONS = REDUCTIONS


def grw_class_weights(counts: CountsLike,
                      rho: float,
                      background: bool = False) -> Tensor:
    """Generalized re-weighting class weights (DisAlign Eq. 11).

    ``r_c = n_c / sum(n)``, ``w_c = r_c ** (-rho)``, rescaled so that
    ``sum_c w_c = C`` (C = ``len(counts)``, the weighted classes).

    Zero counts are rejected with a ``ValueError``: a class never seen in
    training would get an infinite weight. Remove the class or give it a
    count of at least 1.

    Args:
        counts: per-class training counts (or frequencies), shape (C,);
            foreground classes only for detection.
        rho: scale exponent ``rho >= 0`` (reference: 1.2 ImageNet-LT,
            0.8 LVIS, 0.2 ADE20K).
        background: append a background weight fixed at 1.0 as the last
            entry (detection, mmdet convention).

    Returns:
        Tensor: float32 weights of shape (C,) or (C + 1,) with background.
    """
    hint = 'rho=0 is plain CE, rho=1 inverse-frequency weighting.'
    rho = check_range('rho', rho, 0.0, hint=hint)
    n = as_counts(counts, allow_zero=False)
    # w_c = C * r_c^-rho / sum_k r_k^-rho = C * softmax(-rho * log n)_c:
    # the same weights, computed in log space (r^-rho overflows float64
    # for large rho at LVIS-scale count ratios)
    w = n.numel() * torch.softmax(-rho * n.log(), dim=0)
    if background:
        w = torch.cat([w, w.new_ones(1)])
    return w.to(torch.float32)


def grw_cross_entropy(logits: Tensor,
                      labels: Tensor,
                      class_weight: Tensor,
                      reduction: str = 'weighted_mean',
                      ignore_index: Optional[int] = None,
                      avg_non_ignore: bool = False,
                      weight: Optional[Tensor] = None,
                      avg_factor: Optional[float] = None) -> Tensor:
    """Class-weighted cross-entropy of GRW (DisAlign Eq. 9-11).

    :func:`lt_mm.core.reduction.reduced_cross_entropy` with the GRW weights
    (see there for the reductions). Elements whose label equals
    ``ignore_index`` are removed *before* the weights are gathered, so an
    ignore label such as 255 never indexes ``class_weight``.

    Args:
        logits: (N, C) or per-pixel (N, C, H, W).
        labels: (N,) or (N, H, W) integer labels in ``[0, C)`` or
            ``ignore_index``.
        class_weight: (C,) weights, e.g. from :func:`grw_class_weights`.
        reduction: with ``CE_i`` the per-element cross-entropy and
            ``w_i = class_weight[y_i]`` over the non-ignored elements:
            ``'weighted_mean'`` ``sum_i w_i CE_i / sum_i w_i`` (reference
            classification/detection); ``'mean'`` ``sum_i w_i CE_i / M``,
            M = all elements (mmseg semantics) or the non-ignored ones with
            ``avg_non_ignore=True``; ``'sum'``; ``'none'`` (0 at ignored
            elements). 0 when every element is ignored.
        ignore_index: label value to ignore; None ignores nothing.
        avg_non_ignore: see ``'mean'``.
        weight: optional element weights ``v_i`` (shape of ``labels``).
        avg_factor: optional denominator of ``'mean'``.

    Returns:
        Tensor: the loss (float32 scalar, or ``labels``-shaped for
        ``'none'``).
    """
    if class_weight is None:
        raise ValueError('grw_cross_entropy needs class_weight (C,), e.g. '
                         'from grw_class_weights(counts, rho).')
    return reduced_cross_entropy(
        logits,
        labels,
        class_weight,
        reduction=reduction,
        ignore_index=ignore_index,
        weight=weight,
        avg_factor=avg_factor,
        avg_non_ignore=avg_non_ignore)


@toolbox_loss(
    'GRWLoss', cls=dict(rho=1.2), seg=dict(rho=0.3), det=dict(rho=0.8))
class GRWCrossEntropy(LongTailCrossEntropy):
    """Generalized re-weighting cross-entropy (DisAlign Eq. 8-11).

    The class weights of :func:`grw_class_weights` are stored in the
    non-persistent buffer ``class_weight`` ((C,), or (C + 1,) with
    ``background``): they are derived from the counts and ``rho`` at
    construction and are deliberately not saved to (or restored from)
    checkpoints. The toolbox losses (``lt_mm.cls/det`` ``GRWLoss``,
    ``lt_mm.seg`` ``GRWCrossEntropyLoss``) are this class with the
    toolbox's count readers and defaults.

    Args:
        counts: per-class training counts, shape (C,) (foreground only for
            detection), or None with ``stats_file``/``train_ann_file``.
        rho: re-weighting exponent, ``>= 0`` (0 = plain CE; reference: 1.2
            ImageNet-LT, 0.8 LVIS, 0.2-0.3 ADE20K).
        reduction: ``'weighted_mean'`` (cls/det reference), ``'mean'``
            (seg reference, mmseg semantics), ``'sum'`` or ``'none'``.
        other arguments: see
            :class:`lt_mm.core.reduction.LongTailCrossEntropy`.
    """

    def __init__(self,
                 counts: Optional[CountsLike],
                 rho: float,
                 *,
                 stats_file: Optional[str] = None,
                 train_ann_file: Optional[str] = None,
                 num_classes: Optional[int] = None,
                 unit: str = 'images',
                 background: bool = False,
                 reduction: str = 'weighted_mean',
                 ignore_index: Optional[int] = None,
                 avg_non_ignore: bool = False,
                 loss_weight: float = 1.0,
                 loss_name: str = 'loss_ce') -> None:
        rho = check_range(
            'rho',
            rho,
            0.0,
            hint='rho=0 is plain CE, rho=1 inverse-frequency weighting.')
        super().__init__(
            counts,
            stats_file=stats_file,
            train_ann_file=train_ann_file,
            num_classes=num_classes,
            unit=unit,
            background=background,
            reduction=reduction,
            ignore_index=ignore_index,
            avg_non_ignore=avg_non_ignore,
            loss_weight=loss_weight,
            loss_name=loss_name)
        self.rho = rho
        with torch.device('cpu'):
            cw = grw_class_weights(self.counts, rho, background=background)
        self.register_buffer('class_weight', cw, persistent=False)

    def extra_repr(self) -> str:
        return f'rho={self.rho}, ' + super().extra_repr()
