"""Box-classifier layers (``fc_cls``) for mmdet's two-stage box heads.

mmdet's ``BBoxHead`` builds its classifier from ``cls_predictor_cfg`` with
``in_features`` (the box-head feature, e.g. the 1024-d fc7 of
``Shared2FCBBoxHead``) and ``out_features = num_classes + 1`` (background
LAST). The layers below are registered in mmdet's ``MODELS`` and plug in
there, for ``Shared2FCBBoxHead`` and for every stage of Cascade R-CNN::

    bbox_head=dict(type='Shared2FCBBoxHead',
                   cls_predictor_cfg=dict(type='DisAlignLinear'))

They stay *the* ``fc_cls`` module, so a stock mmdet checkpoint
(``roi_head.bbox_head.fc_cls.weight/bias``, or
``roi_head.bbox_head.{0,1,2}.fc_cls.*`` for Cascade) loads into them as
stage 1; new parameters live beside (``fc_cls.calibration.*``) and the
stage-2 ones are declared by ``stage2_parameter_names()`` for
:class:`lt_mm.engine.hooks.Stage2FreezeHook`.

A head whose ``loss_cls`` uses custom classification channels (mmdet's
``custom_cls_channels``, e.g. ``SeesawLoss``: C class logits then two
objectness logits) is refused when the layer is built: every layer here
treats the last of ``num_classes + 1`` softmax columns as the background.

All layers are thin wrappers of :mod:`lt_mm.core` (DisAlign, cosine,
tau-normalised and causal-norm / TDE classifiers).
"""
from __future__ import annotations

from typing import List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.registry import MODELS
from torch import Tensor

from lt_mm.core.causal_norm import CausalNormClassifier
from lt_mm.core.checks import check_range
from lt_mm.core.decoupling import (CosineClassifier, WeightCache,
                                   cache_enabled, tau_normalize)
from lt_mm.core.disalign import DisAlignCalibration
from ._head_context import check_classifier_in_head


def _check_out_features(out_features: int, what: str) -> int:
    """``out_features`` (C + 1) of a box classifier, checked at build time:
    at least 2, and -- when a box head builds the layer -- exactly the
    head's ``num_classes + 1`` softmax columns (background last), not the
    custom channels of a loss such as ``SeesawLoss``
    (:func:`lt_mm.det._head_context.check_classifier_in_head`)."""
    if int(out_features) < 2:
        raise ValueError(
            f'{what}: out_features={out_features} but a box classifier has '
            'num_classes + 1 outputs (the background last); the softmax box '
            'head with at least one foreground class is required.')
    check_classifier_in_head(int(out_features), what)
    return int(out_features)


class _DisAlignMixin:
    """Shared DisAlign calibration of the foreground columns."""

    def _build_calibration(self, in_features: int, out_features: int,
                           options: dict) -> None:
        self.calibration = DisAlignCalibration(
            in_features, out_features - 1, background=True, **options)

    def stage2_parameter_names(self) -> List[str]:
        """Stage-2 parameters: alpha, beta and the confidence layer."""
        return ['calibration']


@MODELS.register_module()
class DisAlignLinear(_DisAlignMixin, nn.Linear):
    """Linear box classifier with DisAlign calibration (DisAlign Eq. 4-5).

    ``z = W x + b`` is the frozen stage-1 classifier (an ``nn.Linear``, so
    its keys are mmdet's ``fc_cls.weight`` / ``fc_cls.bias``). The C
    foreground logits are calibrated, the background column (last) passes
    through unchanged, as in the reference detection head::

        z_hat_j = z_j + sigma(x) * ((alpha_j - 1) * z_j + beta_j)   j < C
        z_hat_C = z_C                                           (background)

    with ``sigma(x) = sigmoid(v^T x + v_0)`` computed from the box-head
    feature ``x`` (the input of ``fc_cls``). At initialisation
    (``alpha = 1``, ``beta = 0``) the layer equals the stage-1 classifier.

    Args:
        in_features: D, set by the box head.
        out_features: C + 1, set by the box head.
        bias: keep the linear bias (mmdet's default ``Linear`` has one).
        **options: the calibration options of
            :class:`lt_mm.core.disalign.DisAlignCalibration` (``param``:
            ``'identity'``, Eq. 5, the detection reference, or
            ``'shifted'``, Eq. 6; ``sigma_init``: ``'normal'``, the
            reference detection head's N(0, 0.01) weight and zero bias, or
            ``'constant'``; ``sigma_std``, ``alpha_init``, ``sigma_const``).

    Shapes: ``x`` (N, D) -> (N, C + 1).
    """

    def __init__(self,
                 in_features: int,
                 out_features: int,
                 bias: bool = True,
                 **options) -> None:
        out_features = _check_out_features(out_features, 'DisAlignLinear')
        nn.Linear.__init__(self, in_features, out_features, bias=bias)
        self._build_calibration(in_features, out_features, options)

    def forward(self, x: Tensor) -> Tensor:
        """(N, D) -> calibrated logits (N, C + 1)."""
        return self.calibration(F.linear(x, self.weight, self.bias), x)


