"""Long-tail decode heads: any mmseg decode head with a long-tail classifier.

Instead of copying each mmseg head (the DisAlign reference copies
``FCNHead``), :func:`LTDecodeHead` builds the *stock* head class through a
mixin that

1. replaces ``conv_seg`` by a classifier of :mod:`lt_mm.seg.classifiers`
   (same parameter names and shapes, so stock checkpoints load as stage 1);
2. overrides ``cls_seg(feat)``: mmseg's heads call ``cls_seg`` with exactly
   the feature map that feeds ``conv_seg`` *before* the dropout, so the
   classifier gets both the dropped-out map (the logits' input, as in the
   stock head) and the clean map (DisAlign's confidence ``sigma(x)``, the TDE
   head direction);
3. declares ``stage2_parameter_names()`` for
   :class:`lt_mm.engine.Stage2FreezeHook`;
4. checks at build time that the decode losses' class counts match
   ``num_classes``;
5. optionally applies a post-hoc prior adjustment to the eval-mode logits
   (``posthoc=dict(type='nc_tau' | 'logit_adjust', tau=..., counts=[...] |
   stats_file=...)``, CDT Eq. 5 or logit adjustment, per pixel, pixel
   counts), the same option as the classification heads.

Config (inherit the stock config and change only the type)::

    model = dict(decode_head=dict(
        type='LTDecodeHead', head_type='FCNHead',
        classifier=dict(type='DisAlignConvSeg')))

or, with a complete head config, ``dict(type='LTDecodeHead',
head=dict(type='UPerHead', ...), classifier=...)``. Works for every head
whose ``forward`` ends in ``self.cls_seg(...)`` (FCNHead, ASPPHead,
DepthwiseSeparableASPPHead, UPerHead, PSPHead, ...).
"""
from __future__ import annotations

import copy
import inspect
from typing import Dict, List, Optional, Type, Union

import torch.nn as nn
import torch.nn.functional as F
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS
from torch import Tensor

from lt_mm.core.cdt import PosthocAdjust, PosthocMixin, build_posthoc
from lt_mm.core.stats import resolve_counts

_LT_HEAD_CLASSES: Dict[type, type] = {}


