"""Box-classification losses for long-tailed detection (mmdet ``MODELS``).

Generated from :mod:`lt_mm.core` (:func:`lt_mm.core.reduction.toolbox_losses`:
the core owns the formulas and every reduction); this file only fixes
``background=True`` (mmdet's ``cls_score`` is (N, C + 1), background LAST,
labels in ``[0, C]``), gives the count reader of LVIS/COCO training
annotations (``train_ann_file``, :func:`lt_mm.det.counts.resolve_det_counts`)
and the epoch source, and registers the classes. The counts cover the C
foreground classes; with ``num_classes`` given, counts of another
vocabulary or counts that include the background fail when the loss is
built, and so do counts of another number of classes than the
``num_classes`` of the box head that builds the loss (``loss_cls``).
Call: ``loss(cls_score, labels, label_weights, avg_factor=...,
reduction_override=...)``; the label weights are the element weights.

* ``GRWLoss`` -- DisAlign's generalized re-weighting (Eq. 11) on the
  foreground classes, background weight 1 ("generalized re-weight is only
  used for foreground categories", Sec. C.2); ``'weighted_mean'``
  ``sum v w CE / sum v w`` (the reference; mmdet's ``avg_factor`` is not
  used); ``rho = 0.8`` on LVIS v0.5 and v1.
* ``CDTLoss`` -- class-dependent temperatures (CDT Eq. 3) on the
  foreground logits, background temperature 1; ``'mean'``
  ``sum v CE / avg_factor`` (mmdet); counts in ``'instances'`` (CDT's N_c).

``count_unit=`` is the deprecated name of ``unit=``.
"""
from __future__ import annotations

from mmdet.registry import MODELS
from mmengine.logging import MessageHub

from lt_mm.core.reduction import toolbox_losses
from ._head_context import check_loss_in_head
from .counts import resolve_det_counts


def _counts(self, counts, stats_file, train_ann_file, num_classes, unit, what):
    """Foreground counts from ``counts | stats_file | train_ann_file``;
    built by a box head, they must cover its ``num_classes``."""
    out = resolve_det_counts(counts, stats_file, train_ann_file, num_classes,
                             unit, what)
    check_loss_in_head(len(out), what)
    return out


def _epoch(self) -> int:
    return int(MessageHub.get_current_instance().get_info('epoch') or 0)


LOSSES = toolbox_losses(
    'det',
    __name__,
    _counts,
    _epoch,
    renamed=dict(count_unit='unit'),
    background=True)
for _name, _cls in LOSSES.items():
    MODELS.register_module(name=_name, module=_cls)
GRWLoss, CDTLoss = LOSSES['GRWLoss'], LOSSES['CDTLoss']
