"""DisAlign heads (Zhang et al., "Distribution Alignment", CVPR 2021).

Stage 2 of DisAlign keeps the stage-1 classifier ``fc`` frozen (same
parameter names, so the stage-1 checkpoint -- also a stock mmpretrain
checkpoint -- loads into it) and learns the adaptive calibration of
:class:`lt_mm.core.disalign.DisAlignCalibration` beside it (Eq. 4-6):
``logit_scale`` (alpha), ``logit_bias`` (beta) and ``confidence_layer``
(sigma(x) from the neck feature x), in the submodule ``calibration``,
with the GRW loss (Eq. 8-11,
:class:`lt_mm.cls.losses.GRWLoss`).
"""
from __future__ import annotations

from typing import List, Optional

import torch.nn.functional as F
from mmpretrain.registry import MODELS
from torch import Tensor

from lt_mm.core._utils import norm_eps
from lt_mm.core.checks import check_choice, pop_args
from lt_mm.core.disalign import DISALIGN_ARGS, DisAlignCalibration
from .base import CosineClsHead, LTLinearClsHead

SIGMA_INPUTS = ('feat', 'normed_feat')


class _DisAlignMixin:
    """Adds ``self.calibration`` and calibrates the classifier's logits.

    The submodule is ``calibration`` in every toolbox (``head.calibration.*``
    here, ``conv_seg.calibration.*`` in seg, ``fc_cls.calibration.*`` in
    det); checkpoints written with the earlier name ``head.disalign.*`` are
    renamed when they load.
    """

    _keep_init = ('calibration', )

    def _init_disalign(self, sigma_input: str, options: dict) -> None:
        self.sigma_input = check_choice('sigma_input', sigma_input,
                                        SIGMA_INPUTS)
        self.calibration = DisAlignCalibration(self.in_channels,
                                               self.num_classes, **options)

    def train_logits(self, x: Tensor) -> Tensor:
        """Calibrated logits ``z + sigma(x) (a z + beta)`` (Eq. 5/6):
        (N, D) -> (N, C)."""
        z = self.classifier_logits(x)
        s = (
            F.normalize(x, dim=1, eps=norm_eps(x.dtype))
            if self.sigma_input == 'normed_feat' else x)
        return self.calibration(z, s)

    def stage2_parameter_names(self) -> List[str]:
        """alpha, beta and the confidence layer (DisAlign stage 2)."""
        return [
            'calibration.logit_scale', 'calibration.logit_bias',
            'calibration.confidence_layer'
        ]

    def _load_from_state_dict(self, state_dict, prefix, *args,
                              **kwargs) -> None:
        old = prefix + 'disalign.'
        for key in [k for k in state_dict if k.startswith(old)]:
            state_dict[prefix + 'calibration.' +
                       key[len(old):]] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


@MODELS.register_module()
class DisAlignLinearClsHead(_DisAlignMixin, LTLinearClsHead):
    """DisAlign on a linear classifier (DisAlign Table 1, ImageNet-LT).

    Args:
        num_classes: C.
        in_channels: D (the neck feature, also the input of sigma).
        sigma_input: ``'feat'`` (the neck feature, as the reference) or
            ``'normed_feat'`` (its L2-normalised version).
        posthoc: see :class:`~lt_mm.cls.heads.LTLinearClsHead`.
        **kwargs: the calibration options of
            :class:`lt_mm.core.disalign.DisAlignCalibration` (``param``:
            ``'identity'``, Eq. 5, or ``'shifted'``, Eq. 6 / reference
            classification layer; ``sigma_init`` ``'normal'`` or
            ``'constant'`` (reference classification layer, weight
            ``sigma_const``); ``alpha_init``, ``sigma_std``,
            ``sigma_const``) and the ``LinearClsHead`` arguments (``loss``
            is usually ``dict(type='GRWLoss', rho=1.2, ...)``).
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 sigma_input: str = 'feat',
                 posthoc: Optional[dict] = None,
                 **kwargs) -> None:
        options = pop_args(kwargs, DISALIGN_ARGS)
        super().__init__(num_classes, in_channels, posthoc=posthoc, **kwargs)
        self._init_disalign(sigma_input, options)


@MODELS.register_module()
class DisAlignCosineClsHead(_DisAlignMixin, CosineClsHead):
    """DisAlign on a cosine classifier (the * rows of DisAlign Table 1).

    Same arguments as :class:`DisAlignLinearClsHead` plus ``scale`` and
    ``learn_scale`` of :class:`~lt_mm.cls.heads.CosineClsHead`; sigma takes
    the L2-normalised feature by default (as the reference cosine layer).
    The paper uses ``rho = 1.5`` for the cosine head.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 sigma_input: str = 'normed_feat',
                 posthoc: Optional[dict] = None,
                 **kwargs) -> None:
        options = pop_args(kwargs, DISALIGN_ARGS)
        super().__init__(num_classes, in_channels, posthoc=posthoc, **kwargs)
        self._init_disalign(sigma_input, options)
