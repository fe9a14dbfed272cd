"""DisAlign heads (Zhang et al., "Distribution Alignment", CVPR 2021).

Stage 2 of DisAlign keeps the stage-1 classifier ``fc`` frozen (same
parameter names, so the stage-1 checkpoint -- also a stock mmpretrain
checkpoint -- loads into it) and learns the adaptive calibration of
:class:`lt_mm.core.disalign.DisAlignCalibration` beside it (Eq. 4-6):
``logit_scale`` (alpha), ``logit_bias`` (beta) and ``confidence_layer``
(sigma(x) from the neck feature x), with the GRW loss (Eq. 8-11,
:class:`lt_mm.cls.losses.GRWLoss`).
"""
from __future__ import annotations

from typing import List, Optional

import torch.nn.functional as F
from mmpretrain.registry import MODELS
from torch import Tensor

from lt_mm.core.checks import check_choice
from lt_mm.core.disalign import DisAlignCalibration
from .base import CosineClsHead, LTLinearClsHead

SIGMA_INPUTS = ('feat', 'normed_feat')


class _DisAlignMixin:
    """Adds ``self.disalign`` and calibrates the classifier's logits."""

    _keep_init = ('disalign', )

    def _init_disalign(self, param: str, sigma_init: str,
                       alpha_init: Optional[float], sigma_std: float,
                       sigma_const: float, sigma_input: str) -> None:
        self.sigma_input = check_choice('sigma_input', sigma_input,
                                        SIGMA_INPUTS)
        self.disalign = DisAlignCalibration(
            self.num_classes,
            self.in_channels,
            param=param,
            sigma_init=sigma_init,
            alpha_init=alpha_init,
            sigma_std=sigma_std,
            sigma_const=sigma_const)

    def train_logits(self, x: Tensor) -> Tensor:
        """Calibrated logits ``z + sigma(x) (a z + beta)`` (Eq. 5/6):
        (N, D) -> (N, C)."""
        z = self.classifier_logits(x)
        s = F.normalize(x, dim=1) if self.sigma_input == 'normed_feat' else x
        return self.disalign(z, s)

    def stage2_parameter_names(self) -> List[str]:
        """alpha, beta and the confidence layer (DisAlign stage 2)."""
        return [
            'disalign.logit_scale', 'disalign.logit_bias',
            'disalign.confidence_layer'
        ]


@MODELS.register_module()
class DisAlignLinearClsHead(_DisAlignMixin, LTLinearClsHead):
    """DisAlign on a linear classifier (DisAlign Table 1, ImageNet-LT).

    Args:
        num_classes: C.
        in_channels: D (the neck feature, also the input of sigma).
        param: ``'identity'`` (Eq. 5, alpha init 1) or ``'shifted'``
            (Eq. 6 / reference classification layer, alpha init 0).
        sigma_init: ``'normal'`` (N(0, sigma_std), bias 0: sigma = 0.5 at
            start) or ``'constant'`` (reference classification layer,
            weight ``sigma_const``).
        alpha_init: None = the identity value of ``param``.
        sigma_std, sigma_const: see ``sigma_init``.
        sigma_input: ``'feat'`` (the neck feature, as the reference) or
            ``'normed_feat'`` (its L2-normalised version).
        posthoc: see :class:`~lt_mm.cls.heads.LTLinearClsHead`.
        **kwargs: ``LinearClsHead`` arguments (``loss`` is usually
            ``dict(type='GRWLoss', rho=1.2, ...)``).
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 param: str = 'identity',
                 sigma_init: str = 'normal',
                 alpha_init: Optional[float] = None,
                 sigma_std: float = 0.01,
                 sigma_const: float = 0.1,
                 sigma_input: str = 'feat',
                 posthoc: Optional[dict] = None,
                 **kwargs) -> None:
        super().__init__(num_classes, in_channels, posthoc=posthoc, **kwargs)
        self._init_disalign(param, sigma_init, alpha_init, sigma_std,
                            sigma_const, sigma_input)


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
                 scale: float = 16.0,
                 learn_scale: bool = False,
                 param: str = 'identity',
                 sigma_init: str = 'normal',
                 alpha_init: Optional[float] = None,
                 sigma_std: float = 0.01,
                 sigma_const: float = 0.1,
                 sigma_input: str = 'normed_feat',
                 posthoc: Optional[dict] = None,
                 **kwargs) -> None:
        super().__init__(
            num_classes,
            in_channels,
            scale=scale,
            learn_scale=learn_scale,
            posthoc=posthoc,
            **kwargs)
        self._init_disalign(param, sigma_init, alpha_init, sigma_std,
                            sigma_const, sigma_input)
