"""Per-pixel long-tail classifiers that replace a decode head's ``conv_seg``.

Every class here is a drop-in replacement of mmseg's ``conv_seg`` (a 1x1
``nn.Conv2d(channels, num_classes)``) that keeps the stock parameter names
``conv_seg.weight`` / ``conv_seg.bias`` (shapes ``(C, D, 1, 1)`` / ``(C,)``),
so the stock mmseg checkpoints load as stage 1. The new parameters sit
beside them (``conv_seg.calibration.*``, ``conv_seg.lws.*``) and buffers
needed at inference (the TDE head direction) travel in the checkpoint.

They are used through :class:`lt_mm.seg.heads.LTDecodeHead`, whose
``cls_seg(feat)`` calls ``conv_seg(dropout(feat), feat=feat, valid=mask)``:

* ``x`` (first argument) -- the feature map after the head's dropout, the
  input of the 1x1 classifier, (N, D, H, W);
* ``feat`` -- the same feature map *before* dropout (DisAlign's confidence
  ``sigma(x)`` and the TDE head direction are computed on it, so dropout
  noise does not enter them; at test time both are equal);
* ``valid`` -- optional bool (N, H, W) mask of the non-ignored pixels at the
  feature resolution (only computed for classifiers that set
  ``needs_valid_mask``).

All the mathematics lives in :mod:`lt_mm.core`; this module only wires it to
feature maps.
"""
from __future__ import annotations

import copy
from typing import List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmseg.registry import MODELS
from torch import Tensor

from lt_mm.core.causal_norm import CausalNormClassifier
from lt_mm.core.checks import check_choice, check_range, check_size
from lt_mm.core.decoupling import (LearnableWeightScaling, WeightCache,
                                   cache_enabled, tau_norm_logits,
                                   tau_normalize)
from lt_mm.core.disalign import DisAlignCalibration

CONFIDENCE_LAYERS = ('conv', 'conv_module')


def _check_feat(x: Tensor, in_channels: int, what: str) -> None:
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ValueError(
            f'{what} expects a feature map (N, {in_channels}, H, W), got '
            f'shape {tuple(x.shape)}.')


class _ConvSegBase(nn.Conv2d):
    """A 1x1 ``conv_seg`` (stock names and shapes) with the lt_mm interface.

    Attributes:
        needs_valid_mask: whether ``forward`` wants the ``valid`` mask.
        uses_head_cfg: whether the head passes its ``conv_cfg``,
            ``norm_cfg`` and ``act_cfg`` when building the classifier.
    """

    needs_valid_mask = False
    uses_head_cfg = False

    def __init__(self, in_channels: int, num_classes: int) -> None:
        check_size('in_channels', in_channels)
        check_size('num_classes', num_classes)
        super().__init__(int(in_channels), int(num_classes), kernel_size=1)
        self.num_classes = int(num_classes)

    def stage2_parameter_names(self) -> List[str]:
        """Parameters (relative names) a stage-2 run trains; none for
        one-stage and post-hoc classifiers (read through the head by
        :class:`lt_mm.engine.Stage2FreezeHook`)."""
        return []

    def logits(self, x: Tensor) -> Tensor:
        """Stock 1x1 convolution ``W x + b``: (N, D, H, W) -> (N, C, H, W).
        """
        return nn.Conv2d.forward(self, x)


