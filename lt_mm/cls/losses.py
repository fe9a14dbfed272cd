"""Long-tail classification losses for mmpretrain heads (``MODELS``).

Generated from :mod:`lt_mm.core` (:func:`lt_mm.core.reduction.toolbox_losses`:
the core owns the formulas and every reduction); this file only gives the
count reader of an ImageNet-LT style training list (``train_ann_file``,
:func:`lt_mm.cls.counts.resolve_cls_counts`, counts in ``'images'``) and
the epoch source, and registers the classes. Call: ``loss(cls_score,
label, weight=None, avg_factor=None, reduction_override=None)`` with hard
(N,) labels.

* ``GRWLoss`` -- DisAlign's generalized re-weighting (Zhang et al., CVPR
  2021, Eq. 8-11), :class:`lt_mm.core.grw.GRWCrossEntropy`; ``rho = 1.2``
  (linear) / ``1.5`` (cosine classifier) on ImageNet-LT (Sec. A.1).
* ``CDTLoss`` -- class-dependent temperatures (Ye et al., CDT Eq. 3),
  :class:`lt_mm.core.cdt.CDTCrossEntropy`; ``start_epoch`` is compared
  with mmengine's ``MessageHub`` epoch (set by ``RuntimeInfoHook``; 0
  outside a runner).
"""
from __future__ import annotations

from mmengine.logging import MessageHub
from mmpretrain.registry import MODELS

from lt_mm.core.reduction import toolbox_losses
from .counts import resolve_cls_counts


def _counts(self, counts, stats_file, train_ann_file, num_classes, unit, what):
    """Image counts from ``counts | stats_file | train_ann_file``."""
    if unit != 'images':
        raise ValueError(f"{what}: unit={unit!r}; classification counts "
                         "are images (unit='images').")
    return resolve_cls_counts(
        counts, stats_file, train_ann_file, num_classes, what=what)


def _epoch(self) -> int:
    return int(MessageHub.get_current_instance().get_info('epoch') or 0)


LOSSES = toolbox_losses('cls', __name__, _counts, _epoch)
for _name, _cls in LOSSES.items():
    MODELS.register_module(name=_name, module=_cls)
GRWLoss, CDTLoss = LOSSES['GRWLoss'], LOSSES['CDTLoss']
