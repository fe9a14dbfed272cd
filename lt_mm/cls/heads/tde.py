"""Causal-norm classifier with TDE inference (Tang et al., NeurIPS 2020).

One-stage method: train the de-confounded classifier (Eq. 7) with plain
cross-entropy while the moving-average head direction ``d`` is updated at
every training forward; test with the total direct effect (Eq. 8), whose
strength ``alpha`` is a test-time knob
(``--cfg-options model.head.alpha=2.0``).
"""
from __future__ import annotations

from typing import Optional

from mmpretrain.models.heads import ClsHead
from mmpretrain.registry import MODELS
from torch import Tensor

from lt_mm.core.causal_norm import CAUSAL_NORM_ARGS, CausalNormClassifier
from lt_mm.core.checks import check_range, pop_args
from .base import LongTailHeadMixin


@MODELS.register_module()
class CausalNormClsHead(LongTailHeadMixin, ClsHead):
    """De-confounded (causal-norm) head with TDE inference (TDE Eq. 7-8).

    Parameters / buffers: ``fc.weight`` (C, D) and ``fc.head_direction``
    (D,) -- a persistent buffer, so ``d`` travels in the checkpoint.
    ImageNet-LT values (TDE Sec. 5): ``num_heads=2``, ``tau=16``,
    ``gamma=1/32``, ``alpha=3.0``, ``momentum=0.9``.

    Args:
        num_classes: C.
        in_channels: D (divisible by ``num_heads``).
        posthoc: see :class:`~lt_mm.cls.heads.LTLinearClsHead`.
        **kwargs: the options of
            :class:`lt_mm.core.causal_norm.CausalNormClassifier`
            (``num_heads``, ``tau``, ``gamma``, ``alpha`` -- here 3.0,
            ``momentum`` -- here 0.9, ``direction_update``,
            ``use_tde_at_test``) and the ``ClsHead`` arguments (``loss``,
            ``topk``...).
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 posthoc: Optional[dict] = None,
                 **kwargs) -> None:
        options = pop_args(kwargs, CAUSAL_NORM_ARGS,
                           dict(alpha=3.0, momentum=0.9))
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.in_channels = int(in_channels)
        self.fc = CausalNormClassifier(in_channels, num_classes, **options)
        self._init_long_tail(posthoc)

    @property
    def alpha(self) -> float:
        """TDE strength used at test."""
        return self.fc.alpha

    @alpha.setter
    def alpha(self, value: float) -> None:
        self.fc.alpha = check_range('alpha', value, 0.0)

    def train_logits(self, x: Tensor) -> Tensor:
        """Causal-norm logits (Eq. 7); in training mode also updates the
        head direction with the batch mean of ``x`` (N, D)."""
        if self.training:
            self.fc.update_head_direction(x)
        return self.fc(x)

    def test_logits(self, x: Tensor, alpha: Optional[float] = None) -> Tensor:
        """TDE logits (Eq. 8), (N, D) -> (N, C); ``alpha`` overrides
        :attr:`alpha` (a zero head direction warns once, in core)."""
        return self.fc.predict(x, alpha)
