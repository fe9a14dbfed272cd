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
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .checks import CountsLike, as_counts, check_choice, check_range

GRW_REDUCTIONS = ('weighted_mean', 'mean', 'sum', 'none')


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
    r = n / n.sum()
    w = r.pow(-rho)
    w = w * (n.numel() / w.sum())
    if background:
        w = torch.cat([w, w.new_ones(1)])
    return w.to(torch.float32)


def grw_cross_entropy(logits: Tensor,
                      labels: Tensor,
                      class_weight: Tensor,
                      reduction: str = 'weighted_mean',
                      ignore_index: int = -100,
                      avg_non_ignore: bool = False) -> Tensor:
    """Class-weighted cross-entropy of GRW (DisAlign Eq. 9-11).

    Elements whose label equals ``ignore_index`` are removed *before* the
    weights are gathered, so an ignore label such as 255 never indexes
    ``class_weight``.

    Args:
        logits: (N, C) or per-pixel (N, C, H, W).
        labels: (N,) or (N, H, W) integer labels in ``[0, C)`` or
            ``ignore_index``.
        class_weight: (C,) weights, e.g. from :func:`grw_class_weights`.
        reduction: with ``CE_i`` the per-element cross-entropy and
            ``w_i = class_weight[y_i]`` over the non-ignored elements:

            * ``'weighted_mean'``: ``sum_i w_i CE_i / sum_i w_i``
              (reference classification/detection; ``F.cross_entropy``
              with ``weight=`` and ``reduction='mean'``);
            * ``'mean'``: ``sum_i w_i CE_i / M`` with M the number of all
              elements, ignored ones counted as 0 (mmseg semantics), or,
              with ``avg_non_ignore=True``, the number of non-ignored ones
              (reference segmentation);
            * ``'sum'``: ``sum_i w_i CE_i``;
            * ``'none'``: ``w_i CE_i`` per element with 0 at ignored
              elements, shape of ``labels``.

            When every element is ignored, the reduced loss is 0.
        ignore_index: label value to ignore.
        avg_non_ignore: see ``'mean'``.

    Returns:
        Tensor: the loss (float32 scalar, or ``labels``-shaped for
        ``'none'``).
    """
    check_choice('reduction', reduction, GRW_REDUCTIONS)
    if logits.dim() < 2:
        raise ValueError(f'logits must be (N, C) or (N, C, H, W), got '
                         f'shape {tuple(logits.shape)}.')
    num_classes = logits.shape[1]
    expected = logits.shape[:1] + logits.shape[2:]
    if labels.shape != expected:
        raise ValueError(
            f'labels have shape {tuple(labels.shape)} but logits have '
            f'shape {tuple(logits.shape)}: expected labels of shape '
            f'{tuple(expected)}.')
    if class_weight.dim() != 1 or class_weight.numel() != num_classes:
        raise ValueError(
            f'class_weight has shape {tuple(class_weight.shape)} but the '
            f'logits have {num_classes} classes. For detection build the '
            'weights with background=True so the background column '
            '(last) gets weight 1.')
    flat_logits = logits.movedim(1, -1).reshape(-1, num_classes)
    flat_labels = labels.reshape(-1).long()
    valid = flat_labels != ignore_index
    # Remove ignored elements first: never index class_weight with them.
    vlogits = flat_logits[valid]
    vlabels = flat_labels[valid]
    ce = F.cross_entropy(vlogits.float(), vlabels, reduction='none')
    w = class_weight.to(device=ce.device, dtype=ce.dtype)[vlabels]
    wce = w * ce
    if reduction == 'none':
        out = ce.new_zeros(flat_labels.shape).masked_scatter(valid, wce)
        return out.reshape(labels.shape)
    total = wce.sum()
    if reduction == 'sum':
        return total
    if reduction == 'weighted_mean':
        # tiny clamp: exact whenever a weight is present, 0 if none is.
        return total / w.sum().clamp_min(torch.finfo(w.dtype).tiny)
    # 'mean' (mmseg semantics)
    if avg_non_ignore:
        denom = valid.sum().to(total.dtype).clamp_min(1.0)
    else:
        denom = float(max(flat_labels.numel(), 1))
    return total / denom


class GRWCrossEntropy(nn.Module):
    """Generalized re-weighting cross-entropy (DisAlign Eq. 8-11).

    The class weights of :func:`grw_class_weights` are stored in the
    non-persistent buffer ``class_weight``: they are derived from
    ``counts`` and ``rho`` at construction and are deliberately not saved to
    (or restored from) checkpoints.

    Args:
        counts: per-class training counts, shape (C,) (foreground only for
            detection).
        rho: re-weighting exponent, ``>= 0``.
        background: logits have a last background column with weight 1.0.
        reduction: ``'weighted_mean'`` (cls/det reference), ``'mean'``
            (seg reference, mmseg semantics), ``'sum'`` or ``'none'``.
        ignore_index: label to ignore (e.g. 255 for segmentation).
        avg_non_ignore: for ``'mean'``: divide by the number of non-ignored
            elements instead of all elements.
        loss_weight: multiplier of the returned loss.
    """

    def __init__(self,
                 counts: CountsLike,
                 rho: float,
                 background: bool = False,
                 reduction: str = 'weighted_mean',
                 ignore_index: int = -100,
                 avg_non_ignore: bool = False,
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        check_choice('reduction', reduction, GRW_REDUCTIONS)
        self.rho = check_range('rho', rho, 0.0)
        self.background = bool(background)
        self.reduction = reduction
        self.ignore_index = int(ignore_index)
        self.avg_non_ignore = bool(avg_non_ignore)
        self.loss_weight = check_range('loss_weight', loss_weight)
        self.register_buffer(
            'class_weight',
            grw_class_weights(counts, rho, background=background),
            persistent=False)

    @property
    def num_classes(self) -> int:
        """Number of logit columns expected (C, or C + 1 with bg)."""
        return self.class_weight.numel()

    def forward(self,
                logits: Tensor,
                labels: Tensor,
                reduction: Optional[str] = None) -> Tensor:
        """Compute the GRW loss.

        Args:
            logits: (N, C') or (N, C', H, W), C' = :attr:`num_classes`.
            labels: (N,) or (N, H, W).
            reduction: override of the constructor's ``reduction``.

        Returns:
            Tensor: the loss times ``loss_weight``.
        """
        loss = grw_cross_entropy(
            logits,
            labels,
            self.class_weight,
            reduction=reduction or self.reduction,
            ignore_index=self.ignore_index,
            avg_non_ignore=self.avg_non_ignore)
        return loss * self.loss_weight

    def extra_repr(self) -> str:
        return (f'num_classes={self.num_classes}, rho={self.rho}, '
                f'background={self.background}, '
                f'reduction={self.reduction!r}, '
                f'ignore_index={self.ignore_index}')
