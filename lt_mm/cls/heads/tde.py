"""Causal-norm classifier with TDE inference (Tang et al., NeurIPS 2020).

One-stage method: train the de-confounded classifier (Eq. 7) with plain
cross-entropy while the moving-average head direction ``d`` is updated at
every training forward; test with the total direct effect (Eq. 8), whose
strength ``alpha`` is a test-time knob
(``--cfg-options model.head.alpha=2.0``).
"""
from __future__ import annotations

from typing import Optional

import torch
from mmengine.logging import MMLogger
from mmpretrain.models.heads import ClsHead
from mmpretrain.registry import MODELS
from torch import Tensor

from lt_mm.core.causal_norm import CausalNormClassifier
from lt_mm.core.checks import check_range
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
        num_heads: K.
        tau: logit scale.
        gamma: the class-agnostic baseline of the weight norm.
        alpha: TDE strength at test (0 = causal-norm logits).
        momentum: mu of the head-direction update.
        direction_update: ``'reference'`` (``d <- mu d + mean``) or
            ``'ema'`` (``d <- mu d + (1 - mu) mean``).
        use_tde_at_test: False tests with ``alpha = 0``.
        posthoc: see :class:`~lt_mm.cls.heads.LTLinearClsHead`.
        **kwargs: ``ClsHead`` arguments (``loss``, ``topk``...).
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 num_heads: int = 2,
                 tau: float = 16.0,
                 gamma: float = 1 / 32,
                 alpha: float = 3.0,
                 momentum: float = 0.9,
                 direction_update: str = 'reference',
                 use_tde_at_test: bool = True,
                 posthoc: Optional[dict] = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.in_channels = int(in_channels)
        self.fc = CausalNormClassifier(
            in_channels,
            num_classes,
            num_heads=num_heads,
            tau=tau,
            gamma=gamma,
            alpha=alpha,
            momentum=momentum,
            direction_update=direction_update,
            use_tde_at_test=use_tde_at_test)
        self._warned_zero = False
        self._checked_direction: Optional[tuple] = None
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
        :attr:`alpha`."""
        self._check_direction(alpha)
        return self.fc.predict(x, alpha)

    def _check_direction(self, alpha: Optional[float]) -> None:
        """Warn once if ``d`` is zero. The (host-syncing) check runs only
        when the buffer changed since the last check (its storage or
        version counter), i.e. not on every inference batch."""
        if self._warned_zero or alpha == 0:
            return
        d = self.fc.head_direction
        try:
            key = (d.data_ptr(), d._version)
        except RuntimeError:  # inference tensor: no version counter
            key = None
        if key is not None and key == self._checked_direction:
            return
        self._checked_direction = key
        if not bool(torch.any(d != 0)):
            self._warned_zero = True
            MMLogger.get_current_instance().warning(
                'CausalNormClsHead: head_direction is zero (the model was '
                'never trained or the checkpoint lacks '
                'head.fc.head_direction): TDE equals the causal-norm '
                'logits.')