@MODELS.register_module()
class CosineLinear(CosineClassifier):
    """Cosine box classifier ``y_c = s * cos(x, w_c)`` over C + 1 classes.

    The normalised classifier of DisAlign's starred (*) rows (Tables 8,
    9, 17, 18) and TDE Table 4 ("Cosine"); the reference detection head
    uses a learnable scale initialised at 20 (DisAlign issue #3). The
    background is an ordinary (last) row. No bias. Parameters ``weight``
    (C + 1, D) and ``scale``.

    Args:
        in_features: D.
        out_features: C + 1.
        scale: initial s, ``> 0``.
        learn_scale: learn s.

    Shapes: ``x`` (N, D) -> (N, C + 1).
    """

    def __init__(self,
                 in_features: int,
                 out_features: int,
                 scale: float = 20.0,
                 learn_scale: bool = True) -> None:
        out_features = _check_out_features(out_features, type(self).__name__)
        super().__init__(
            in_features, out_features, scale=scale, learn_scale=learn_scale)

    @property
    def in_features(self) -> int:
        """D, as ``nn.Linear``."""
        return self.in_channels

    @property
    def out_features(self) -> int:
        """C + 1, as ``nn.Linear``."""
        return self.num_classes


@MODELS.register_module()
class DisAlignCosineLinear(_DisAlignMixin, CosineLinear):
    """Cosine box classifier with DisAlign calibration (DisAlign Eq. 4-5).

    ``z = s * cos(x, w)`` (stage 1, :class:`CosineLinear` keys ``weight``,
    ``scale``) calibrated on the C foreground columns as in
    :class:`DisAlignLinear`; ``sigma(x)`` uses the raw (un-normalised) box
    feature, as the reference cosine detection head does.

    Args:
        in_features, out_features, scale, learn_scale: as
            :class:`CosineLinear`.
        **options: the calibration options, as :class:`DisAlignLinear`.

    Shapes: ``x`` (N, D) -> (N, C + 1).
    """

    def __init__(self,
                 in_features: int,
                 out_features: int,
                 scale: float = 20.0,
                 learn_scale: bool = True,
                 **options) -> None:
        super().__init__(in_features, out_features, scale, learn_scale)
        self._build_calibration(in_features, self.num_classes, options)

    def forward(self, x: Tensor) -> Tensor:
        """(N, D) -> calibrated logits (N, C + 1)."""
        return self.calibration(super().forward(x), x)


@MODELS.register_module()
class TauNormLinear(nn.Linear):
    """Tau-normalised box classifier (Decoupling, Kang et al., Eq. 3).

    A post-hoc classifier: in ``eval()`` mode the C foreground rows are
    rescaled ``w_j / ||w_j|| ** tau`` while the background row (last) and
    its bias are left as they are::

        y_j = <w_j / ||w_j||^tau, x> (+ b_j if keep_fg_bias)   j < C
        y_C = <w_C, x> + b_C                                 (background)

    The paper discards the bias (Eq. 3, ``keep_fg_bias=False``). In
    ``train()`` mode the layer is the plain ``nn.Linear`` (joint training),
    so the same config can train stage 1 and evaluate with tau-norm; loaded
    from a stock checkpoint it is pure post-hoc (nothing to train).

    Args:
        in_features: D.
        out_features: C + 1.
        tau: ``>= 0``; 0 leaves the weights unchanged, 1 gives unit rows.
        bias: the linear bias (mmdet's ``fc_cls`` has one).
        keep_fg_bias: keep the foreground biases at test time.

    Shapes: ``x`` (N, D) -> (N, C + 1).
    """

    def __init__(self,
                 in_features: int,
                 out_features: int,
                 tau: float = 1.0,
                 bias: bool = True,
                 keep_fg_bias: bool = False) -> None:
        out_features = _check_out_features(out_features, 'TauNormLinear')
        super().__init__(in_features, out_features, bias=bias)
        self.tau = check_range(
            'tau', tau, 0.0, hint='Decoupling sweeps tau in [0, 2].')
        self.keep_fg_bias = bool(keep_fg_bias)
        self._weight_cache = WeightCache()

    def train(self, mode: bool = True) -> 'TauNormLinear':
        """Switch mode and drop the cached normalised weights."""
        self._weight_cache.clear()
        return super().train(mode)

    def normalized_weight(self) -> Tensor:
        """(C + 1, D) weights with tau-normalised foreground rows
        (Decoupling Eq. 3, :func:`lt_mm.core.decoupling.tau_normalize`;
        background row kept).
        """
        return torch.cat(
            [tau_normalize(self.weight[:-1], self.tau), self.weight[-1:]])

    def normalized_bias(self) -> Optional[Tensor]:
        """(C + 1,) bias used at test time (foreground zeroed unless
        ``keep_fg_bias``), or None without bias."""
        if self.bias is None:
            return None
        if self.keep_fg_bias:
            return self.bias
        mask = torch.zeros_like(self.bias)
        mask[-1] = 1.0
        return self.bias * mask

    def forward(self, x: Tensor) -> Tensor:
        """(N, D) -> (N, C + 1): plain linear in training, tau-norm in
        eval (normalised weights cached while the weights are unchanged).
        """
        if self.training:
            return super().forward(x)
        sources = [self.weight] + ([] if self.bias is None else [self.bias])
        if not cache_enabled(self, sources):
            return F.linear(x, self.normalized_weight(),
                            self.normalized_bias())
        w, b = self._weight_cache.get(
            'tau_norm', sources, (float(self.tau), self.keep_fg_bias), lambda:
            (self.normalized_weight(), self.normalized_bias()))
        return F.linear(x, w, b)

    def extra_repr(self) -> str:
        return (super().extra_repr() +
                f', tau={self.tau}, keep_fg_bias={self.keep_fg_bias}')


