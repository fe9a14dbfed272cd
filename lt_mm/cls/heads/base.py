"""Shared machinery of the lt_mm classification heads.

Every head splits its work into

* :meth:`LongTailHeadMixin.train_logits` -- what the loss sees;
* :meth:`LongTailHeadMixin.test_logits` -- the inference rule of the method
  (TDE Eq. 8, tau-norm Eq. 3, NCM, DisAlign Eq. 5...);
* :meth:`LongTailHeadMixin.apply_posthoc` -- an optional post-hoc prior
  adjustment of the test logits: CDT's rule ``z_c / N_c ** tau`` (CDT
  Eq. 5, :func:`lt_mm.core.cdt.nc_tau_adjust`) or logit adjustment
  ``z_c - tau * log N_c`` (:func:`lt_mm.core.cdt.logit_adjust`).

``forward`` returns the training logits in training mode and the adjusted
test logits in eval mode, so mmpretrain's ``ClsHead.loss`` / ``predict``
and ``ImageClassifier(mode='tensor')`` work unchanged. The analysis tool
(``tools/analysis/sweep_posthoc.py``) calls the three steps on cached
features.
"""
from __future__ import annotations

import copy
from typing import Callable, Dict, Hashable, Optional, Sequence, Tuple

from mmpretrain.models.heads import ClsHead, LinearClsHead
from mmpretrain.registry import MODELS
from torch import Tensor

from lt_mm.core._utils import keep_missing_buffers
from lt_mm.core.cdt import PosthocAdjust, PosthocMixin, build_posthoc
from lt_mm.core.decoupling import CosineClassifier, WeightCache, cache_enabled
from ..counts import resolve_cls_counts


class LongTailHeadMixin(PosthocMixin):
    """Train/test logits split and post-hoc prior adjustment
    (:meth:`apply_posthoc` of :class:`lt_mm.core.cdt.PosthocMixin`).

    Use before an mmpretrain head class in the bases; call
    :meth:`_init_long_tail` at the end of ``__init__``.
    """

    #: sub-modules whose constructor initialisation must survive the
    #: head's ``init_cfg`` (e.g. DisAlign's confidence layer is an
    #: ``nn.Linear`` that ``Normal(layer='Linear')`` would overwrite).
    _keep_init: Tuple[str, ...] = ()
    #: buffers that keep their configured / initial value, without a
    #: missing-key warning, when a checkpoint lacks them (a stage-1
    #: checkpoint has no class means)
    _optional_buffers: Tuple[str, ...] = ()

    def _init_long_tail(self, posthoc: Optional[dict]) -> None:
        loss_classes = getattr(self.loss_module, 'num_classes', None)
        if isinstance(loss_classes, int) and \
                loss_classes != self.num_classes:
            raise ValueError(
                f'the loss {type(self.loss_module).__name__} has class '
                f'counts for {loss_classes} classes but the head has '
                f'num_classes={self.num_classes}; use the statistics of the '
                'dataset the model is trained on.')
        what = f'{type(self).__name__}'

        def read_counts(counts=None, stats_file=None, train_ann_file=None):
            return resolve_cls_counts(
                counts,
                stats_file,
                train_ann_file,
                self.num_classes,
                what=what)

        # the counts are the buffer posthoc.counts: they travel in the
        # checkpoint (the inference statistics)
        self.posthoc: Optional[PosthocAdjust] = build_posthoc(
            posthoc, read_counts, what)

    # -- cached normalised weights (eval mode) -----------------------------
    def _cached(self, name: str, sources: Sequence[Tensor], extra: Hashable,
                fn: Callable[[], Tensor]) -> Tensor:
        """``fn()``, cached in eval mode while ``sources`` are unchanged.

        See :class:`lt_mm.core.decoupling.WeightCache`: the entry is
        recomputed when a source changes (optimizer step,
        ``load_state_dict``, in-place edit) and dropped on ``train()``.
        """
        if not cache_enabled(self, sources):
            return fn()
        cache = self.__dict__.get('_lt_weight_cache')
        if cache is None:
            cache = self.__dict__['_lt_weight_cache'] = WeightCache()
        return cache.get(name, sources, extra, fn)

    def train(self, mode: bool = True):
        """Switch mode and drop the cached normalised weights."""
        cache = self.__dict__.get('_lt_weight_cache')
        if cache is not None:
            cache.clear()
        return super().train(mode)

    # -- the three steps ----------------------------------------------------
    def classifier_logits(self, x: Tensor) -> Tensor:
        """Logits of the (stage-1) classifier ``fc``: (N, D) -> (N, C)."""
        return self.fc(x)

    def train_logits(self, x: Tensor) -> Tensor:
        """Logits for the loss, (N, D) -> (N, C)."""
        return self.classifier_logits(x)

    def test_logits(self, x: Tensor) -> Tensor:
        """Logits of the method's inference rule, before post-hoc
        adjustment: (N, D) -> (N, C)."""
        return self.train_logits(x)

    # -- mmpretrain interface -------------------------------------------------
    def forward(self, feats: Tuple[Tensor, ...]) -> Tensor:
        """Training logits in train mode, adjusted test logits in eval
        mode. ``feats``: tuple of (N, D) neck outputs; returns (N, C)."""
        x = self.pre_logits(feats)
        if self.training:
            return self.train_logits(x)
        return self.apply_posthoc(self.test_logits(x))

    def _load_from_state_dict(self, state_dict, prefix, *args,
                              **kwargs) -> None:
        if prefix + 'prior_counts' in state_dict:  # the earlier name
            state_dict[prefix +
                       'posthoc.counts'] = state_dict.pop(prefix +
                                                          'prior_counts')
        keep_missing_buffers(self, state_dict, prefix, self._optional_buffers)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def init_weights(self) -> None:
        """Run ``init_cfg`` but keep the sub-modules of ``_keep_init``."""
        saved: Dict[str, dict] = {
            name: copy.deepcopy(getattr(self, name).state_dict())
            for name in self._keep_init
        }
        super().init_weights()
        for name, state in saved.items():
            getattr(self, name).load_state_dict(state)


