"""Decoupled classifiers (Kang et al., "Decoupling Representation and
Classifier for Long-Tailed Recognition", ICLR 2020, Sec. 4).

All heads keep the stage-1 ``fc`` (``fc.weight`` / ``fc.bias``), so the
joint stage-1 checkpoint (a stock mmpretrain ``LinearClsHead`` checkpoint)
loads:

* :class:`TauNormClsHead` -- Eq. 3, post-hoc, no training;
* :class:`LWSClsHead` -- Eq. 4, learns ``lws.scales`` (stage 2);
* :class:`CRTClsHead` -- re-initialises ``fc`` when a stage-1 checkpoint
  is loaded and re-trains it (stage 2, class-balanced sampling);
* :class:`NCMClsHead` -- nearest class mean; the class means are buffers
  filled by :class:`lt_mm.cls.hooks.NCMCentroidHook`.
"""
from __future__ import annotations

from typing import List, Optional

import torch
from mmengine.logging import MMLogger
from mmpretrain.registry import MODELS
from torch import Tensor

from lt_mm.core.checks import check_range
from lt_mm.core.decoupling import (ClassMeansMixin, LearnableWeightScaling,
                                   cache_enabled, class_centroids,
                                   reinit_classifier_from_stage1,
                                   tau_norm_logits, tau_normalize)
from .base import LTLinearClsHead


