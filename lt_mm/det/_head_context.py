"""Build-time checks of lt_mm modules against the mmdet box head that
builds them.

mmdet's ``BBoxHead.__init__`` builds ``loss_cls`` and then ``fc_cls`` from
``cls_predictor_cfg`` with ``in_features`` / ``out_features`` only: a
classifier layer or a loss does not learn the head's ``num_classes``, nor
that the loss uses custom classification channels (``SeesawLoss``: C class
logits followed by two objectness logits). Both are in the head under
construction, one of the callers of the layer's / loss's ``__init__``;
:func:`building_bbox_head` finds it there, so that lt_mm's box classifiers
and losses fail when they are built inside a head they do not fit (for
every ``BBoxHead`` subclass, Cascade R-CNN stages included), instead of
calibrating the wrong columns or failing at the first loss call.
"""
from __future__ import annotations

import sys
from typing import Any, Optional

#: how many callers are searched for the head (the layer / loss is built a
#: dozen frames below ``BBoxHead.__init__``: registry, defaults, mixins)
_MAX_DEPTH = 64


def building_bbox_head() -> Optional[Any]:
    """The mmdet ``BBoxHead`` whose ``__init__`` is building the caller.

    Returns:
        The head (``num_classes`` set, ``loss_cls`` set once it is built),
        or None when the caller is not built by a box head (e.g. a layer
        or loss built on its own).
    """
    from mmdet.models.roi_heads.bbox_heads import BBoxHead
    frame = sys._getframe(1)
    try:
        for _ in range(_MAX_DEPTH):
            if frame is None:
                return None
            if frame.f_code.co_name == '__init__':
                obj = frame.f_locals.get('self')
                if isinstance(obj, BBoxHead) and hasattr(obj, 'num_classes'):
                    return obj
            frame = frame.f_back
        return None
    finally:
        del frame


def check_classifier_in_head(out_features: int, what: str) -> None:
    """Refuse a box classifier built with other than ``num_classes + 1``
    outputs (background last) by the box head building it.

    Args:
        out_features: the ``out_features`` the head passes.
        what: the layer, for the message.

    Raises:
        ValueError: the head's loss uses custom classification channels
            (mmdet ``custom_cls_channels``, e.g. ``SeesawLoss``) or a
            custom activation, or ``out_features != num_classes + 1``.
    """
    head = building_bbox_head()
    if head is None:
        return
    c = int(head.num_classes)
    loss = getattr(head, 'loss_cls', None)
    loss_name = type(loss).__name__ if loss is not None else 'loss_cls'
    custom = bool(getattr(loss, 'custom_cls_channels', False))
    activation = bool(getattr(loss, 'custom_activation', False))
    if int(out_features) == c + 1 and not custom and not activation:
        return
    if custom or activation:
        why = (f'its loss_cls {loss_name} uses custom classification '
               f'channels (mmdet custom_cls_channels={custom}, '
               f'custom_activation={activation}: '
               f'get_cls_channels({c}) = {out_features} columns; '
               'SeesawLoss: the C class logits followed by two objectness '
               'logits, with its own activation)')
    else:
        why = f'it passes out_features={out_features}'
    raise ValueError(
        f'{what} in {type(head).__name__} (num_classes={c}): {why}, but '
        f'{what} needs num_classes + 1 = {c + 1} softmax columns with the '
        'background last and would calibrate / rescale the wrong columns. '
        f'Use a softmax loss_cls (CrossEntropyLoss, GRWLoss, CDTLoss) with '
        f'{what}, or keep {loss_name} with the stock '
        "cls_predictor_cfg=dict(type='Linear').")


def check_loss_in_head(num_counted: int, what: str) -> None:
    """Refuse a classification loss whose class counts cover another
    number of classes than the box head building it.

    Args:
        num_counted: C of the loss (its foreground counts).
        what: the loss, for the message.

    Raises:
        ValueError: ``num_counted != head.num_classes``.
    """
    head = building_bbox_head()
    if head is None or int(num_counted) == int(head.num_classes):
        return
    raise ValueError(
        f'{what} has class counts for {num_counted} classes but the box '
        f'head {type(head).__name__} has num_classes={head.num_classes}: '
        'the loss_cls counts must cover exactly the foreground classes of '
        'the head (background excluded). Give both the number of classes '
        'of the training data: set the head num_classes to it and take '
        'the counts from the same data (counts=[...] with one entry per '
        'class, stats_file= written by python tools/class_stats.py CONFIG '
        '--out PATH, or train_ann_file= the training json).')