@MODELS.register_module()
class DisAlignConvSeg(_ConvSegBase):
    """DisAlign-calibrated ``conv_seg`` (DisAlign, CVPR 2021, Eq. 4-7).

    Per pixel ``p`` with frozen stage-1 logits ``z = W x_p + b`` (the stock
    ``conv_seg``) and the classifier input ``x_p`` (D channels)::

        z_hat_j = z_j + sigma(x_p) * ((alpha_j - 1) * z_j + beta_j)   (Eq. 5)

    (``param='identity'``, the form of the reference segmentation head; the
    module is exactly the identity at initialisation) or Eq. 6 with
    ``param='shifted'``. ``alpha``/``beta`` are per class and broadcast over
    H x W, ``sigma`` is per pixel, computed on the feature map *before* the
    head's dropout (the reference computes it on the output of the head's
    convs, which is also the pre-dropout map). The calibration runs on the
    low-resolution logits, before the upsampling in the loss / inference.

    Parameters: ``weight`` (C, D, 1, 1), ``bias`` (C,) -- the stock
    ``conv_seg`` (frozen in stage 2); ``calibration.logit_scale`` (alpha),
    ``calibration.logit_bias`` (beta), ``calibration.confidence_layer.*``
    (trained in stage 2, see :meth:`stage2_parameter_names`).

    Args:
        in_channels: D, the head's ``channels``.
        num_classes: C.
        confidence: ``'conv'`` -- a 1x1 ``nn.Conv2d(D, 1)``, weight
            ~ N(0, ``sigma_std``), bias 0, so ``sigma ~ 0.5`` at start (as the
            reference detection heads); ``'conv_module'`` -- the reference
            segmentation head's mmcv ``ConvModule(D, 1, 1)`` with the head's
            norm and activation (ReLU) before the sigmoid, which limits
            ``sigma`` to [0.5, 1).
        conv_cfg, norm_cfg, act_cfg: the head's settings (passed by
            :class:`~lt_mm.seg.heads.LTDecodeHead`), used by
            ``'conv_module'``.
        **options: the calibration options of
            :class:`lt_mm.core.disalign.DisAlignCalibration` (``param``:
            ``'identity'``, Eq. 5, or ``'shifted'``, Eq. 6; ``sigma_init``
            ``'normal'`` or ``'constant'`` (with ``confidence='conv'``);
            ``sigma_std``, ``alpha_init``, ``sigma_const``).
    """

    uses_head_cfg = True

    def __init__(self,
                 in_channels: int,
                 num_classes: int,
                 confidence: str = 'conv',
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = None,
                 act_cfg: Optional[dict] = dict(type='ReLU'),
                 **options) -> None:
        super().__init__(in_channels, num_classes)
        self.confidence = check_choice('confidence', confidence,
                                       CONFIDENCE_LAYERS)
        self._calib_args = dict(spatial=True, **options)
        self._layer_args = dict(
            conv_cfg=copy.deepcopy(conv_cfg),
            norm_cfg=copy.deepcopy(norm_cfg),
            act_cfg=copy.deepcopy(act_cfg))
        self.calibration = self._new_calibration()
        self._weight_cache = WeightCache()

    def _new_calibration(self) -> DisAlignCalibration:
        layer = None
        if self.confidence == 'conv_module':
            layer = ConvModule(self.in_channels, 1, 1, **self._layer_args)
        return DisAlignCalibration(
            self.in_channels,
            self.num_classes,
            confidence_layer=layer,
            **self._calib_args)

    def init_weights(self) -> None:
        """Restore the calibration's own initialisation.

        The head's ``init_cfg`` (``Normal(std=0.01)`` on ``conv_seg``) also
        reaches the calibration's layers (e.g. a BN weight of the
        ``'conv_module'`` confidence); its documented init is restored here
        (mmengine calls children's ``init_weights`` after ``init_cfg``).
        """
        fresh = self._new_calibration().to(self.weight.device)
        self.calibration.load_state_dict(fresh.state_dict())

    def stage2_parameter_names(self) -> List[str]:
        """alpha, beta and the confidence layer (DisAlign stage 2)."""
        return [
            'calibration.logit_scale', 'calibration.logit_bias',
            'calibration.confidence_layer'
        ]

    def forward(self,
                x: Tensor,
                feat: Optional[Tensor] = None,
                valid: Optional[Tensor] = None) -> Tensor:
        """Calibrated logits (DisAlign Eq. 5/6).

        Args:
            x: classifier input after dropout, (N, D, H, W).
            feat: the input before dropout for ``sigma``; default ``x``.
            valid: unused.

        Returns:
            Tensor: (N, C, H, W).
        """
        _check_feat(x, self.in_channels, 'DisAlignConvSeg')
        feat = x if feat is None else feat
        layer = self.calibration.confidence_layer
        # the fused path bypasses the layer's call: not when the layer is
        # observed by forward hooks (e.g. to read sigma(x))
        if feat is not x or not isinstance(layer, nn.Conv2d) or \
                layer._forward_hooks or layer._forward_pre_hooks:
            return self.calibration(self.logits(x), feat)
        sources = (self.weight, self.bias, layer.weight, layer.bias)
        if any(t is None for t in sources) or not cache_enabled(self, sources):
            return self.calibration(self.logits(x), feat)
        # eval: the logits and the confidence logit of the same input in
        # ONE 1x1 convolution (weights stacked and cached), a single read
        # of the feature map as the stock conv_seg
        w, b = self._weight_cache.get(
            'logits_and_sigma', sources, (x.dtype, ), lambda:
            (torch.cat([self.weight, layer.weight]).to(x.dtype),
             torch.cat([self.bias, layer.bias]).to(x.dtype)))
        out = F.conv2d(x, w, b)
        return self.calibration.calibrate(out[:, :-1],
                                          torch.sigmoid(out[:, -1:]))

    def train(self, mode: bool = True) -> 'DisAlignConvSeg':
        """Switch mode and drop the cached stacked weights."""
        self._weight_cache.clear()
        return super().train(mode)