@MODELS.register_module()
class LTLinearClsHead(LongTailHeadMixin, LinearClsHead):
    """mmpretrain's ``LinearClsHead`` with an optional post-hoc adjustment.

    Same parameters as ``LinearClsHead`` (``fc.weight``, ``fc.bias``), so a
    stock mmpretrain checkpoint loads. Use it for one-stage methods (CDT
    loss, GRW loss) and for the post-hoc rules of CDT (Eq. 5,
    ``posthoc=dict(type='nc_tau', tau=...)``) and logit adjustment
    (``posthoc=dict(type='logit_adjust', tau=...)``) on a stage-1 model.

    Args:
        num_classes: C.
        in_channels: D.
        posthoc: ``dict(type='nc_tau'|'logit_adjust', tau=1.0, counts=[...]
            | stats_file=PATH | train_ann_file=PATH)`` or None.
        **kwargs: ``LinearClsHead`` arguments (``loss``, ``topk``,
            ``init_cfg``...).
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 posthoc: Optional[dict] = None,
                 **kwargs) -> None:
        super().__init__(num_classes, in_channels, **kwargs)
        self._init_long_tail(posthoc)


@MODELS.register_module()
class CosineClsHead(LongTailHeadMixin, ClsHead):
    """Cosine classifier head ``y_c = s * cos(x, w_c)`` (no bias).

    The normalised classifier of the starred (*) rows of DisAlign Table 1
    (:class:`lt_mm.core.decoupling.CosineClassifier`), parameter
    ``fc.weight`` (and ``fc.scale`` when learnable). Stage 1 of
    :class:`~lt_mm.cls.heads.DisAlignCosineClsHead`.

    Args:
        num_classes: C.
        in_channels: D.
        scale: s (16 as TDE; DisAlign's detection head uses 20 learnable).
        learn_scale: learn s.
        posthoc: see :class:`LTLinearClsHead`.
        **kwargs: ``ClsHead`` arguments.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 scale: float = 16.0,
                 learn_scale: bool = False,
                 posthoc: Optional[dict] = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.in_channels = int(in_channels)
        self.fc = CosineClassifier(in_channels, num_classes, scale,
                                   learn_scale)
        self._init_long_tail(posthoc)