class LTDecodeHeadMixin(PosthocMixin):
    """Mixin turning a stock mmseg decode head into a long-tail head.

    Only used through :func:`lt_decode_head_class` / :func:`LTDecodeHead`.

    Post-hoc rules (:meth:`apply_posthoc`, per pixel on (N, C, H, W) with
    pixel counts) multiply or shift each class map by a constant, so
    applying them to the low-resolution logits equals applying them after
    mmseg's (linear, weights summing to one) bilinear upsampling /
    sliding-window averaging.

    Args:
        classifier (dict, optional): config of the ``conv_seg``
            replacement (a type of :mod:`lt_mm.seg.classifiers`, e.g.
            ``dict(type='DisAlignConvSeg')``). ``in_channels`` (the head's
            ``channels``) and ``num_classes`` are filled in. None keeps the
            stock ``conv_seg`` (e.g. classifier re-training with a GRW loss).
        posthoc (dict, optional): post-hoc prior adjustment of the eval-mode
            logits, ``dict(type='nc_tau' | 'logit_adjust', tau=1.0,
            counts=[...] | stats_file=PATH)`` with *pixel* counts (unit
            ``'pixels'``; ``'builtin:ade20k'`` for ADE20K):
            ``z_c / N_c ** tau`` (CDT Eq. 5,
            :func:`lt_mm.core.cdt.nc_tau_adjust`) or
            ``z_c - tau * log N_c`` (:func:`lt_mm.core.cdt.logit_adjust`).
            Built by :func:`lt_mm.core.cdt.build_posthoc`: the counts are
            the persistent buffer ``posthoc.counts`` (C,), saved in
            checkpoints; a checkpoint without it (stage 1) keeps the
            configured counts (an earlier ``prior_counts`` key loads).
            ``train_ann_file`` is refused (no segmentation annotation
            reader: write the counts with ``tools/class_stats.py``).
        *args, **kwargs: the stock head's arguments.
    """

    def __init__(self,
                 *args,
                 classifier: Optional[dict] = None,
                 posthoc: Optional[dict] = None,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.classifier_cfg = copy.deepcopy(classifier)
        self._init_posthoc(posthoc)
        self._gt_for_mask: Optional[Tensor] = None
        if classifier is not None:
            if self.out_channels != self.num_classes:
                raise ValueError(
                    f'{type(self).__name__}: long-tail classifiers need one '
                    f'output channel per class; got out_channels='
                    f'{self.out_channels}, num_classes={self.num_classes}.')
            self.conv_seg = self._build_classifier(classifier)
        self._check_losses()

    def _build_classifier(self, classifier: dict) -> nn.Module:
        if not isinstance(classifier, dict) or 'type' not in classifier:
            raise ValueError(
                f'classifier={classifier!r} must be a dict with a type, e.g. '
                "dict(type='DisAlignConvSeg').")
        cfg = copy.deepcopy(dict(classifier))
        typ = cfg['type']
        clf_cls = MODELS.get(typ) if isinstance(typ, str) else typ
        if clf_cls is None:
            raise ValueError(
                f'classifier type {typ!r} is not registered; lt_mm provides '
                "'DisAlignConvSeg', 'CausalNormConvSeg', 'TauNormConvSeg', "
                "'LWSConvSeg', 'CosineConvSeg', 'CRTConvSeg' and "
                "'NCMConvSeg' (import lt_mm.seg).")
        default_args = dict(
            in_channels=self.channels, num_classes=self.num_classes)
        if getattr(clf_cls, 'uses_head_cfg', False):
            default_args.update(
                conv_cfg=self.conv_cfg,
                norm_cfg=self.norm_cfg,
                act_cfg=self.act_cfg)
        return MODELS.build(cfg, default_args=default_args)

    def _check_losses(self) -> None:
        losses = self.loss_decode
        if not isinstance(losses, nn.ModuleList):
            losses = [losses]
        for loss in losses:
            n = getattr(loss, 'num_classes', None)
            if n is not None and n != self.num_classes:
                raise ValueError(
                    f'{type(loss).__name__} ({loss.loss_name}) has class '
                    f'counts for {n} classes but the decode head has '
                    f'num_classes={self.num_classes}: the statistics belong '
                    'to another dataset. Create them for this one with '
                    'python tools/class_stats.py CONFIG --out PATH.')

    # ------------------------------------------------------------ posthoc
    def _init_posthoc(self, posthoc: Optional[dict]) -> None:
        """Build the post-hoc module (build time): core
        :func:`lt_mm.core.cdt.build_posthoc` with the pixel-count reader."""
        what = type(self).__name__

        def read_counts(counts=None, stats_file=None, train_ann_file=None):
            if train_ann_file is not None:
                raise ValueError(
                    f'train_ann_file={train_ann_file!r} is not read for '
                    'segmentation (pixel counts come from the label maps); '
                    'write them with python tools/class_stats.py CONFIG '
                    '--out PATH and pass stats_file=PATH (ADE20K: '
                    "stats_file='builtin:ade20k') or counts=[...].")
            return resolve_counts(
                counts,
                stats_file,
                num_classes=self.num_classes,
                unit='pixels')

        # the counts are the buffer posthoc.counts: they travel in the
        # checkpoint (the inference statistics)
        self.posthoc: Optional[PosthocAdjust] = build_posthoc(
            posthoc, read_counts, what)

    def _load_from_state_dict(self, state_dict, prefix, *args,
                              **kwargs) -> None:
        """``prior_counts`` (an earlier name) loads as ``posthoc.counts``."""
        if prefix + 'prior_counts' in state_dict:
            state_dict[prefix +
                       'posthoc.counts'] = state_dict.pop(prefix +
                                                          'prior_counts')
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ------------------------------------------------------------ forward
    def cls_seg(self, feat: Tensor) -> Tensor:
        """Classify each pixel: ``conv_seg(dropout(feat), feat=feat)``.

        In eval mode the configured post-hoc adjustment
        (:meth:`apply_posthoc`) is applied to the logits.

        Args:
            feat: the feature map that feeds ``conv_seg`` (before the
                head's dropout), (N, D, H, W).

        Returns:
            Tensor: logits (N, C, H, W).
        """
        x = self.dropout(feat) if self.dropout is not None else feat
        if self.classifier_cfg is None:
            out = self.conv_seg(x)
        else:
            valid = None
            if getattr(self.conv_seg, 'needs_valid_mask', False):
                valid = self._valid_mask(feat)
            out = self.conv_seg(x, feat=feat, valid=valid)
        if self.posthoc is not None and not self.training:
            out = self.apply_posthoc(out)
        return out

    def _valid_mask(self, feat: Tensor) -> Optional[Tensor]:
        """Non-ignored pixels at the feature resolution, (N, h, w) bool.

        The ground truth of the current ``loss`` call is resized with
        nearest-neighbour sampling; None outside ``loss``.
        """
        gt = self._gt_for_mask
        if gt is None or not self.training:
            return None
        gt = F.interpolate(
            gt.float(), size=feat.shape[2:], mode='nearest').squeeze(1)
        return (gt != self.ignore_index).to(feat.device)

    def loss(self, inputs, batch_data_samples, train_cfg) -> dict:
        """Stock ``loss``; keeps the ground truth for the classifier's
        valid-pixel mask while it runs."""
        if self.classifier_cfg is not None and getattr(
                self.conv_seg, 'needs_valid_mask', False):
            self._gt_for_mask = self._stack_batch_gt(batch_data_samples)
        try:
            return super().loss(inputs, batch_data_samples, train_cfg)
        finally:
            self._gt_for_mask = None

    def stage2_parameter_names(self) -> List[str]:
        """Parameters trained in stage 2 (relative to this head).

        Read by :class:`lt_mm.engine.Stage2FreezeHook`; empty for one-stage
        (TDE), post-hoc (tau-norm) and stock classifiers.
        """
        names = getattr(self.conv_seg, 'stage2_parameter_names', list)()
        return [f'conv_seg.{n}' for n in names]


def lt_decode_head_class(base: Type[BaseDecodeHead]) -> type:
    """Return the long-tail subclass ``LT<Base>`` of a stock decode head.

    Args:
        base: an mmseg decode head class (subclass of ``BaseDecodeHead``).

    Returns:
        type: ``class LT<Base>(LTDecodeHeadMixin, base)``, created once per
        base and cached (also exposed as an attribute of this module so that
        models pickle by reference).
    """
    if not (inspect.isclass(base) and issubclass(base, BaseDecodeHead)):
        raise ValueError(
            f'{base!r} is not an mmseg decode head (a subclass of '
            'BaseDecodeHead).')
    if issubclass(base, LTDecodeHeadMixin):
        return base
    cls = _LT_HEAD_CLASSES.get(base)
    if cls is None:
        name = f'LT{base.__name__}'
        doc = (f'{base.__name__} with a long-tail classifier (see '
               f':class:`{__name__}.LTDecodeHeadMixin`).')
        cls = type(base)(name, (LTDecodeHeadMixin, base), {
            '__module__': __name__,
            '__qualname__': name,
            '__doc__': doc
        })
        _LT_HEAD_CLASSES[base] = cls
        globals().setdefault(name, cls)
    return cls


@MODELS.register_module()
def LTDecodeHead(classifier: Optional[dict] = None,
                 posthoc: Optional[dict] = None,
                 head: Optional[dict] = None,
                 head_type: Optional[Union[str, type]] = None,
                 **kwargs) -> nn.Module:
    """Build any mmseg decode head with a long-tail ``conv_seg``.

    Registered in mmseg's MODELS as ``'LTDecodeHead'``.

    Args:
        classifier: ``conv_seg`` replacement config, e.g.
            ``dict(type='DisAlignConvSeg')`` (DisAlign Eq. 5),
            ``dict(type='CausalNormConvSeg', alpha=1.5)`` (TDE Eq. 7-8),
            ``dict(type='TauNormConvSeg', tau=1.0)`` (Decoupling Eq. 3),
            ``dict(type='LWSConvSeg')`` (Decoupling Eq. 4),
            ``dict(type='CosineConvSeg')`` (cosine classifier),
            ``dict(type='CRTConvSeg')`` (Decoupling cRT),
            ``dict(type='NCMConvSeg')`` (Decoupling NCM); None keeps the
            stock ``conv_seg``.
        posthoc: post-hoc prior adjustment of the test logits,
            ``dict(type='nc_tau' | 'logit_adjust', tau=..., counts=[...] |
            stats_file=...)`` (pixel counts; see
            :class:`LTDecodeHeadMixin`).
        head: full config of the stock head (``dict(type='FCNHead', ...)``).
        head_type: alternatively the stock head type, with its arguments
            given flat in ``kwargs`` -- convenient when inheriting a stock
            config, whose ``decode_head`` keys then merge in.
        **kwargs: the stock head's arguments (with ``head_type``).

    Returns:
        nn.Module: an instance of ``LT<HeadType>`` (a subclass of the stock
        head).
    """
    if (head is None) == (head_type is None):
        raise ValueError(
            'LTDecodeHead needs exactly one of head=dict(type=...) or '
            "head_type='FCNHead' (with the head's arguments given flat).")
    if head is not None:
        if kwargs:
            raise ValueError(
                f'LTDecodeHead got head=dict(...) and the extra arguments '
                f'{sorted(kwargs)}; put them inside head (or use head_type '
                'with flat arguments).')
        cfg = copy.deepcopy(dict(head))
        if 'type' not in cfg:
            raise ValueError('head must have a type, e.g. '
                             "head=dict(type='FCNHead', ...).")
        head_type = cfg.pop('type')
    else:
        cfg = kwargs
    base = MODELS.get(head_type) if isinstance(head_type, str) else head_type
    if base is None:
        raise ValueError(f'decode head type {head_type!r} is not registered '
                         'in mmseg MODELS.')
    if base is LTDecodeHead:
        raise ValueError('LTDecodeHead cannot wrap itself.')
    return lt_decode_head_class(base)(
        classifier=classifier, posthoc=posthoc, **cfg)
