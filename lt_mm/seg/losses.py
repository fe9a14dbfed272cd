"""Long-tail pixel losses for mmseg decode heads (mmseg ``MODELS``).

Generated from :mod:`lt_mm.core` (:func:`lt_mm.core.reduction.toolbox_losses`:
the core owns the formulas and every reduction); this file only gives
mmseg's defaults (``reduction='mean'`` over all pixels, ``ignore_index=255``,
``unit='pixels'``, ``loss_name='loss_ce'`` so they replace mmseg's
``CrossEntropyLoss`` in logs) and the epoch source, and registers the
classes (also under their first names ``GRWCrossEntropyLoss`` and
``CDTCrossEntropyLoss``). Call: ``loss(cls_score, label, weight=None,
ignore_index=255, ...)`` with ``cls_score`` (N, C, H, W) and ``label``
(N, H, W). Counts: ``counts=[...]`` or ``stats_file=`` (a
``lt_mm.class_stats/v1`` file in ``'pixels'``, e.g. ``'builtin:ade20k'`` or
the output of ``tools/class_stats.py``), checked when the loss is built.

* ``GRWLoss`` -- DisAlign's generalized re-weighting (Eq. 11) with pixel
  frequencies; ``rho`` 0.3 (appendix B.2) / 0.2 (released ADE20K config).
  Ignored pixels are removed before any weight is gathered (mmseg's
  ``class_weight`` path indexes the weights with 255).
* ``CDTLoss`` -- class-dependent temperatures (CDT Eq. 3) with pixel counts;
  no published segmentation ``gamma`` (CDT grids: [0, 0.4] CIFAR-10,
  [0, 0.1] iNaturalist). The ``MessageHub`` epoch stays 0 under an
  ``IterBasedTrainLoop``: keep ``start_epoch=0`` there.
"""
from __future__ import annotations

from mmengine.logging import MessageHub
from mmseg.registry import MODELS

from lt_mm.core.reduction import toolbox_losses


def _epoch(self) -> int:
    return int(MessageHub.get_current_instance().get_info('epoch') or 0)


LOSSES = toolbox_losses(
    'seg',
    __name__,
    current_epoch=_epoch,
    unit='pixels',
    reduction='mean',
    ignore_index=255,
    avg_non_ignore=False)
for _name, _cls in LOSSES.items():
    MODELS.register_module(
        name=[_name, _name.replace('Loss', 'CrossEntropyLoss')], module=_cls)
GRWLoss = GRWCrossEntropyLoss = LOSSES['GRWLoss']
CDTLoss = CDTCrossEntropyLoss = LOSSES['CDTLoss']
