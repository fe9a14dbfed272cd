"""DisAlign adaptive calibration (Zhang et al., CVPR 2021, Sec. 3.2.1).

The frozen stage-1 classifier gives logits ``z``; DisAlign learns a
per-class magnitude ``alpha``, a per-class margin ``beta`` and an
input-dependent confidence ``sigma(x) in (0, 1)``:

* Eq. 4: ``s_j = alpha_j * z_j + beta_j``;
* Eq. 5: ``z_hat_j = sigma(x) * s_j + (1 - sigma(x)) * z_j``
  (``param='identity'``: the identity at ``alpha = 1, beta = 0``);
* Eq. 6 / Table 2: ``z_hat_j = (1 + sigma(x) * alpha_j) * z_j
  + sigma(x) * beta_j`` (``param='shifted'``). Eq. 6 is *not* an algebraic
  rewrite of Eq. 5: its ``alpha`` plays the role of ``alpha - 1`` of
  Eq. 5. It is the form used by the reference classification layers
  (identity at ``alpha = 0, beta = 0``).

Both forms are computed as ``z + sigma * (a * z + beta)`` with
``a = alpha - 1`` (identity) or ``a = alpha`` (shifted), so the identity at
initialisation holds bit-exactly.

For detection (mmdet convention) the logits have ``C + 1`` columns with the
background LAST; with ``background=True`` only the ``C`` foreground
columns are calibrated and the background column passes through, as in the
reference detection heads.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
from torch import Tensor

from ._utils import class_view
from .checks import check_choice, check_range, check_size, renamed_arg

DISALIGN_PARAMS = ('identity', 'shifted')
SIGMA_INITS = ('normal', 'constant')
#: the calibration options every adapter passes through unchanged (cls
#: head, seg ``conv_seg``, det ``fc_cls``)
DISALIGN_ARGS = ('param', 'sigma_init', 'alpha_init', 'sigma_std',
                 'sigma_const')


def disalign_calibrate(logits: Tensor,
                       sigma: Tensor,
                       alpha: Tensor,
                       beta: Tensor,
                       param: str = 'identity',
                       background: bool = False,
                       exclude_background: Optional[bool] = None) -> Tensor:
    """Apply the DisAlign calibration function (DisAlign Eq. 4-6).

    Args:
        logits: original (frozen-classifier) logits ``z``, shape (N, C') or
            per-pixel (N, C', H, W). ``C' = C`` or, with
            ``background=True``, ``C' = C + 1`` (background last).
        sigma: confidence ``sigma(x)`` in (0, 1), shape (N, 1) (or (N,)) for
            vector logits and (N, 1, H, W) for per-pixel logits.
        alpha: per-class magnitude, shape (C,).
        beta: per-class margin, shape (C,).
        param: ``'identity'`` = Eq. 5,
            ``z_hat = sigma * (alpha * z + beta) + (1 - sigma) * z``;
            ``'shifted'`` = Eq. 6 / Table 2,
            ``z_hat = (1 + sigma * alpha) * z + sigma * beta``.
        background: the last column is the background and is left
            untouched (detection).
        exclude_background: deprecated name of ``background``.

    Returns:
        Tensor: calibrated logits, same shape as ``logits``.
    """
    background = renamed_arg(background, exclude_background, 'background',
                             'exclude_background', 'disalign_calibrate')
    check_choice('param', param, DISALIGN_PARAMS)
    if logits.dim() < 2:
        raise ValueError(f'logits must be (N, C) or (N, C, H, W), got shape '
                         f'{tuple(logits.shape)}.')
    if sigma.dim() == 1 and logits.dim() == 2:
        sigma = sigma.unsqueeze(1)
    if (sigma.dim() != logits.dim() or sigma.shape[1] != 1
            or sigma.shape[0] != logits.shape[0]
            or sigma.shape[2:] != logits.shape[2:]):
        raise ValueError(
            f'sigma has shape {tuple(sigma.shape)} but logits have shape '
            f'{tuple(logits.shape)}: expected sigma of shape (N, 1) for '
            '(N, C) logits or (N, 1, H, W) for (N, C, H, W) logits, with '
            'the same N (and H, W): one confidence per sample / pixel, '
            'computed from that sample\'s features.')
    num_cols = logits.shape[1]
    num_cal = num_cols - 1 if background else num_cols
    for name, vec in (('alpha', alpha), ('beta', beta)):
        if vec.dim() != 1 or vec.numel() != num_cal:
            extra = (' (background=True: the last column is the '
                     'background and is not calibrated)' if background else '')
            raise ValueError(
                f'{name} has shape {tuple(vec.shape)} but the logits have '
                f'{num_cols} columns: expected ({num_cal},){extra}.')
    a = alpha - 1 if param == 'identity' else alpha
    b = beta
    if background:
        # the background column gets a = 0, b = 0: z + sigma * (0 * z + 0)
        # = z exactly, without slicing / concatenating the (N, C+1) logits
        a = torch.cat([a, a.new_zeros(1)])
        b = torch.cat([b, b.new_zeros(1)])
    a = class_view(a, logits.dim())
    b = class_view(b, logits.dim())
    # logits + sigma * (a * logits + b) in two fused passes over the logits
    return torch.addcmul(logits, sigma, torch.addcmul(b, a, logits))


class DisAlignCalibration(nn.Module):
    """Learnable DisAlign calibration head (DisAlign Eq. 4-7, Table 2).

    Wraps nothing: the frozen stage-1 classifier stays where it is (so its
    checkpoint keys keep loading) and this module maps its logits and the
    classifier's input features to calibrated logits.

    Parameters (the names of the reference implementation):

    * ``logit_scale`` -- ``alpha``, shape (C,);
    * ``logit_bias`` -- ``beta``, shape (C,), initialised to 0;
    * ``confidence_layer`` -- ``nn.Linear(in_channels, 1)`` or, with
      ``spatial=True``, ``nn.Conv2d(in_channels, 1, 1)``;
      ``sigma(x) = sigmoid(confidence_layer(x))``.

    Initialisation of ``alpha`` (``alpha_init=None``):

    * ``param='identity'``: 1.0, so the module is exactly the identity;
    * ``param='shifted'``: 0.0, so the module is also exactly the identity.
      NOTE: the reference classification layers initialise this ``alpha``
      to 1.0, which gives ``(1 + sigma) * z`` at initialisation (not the
      identity); pass ``alpha_init=1.0`` to reproduce that.

    At an identity initialisation ``d z_hat / d sigma = a * z + beta = 0``,
    so the confidence layer receives no gradient on the very first step; it
    starts learning as soon as ``alpha`` / ``beta`` move away from it.

    Initialisation of the confidence layer:

    * ``sigma_init='normal'`` (reference detection heads): weight
      ~ N(0, ``sigma_std``), bias 0, so ``sigma ~ 0.5`` at start;
    * ``sigma_init='constant'`` (reference classification layers): weight
      = ``sigma_const`` everywhere, bias PyTorch default U(+-1/sqrt(D)).

    Args:
        in_channels: feature dimension D of the classifier input.
        num_classes: number of calibrated classes C (foreground classes only
            when ``background=True``).
        param: ``'identity'`` (Eq. 5) or ``'shifted'`` (Eq. 6).
        background: logits carry an extra last background column that
            passes through unchanged (mmdet convention).
        spatial: features/logits are per-pixel maps (N, D, H, W) and
            (N, C, H, W); the confidence layer is a 1x1 convolution.
        sigma_init: ``'normal'`` or ``'constant'`` (see above).
        alpha_init: initial value of ``alpha``; None picks the identity
            value of ``param`` (see above).
        sigma_std: std of the ``'normal'`` init.
        sigma_const: weight value of the ``'constant'`` init.
        confidence_layer: optional custom module mapping features to one
            channel (e.g. a conv + norm block of a segmentation head); it
            replaces the default layer and ``sigma_init`` is not applied.
        exclude_background: deprecated name of ``background``.
    """

    def __init__(self,
                 in_channels: int,
                 num_classes: int,
                 param: str = 'identity',
                 background: bool = False,
                 spatial: bool = False,
                 sigma_init: str = 'normal',
                 alpha_init: Optional[float] = None,
                 sigma_std: float = 0.01,
                 sigma_const: float = 0.1,
                 confidence_layer: Optional[nn.Module] = None,
                 exclude_background: Optional[bool] = None) -> None:
        super().__init__()
        background = renamed_arg(background, exclude_background, 'background',
                                 'exclude_background', 'DisAlignCalibration')
        check_size('num_classes', num_classes)
        check_size('in_channels', in_channels)
        check_choice('param', param, DISALIGN_PARAMS)
        check_choice('sigma_init', sigma_init, SIGMA_INITS)
        check_range('sigma_std', sigma_std, 0)
        if alpha_init is None:
            alpha_init = 1.0 if param == 'identity' else 0.0
        check_range('alpha_init', alpha_init)
        self.num_classes = int(num_classes)
        self.in_channels = int(in_channels)
        self.param = param
        self.background = bool(background)
        self.spatial = bool(spatial)
        self.sigma_init = sigma_init
        self.logit_scale = nn.Parameter(
            torch.full((self.num_classes, ), float(alpha_init)))
        self.logit_bias = nn.Parameter(torch.zeros(self.num_classes))
        if confidence_layer is not None:
            self.confidence_layer = confidence_layer
        else:
            if self.spatial:
                layer: nn.Module = nn.Conv2d(self.in_channels, 1, 1)
            else:
                layer = nn.Linear(self.in_channels, 1)
            if sigma_init == 'normal':
                nn.init.normal_(layer.weight, mean=0.0, std=sigma_std)
                nn.init.zeros_(layer.bias)
            else:
                nn.init.constant_(layer.weight, float(sigma_const))
                bound = 1.0 / math.sqrt(self.in_channels)
                nn.init.uniform_(layer.bias, -bound, bound)
            self.confidence_layer = layer

    def confidence(self, feats: Tensor) -> Tensor:
        """Confidence ``sigma(x) = sigmoid(v^T x)`` (DisAlign Eq. 5-6).

        Args:
            feats: (N, D) or, when ``spatial=True``, (N, D, H, W).

        Returns:
            Tensor: (N, 1) or (N, 1, H, W), values in (0, 1).
        """
        want = 4 if self.spatial else 2
        if feats.dim() != want or feats.shape[1] != self.in_channels:
            shape = ('(N, D, H, W)' if self.spatial else '(N, D)')
            raise ValueError(
                f'feats has shape {tuple(feats.shape)}; expected {shape} '
                f'with D=in_channels={self.in_channels} '
                f'(spatial={self.spatial}).')
        return torch.sigmoid(self.confidence_layer(feats))

    def forward(self, logits: Tensor, feats: Tensor) -> Tensor:
        """Calibrate ``logits`` (DisAlign Eq. 5 or 6).

        Args:
            logits: frozen-classifier logits (N, C') or (N, C', H, W) with
                ``C' = num_classes (+1 if background)``.
            feats: the classifier's input features, (N, D) or
                (N, D, H, W) matching the spatial size of ``logits``.

        Returns:
            Tensor: calibrated logits, same shape as ``logits``.
        """
        sigma = self.confidence(feats)
        same_size = sigma.dim() != 4 or sigma.shape[2:] == logits.shape[2:]
        if sigma.dim() != logits.dim() or not same_size:
            raise ValueError(
                f'logits of shape {tuple(logits.shape)} do not match feats '
                f'of shape {tuple(feats.shape)}: per-pixel logits need '
                'per-pixel features of the same spatial size.')
        return self.calibrate(logits, sigma)

    def calibrate(self, logits: Tensor, sigma: Tensor) -> Tensor:
        """Eq. 5 / 6 with a given confidence ``sigma`` (e.g. computed in
        the same convolution as the logits): (N, C'[, H, W]) and
        (N, 1[, H, W]) -> (N, C'[, H, W])."""
        return disalign_calibrate(
            logits,
            sigma.to(logits.dtype),
            self.logit_scale.to(logits.dtype),
            self.logit_bias.to(logits.dtype),
            param=self.param,
            background=self.background)

    def extra_repr(self) -> str:
        return (f'in_channels={self.in_channels}, '
                f'num_classes={self.num_classes}, param={self.param!r}, '
                f'background={self.background}, '
                f'spatial={self.spatial}')