@MODELS.register_module()
class CausalNormLinear(CausalNormClassifier):
    """De-confounded box classifier with TDE inference (TDE Eq. 7-9).

    * ``train()``: causal-norm logits (Eq. 7) over the C + 1 classes for
      plain softmax cross-entropy. The input features are kept for the
      head-direction update, which needs the sampled RoI labels and is
      therefore done by the box head after target assignment
      (:class:`lt_mm.det.bbox_heads.CausalNormShared2FCBBoxHead` calls
      :meth:`update_head_direction_from_labels` with the foreground RoIs,
      ``0 <= labels < C``, only).
    * ``eval()``: TDE (Eq. 8) with ``alpha``; with
      ``background_exempt=True`` (default, Eq. 9) the output is
      ``log(P)`` of the background-exempted probabilities P (background
      last), so that mmdet's ``softmax`` in ``predict_by_feat`` returns
      exactly P (no double softmax).

    Parameter ``weight`` (C + 1, D) and buffer ``head_direction`` (D,)
    (saved in the checkpoint).

    Args:
        in_features: D (divisible by ``num_heads``).
        out_features: C + 1.
        alpha: 1.5 (TDE detection setting, >= 0).
        momentum: mu of the head-direction average (reference detection
            code: 0.9998).
        background_exempt: Eq. 9 at test (detection).
        **kwargs: the other options of
            :class:`lt_mm.core.causal_norm.CausalNormClassifier`
            (``num_heads`` 2, ``tau`` 16, ``gamma`` 1/32,
            ``direction_update``, ``use_tde_at_test``).

    Shapes: ``x`` (N, D) -> (N, C + 1).
    """

    def __init__(self,
                 in_features: int,
                 out_features: int,
                 alpha: float = 1.5,
                 momentum: float = 0.9998,
                 background_exempt: bool = True,
                 **kwargs) -> None:
        out_features = _check_out_features(out_features, 'CausalNormLinear')
        super().__init__(
            in_features,
            out_features,
            alpha=alpha,
            momentum=momentum,
            background_exempt=background_exempt,
            **kwargs)
        self._train_feats: Optional[Tensor] = None

    @property
    def in_features(self) -> int:
        """D, as ``nn.Linear``."""
        return self.in_channels

    @property
    def out_features(self) -> int:
        """C + 1, as ``nn.Linear``."""
        return self.num_classes

    def forward(self, x: Tensor) -> Tensor:
        """Causal-norm logits (train) or TDE / Eq. 9 log-probs (eval)."""
        if self.training:
            self._train_feats = x.detach()
            return super().forward(x)
        # one matmul for the TDE and plain logits, cached normalised
        # weights and the exact Eq. 9 (CausalNormClassifier.predict)
        return self.predict(x)

    def update_head_direction_from_labels(self, labels: Tensor) -> Tensor:
        """Update ``d`` with the foreground RoIs of the last training
        forward (TDE Assumption 1, foreground-only).

        Args:
            labels: (N,) sampled RoI labels of that forward (mmdet: class
                in ``[0, C)``, background ``C``).

        Returns:
            Tensor: the foreground batch mean (D,).
        """
        feats, self._train_feats = self._train_feats, None
        if feats is None:
            raise RuntimeError(
                'CausalNormLinear.update_head_direction_from_labels called '
                'without a preceding training forward.')
        labels = labels.reshape(-1)
        if labels.numel() != feats.shape[0]:
            raise ValueError(
                f'{labels.numel()} RoI labels for {feats.shape[0]} RoI '
                'features: the labels must come from the same forward.')
        num_fg = self.num_classes - 1
        mask = (labels >= 0) & (labels < num_fg)
        return self.update_head_direction(feats, mask)