@MODELS.register_module()
class CausalNormConvSeg(CausalNormClassifier):
    """Causal-norm ``conv_seg`` with TDE inference (TDE, NeurIPS 2020).

    Training (Eq. 7): per pixel, the D channels are split into K heads,
    ``y_c = (tau / K) sum_k <x_k / ||x_k||, w_ck / (||w_ck|| + gamma)>``
    (no bias), and the moving-average head direction ``d`` (Assumption 1)
    is updated at every training forward from the mean feature of the
    non-ignored pixels (``direction_mask='valid'``; ``'all'`` uses every
    pixel) before dropout. Test (eval mode, Eq. 8): TDE logits
    ``(tau / K) sum_k <x_k_bar - alpha cos(x_k, d_k) d_hat_k, w_ck_bar>``.

    ``weight`` is stored as (C, D, 1, 1) like the stock ``conv_seg``, so a
    stock checkpoint can initialise it (its ``bias`` is unused); the buffer
    ``head_direction`` (D,) is saved in the checkpoint.

    Args:
        in_channels: D, the head's ``channels``; must be divisible by
            ``num_heads``.
        num_classes: C.
        alpha: TDE strength at test. There is no published value for
            segmentation (ImageNet-LT 3.0, LVIS 1.5); choose it on val or
            with ``lt_mm.core.causal_norm.suggest_alpha`` (mean
            ``alpha * cos = 1``).
        direction_mask: ``'valid'`` or ``'all'`` (see above).
        **kwargs: the other options of
            :class:`lt_mm.core.causal_norm.CausalNormClassifier`
            (``num_heads``, ``tau``, ``gamma`` -- reference 2, 16, 1/32;
            ``momentum``, ``direction_update`` -- reference 0.9,
            ``d <- mu d + m``; ``use_tde_at_test``).
    """

    needs_valid_mask = True
    uses_head_cfg = False

    def __init__(self,
                 in_channels: int,
                 num_classes: int,
                 alpha: float = 1.5,
                 direction_mask: str = 'valid',
                 **kwargs) -> None:
        super().__init__(in_channels, num_classes, alpha=alpha, **kwargs)
        if self.background_exempt:
            raise ValueError(
                'CausalNormConvSeg: background_exempt (TDE Eq. 9) is the '
                'detectors\' background rule; segmentation has no '
                'background column.')
        self.direction_mask = check_choice('direction_mask', direction_mask,
                                           ('valid', 'all'))
        self.needs_valid_mask = direction_mask == 'valid'
        # stock conv_seg shape (C, D, 1, 1); core accepts 1x1-conv weights
        self.weight = nn.Parameter(
            self.weight.data.reshape(self.num_classes, self.in_channels, 1, 1))

    def init_weights(self) -> None:
        """Reference init U(+-1/sqrt(D)) instead of the head's Normal."""
        self.reset_parameters()

    def forward(self,
                x: Tensor,
                feat: Optional[Tensor] = None,
                valid: Optional[Tensor] = None) -> Tensor:
        """Causal-norm logits in training, TDE logits in eval mode.

        Args:
            x: classifier input after dropout, (N, D, H, W).
            feat: the input before dropout for the head direction.
            valid: bool (N, H, W) non-ignored pixels (training only).

        Returns:
            Tensor: (N, C, H, W).
        """
        _check_feat(x, self.in_channels, 'CausalNormConvSeg')
        if self.training:
            mask = valid if self.direction_mask == 'valid' else None
            self.update_head_direction(x if feat is None else feat, mask=mask)
            return super().forward(x)
        return self.predict(x)