@MODELS.register_module()
class TauNormClsHead(LTLinearClsHead):
    """tau-normalised classifier (Decoupling Eq. 3).

    Test logits ``x W_tilde^T`` with ``w_c_tilde = w_c / ||w_c|| ** tau``
    and the bias dropped, as in the paper; training (if any) uses the plain
    ``fc``. ``tau = 0.7`` is the mmpretrain decouple port's ImageNet-LT
    value; sweep it with ``tools/analysis/sweep_posthoc.py``.

    Args:
        num_classes: C.
        in_channels: D.
        tau: ``>= 0``.
        **kwargs: :class:`~lt_mm.cls.heads.LTLinearClsHead` arguments.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 tau: float = 0.7,
                 **kwargs) -> None:
        super().__init__(num_classes, in_channels, **kwargs)
        self.tau = check_range('tau', tau, 0.0)

    def test_logits(self, x: Tensor, tau: Optional[float] = None) -> Tensor:
        """(N, D) -> (N, C) tau-normalised logits (Eq. 3).

        In eval mode the normalised weights are computed once and cached
        (recomputed when ``fc.weight`` or ``tau`` change).
        """
        tau = self.tau if tau is None else tau
        if not cache_enabled(self, (self.fc.weight, )):
            return tau_norm_logits(x, self.fc.weight, tau)
        if x.dim() != 2 or x.shape[1] != self.in_channels:
            raise ValueError(f'features have shape {tuple(x.shape)}; '
                             f'expected (N, {self.in_channels}).')
        w = self._cached(
            'tau_norm', (self.fc.weight, ), (float(tau), x.dtype),
            lambda: tau_normalize(self.fc.weight, tau).to(x.dtype))
        return x @ w.t()


@MODELS.register_module()
class LWSClsHead(LTLinearClsHead):
    """Learnable weight scaling (Decoupling Eq. 4).

    Logits ``(W x + b) * f`` with the stage-1 ``fc`` frozen and the
    per-class scales ``lws.scales`` (init 1) learned in stage 2 (5 epochs,
    class-balanced sampling on ImageNet-LT), as the reference code (the
    bias is scaled too).
    """

    def __init__(self, num_classes: int, in_channels: int, **kwargs) -> None:
        super().__init__(num_classes, in_channels, **kwargs)
        self.lws = LearnableWeightScaling(num_classes, scale_bias=True)

    def train_logits(self, x: Tensor) -> Tensor:
        """(N, D) -> (N, C) scaled logits."""
        return self.lws(self.fc(x))

    def stage2_parameter_names(self) -> List[str]:
        """Only the scales ``f`` train (Eq. 4)."""
        return ['lws.scales']


@MODELS.register_module()
class CRTClsHead(LTLinearClsHead):
    """Classifier re-training, cRT (Decoupling Sec. 4).

    cRT keeps the stage-1 features and trains the classifier again from a
    fresh initialisation. The head keeps the stock ``fc`` so that stock
    checkpoints load; a persistent buffer ``crt_retrained`` (0 or 1) says
    whether the ``fc`` of a checkpoint is already the re-trained one:

    * loading a checkpoint whose ``crt_retrained`` is missing or 0 (a stage-1
      checkpoint) re-initialises ``fc`` (:func:`lt_mm.core.decoupling.
      reinit_classifier`, PyTorch's default init as the reference) instead
      of taking the stage-1 weights -- see :meth:`_load_from_state_dict`;
    * the first training step sets ``crt_retrained = 1``, so stage-2
      checkpoints (resume, test) load their re-trained ``fc``.

    Stage 2 trains ``fc.*`` with class-balanced sampling (10 epochs on
    ImageNet-LT).
    """

    def __init__(self, num_classes: int, in_channels: int, **kwargs) -> None:
        super().__init__(num_classes, in_channels, **kwargs)
        self.register_buffer(
            'crt_retrained',
            torch.zeros((), dtype=torch.long),
            persistent=True)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict,
                              missing_keys, unexpected_keys,
                              error_msgs) -> None:
        """Load, replacing a stage-1 ``fc`` by a fresh one (see below).

        The re-initialisation is done here, while the checkpoint is read,
        and not in ``init_weights`` or a hook, because:

        * mmengine calls ``init_weights()`` *before* loading ``load_from``,
          so a re-initialisation there would be overwritten by the stage-1
          ``head.fc`` of the checkpoint;
        * whether ``fc`` must be re-initialised depends on the checkpoint
          (its ``crt_retrained`` flag): a stage-1 checkpoint must not give
          its classifier, a stage-2 checkpoint (``resume``, ``tools/test.py``)
          must; only the loader sees the checkpoint, and so the head behaves
          the same under mmengine's ``load_checkpoint``, the runner and
          ``torch.nn.Module.load_state_dict``.
        """
        self._reinit_fc_if_stage1(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, local_metadata,
                                      strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def _reinit_fc_if_stage1(self, state_dict: dict, prefix: str) -> None:
        """Re-initialise ``fc`` when ``state_dict`` is a stage-1 checkpoint.

        The fresh ``fc`` values replace the checkpoint's ``fc.*`` entries of
        ``state_dict`` (the loaders' own copy), so the keys stay present
        (no "missing keys" warning) and the stage-1 weights are not copied
        in; a missing ``crt_retrained`` is filled with 0 for the same
        reason.
        """
        if reinit_classifier_from_stage1(self.fc, state_dict, prefix + 'fc.',
                                         prefix + 'crt_retrained'):
            MMLogger.get_current_instance().info(
                'CRTClsHead: the checkpoint has no re-trained classifier '
                '(stage-1 weights): fc is re-initialised for cRT.')

    def train_logits(self, x: Tensor) -> Tensor:
        """(N, D) -> (N, C); marks the classifier as re-trained."""
        if self.training and int(self.crt_retrained) == 0:
            self.crt_retrained.fill_(1)
        return self.fc(x)

    def stage2_parameter_names(self) -> List[str]:
        """The re-initialised classifier ``fc.weight`` and ``fc.bias``."""
        return ['fc']


@MODELS.register_module()
class NCMClsHead(ClassMeansMixin, LTLinearClsHead):
    """Nearest class mean classifier (Decoupling Sec. 4).

    Test scores ``-||x_hat - c_j||^2`` (``dist='l2'``) or ``cos(x_hat,
    c_j)`` on transformed features (``feat_type='cl2n'``: centred by the
    training mean, L2-normalised). The centroids ``centroids`` (C, D), the
    mean ``global_mean`` (D,) and ``ncm_ready`` are persistent buffers,
    filled from the training set by :class:`lt_mm.cls.hooks.
    NCMCentroidHook` (or :meth:`set_centroids`) and saved in checkpoints.
    Training (if any) uses the plain ``fc``.

    Args:
        num_classes: C.
        in_channels: D.
        feat_type: ``'un'``, ``'l2n'`` or ``'cl2n'``.
        dist: ``'l2'`` or ``'cos'``.
        **kwargs: :class:`~lt_mm.cls.heads.LTLinearClsHead` arguments.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 feat_type: str = 'cl2n',
                 dist: str = 'l2',
                 **kwargs) -> None:
        super().__init__(num_classes, in_channels, **kwargs)
        self.init_class_means(num_classes, in_channels, feat_type, dist)

    @torch.no_grad()
    def set_centroids(self, feats: Tensor, labels: Tensor) -> None:
        """Compute the class means from training features.

        Args:
            feats: (N, D) features of the whole training set.
            labels: (N,) their labels.
        """
        self.store_class_means(*class_centroids(
            feats.float(), labels, self.num_classes, self.feat_type))

    def test_logits(self, x: Tensor) -> Tensor:
        """(N, D) -> (N, C) NCM scores (larger = closer)."""
        return self.ncm_scores(x)