@MODELS.register_module()
class TauNormConvSeg(_ConvSegBase):
    """Tau-normalised ``conv_seg`` (Decoupling, ICLR 2020, Eq. 3).

    Post-hoc: in eval mode the logits are ``W_tilde x`` with
    ``w_c_tilde = w_c / ||w_c|| ** tau`` and the bias dropped (paper);
    in training mode (unless ``apply_in_train``) it is the stock conv, so a
    stage-1 checkpoint is simply evaluated with ``tools/test.py``.

    Args:
        in_channels: D.
        num_classes: C.
        tau: ``>= 0``. No published value for segmentation; sweep
            [0, 2] on val (the Decoupling reference sweeps step 0.1).
        keep_bias: add the stock bias to the normalised logits (not in the
            paper; ``tau=0, keep_bias=True`` is the stock classifier).
        apply_in_train: normalise in training mode too.
    """

    def __init__(self,
                 in_channels: int,
                 num_classes: int,
                 tau: float = 1.0,
                 keep_bias: bool = False,
                 apply_in_train: bool = False) -> None:
        super().__init__(in_channels, num_classes)
        self.tau = check_range('tau', tau, 0.0)
        self.keep_bias = bool(keep_bias)
        self.apply_in_train = bool(apply_in_train)
        self._weight_cache = WeightCache()

    def train(self, mode: bool = True) -> 'TauNormConvSeg':
        """Switch mode and drop the cached normalised weights."""
        self._weight_cache.clear()
        return super().train(mode)

    def forward(self,
                x: Tensor,
                feat: Optional[Tensor] = None,
                valid: Optional[Tensor] = None) -> Tensor:
        """(N, D, H, W) -> (N, C, H, W) (Decoupling Eq. 3 in eval mode).

        In eval mode the tau-normalised weights are cached (recomputed when
        ``weight`` or ``tau`` change) and applied as one 1x1 convolution.
        """
        _check_feat(x, self.in_channels, 'TauNormConvSeg')
        if self.training and not self.apply_in_train:
            return self.logits(x)
        bias = self.bias.to(x.dtype) if self.keep_bias else None
        if not cache_enabled(self, (self.weight, )):
            out = tau_norm_logits(x, self.weight, self.tau)
            if bias is not None:
                out = out + bias.reshape(1, -1, 1, 1)
            return out
        w = self._weight_cache.get(
            'tau_norm', (self.weight, ), (float(self.tau), x.dtype),
            lambda: tau_normalize(self.weight, self.tau).to(x.dtype))
        return F.conv2d(x, w, bias)

    def extra_repr(self) -> str:
        return (super().extra_repr() + f', tau={self.tau}, '
                f'keep_bias={self.keep_bias}')


@MODELS.register_module()
class LWSConvSeg(_ConvSegBase):
    """Learnable-weight-scaling ``conv_seg`` (Decoupling, ICLR 2020, Eq. 4).

    ``z_hat = (W x + b) * f`` per pixel with the stock ``conv_seg`` frozen
    and the per-class scales ``f`` (``lws.scales``, init ones) learned in
    stage 2 (reference classification form, bias scaled too).

    Args:
        in_channels: D.
        num_classes: C.
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__(in_channels, num_classes)
        self.lws = LearnableWeightScaling(self.num_classes, scale_bias=True)

    def stage2_parameter_names(self) -> List[str]:
        """The per-class scales (Decoupling LWS)."""
        return ['lws.scales']

    def init_weights(self) -> None:
        """Scales start at one (the identity)."""
        with torch.no_grad():
            self.lws.scales.fill_(1.0)

    def forward(self,
                x: Tensor,
                feat: Optional[Tensor] = None,
                valid: Optional[Tensor] = None) -> Tensor:
        """(N, D, H, W) -> (N, C, H, W): ``(W x + b) * f`` (Eq. 4)."""
        _check_feat(x, self.in_channels, 'LWSConvSeg')
        if self.lws.scale_bias and self.bias is not None:
            # (W x + b) * f with the bias added inside the convolution
            z = F.conv2d(x, self.weight, self.bias)
            return self.lws(z)
        z = F.conv2d(x, self.weight)
        return self.lws(z, self.bias)
