"""Decoupled and normalised ``conv_seg`` classifiers (per pixel).

The segmentation cells of Decoupling (Kang et al., "Decoupling
Representation and Classifier for Long-Tailed Recognition", ICLR 2020,
Sec. 4) that :mod:`lt_mm.seg.classifiers` does not hold, plus the cosine
classifier:

* :class:`CosineConvSeg` -- ``y_c = s * cos(x_p, w_c)`` per pixel;
* :class:`CRTConvSeg` -- cRT: the stock ``conv_seg`` re-initialised when a
  stage-1 checkpoint is loaded and re-trained on the frozen model;
* :class:`NCMConvSeg` -- nearest class mean per pixel; the class means are
  buffers filled by :class:`lt_mm.seg.hooks.NCMConvSegCentroidHook`.

Like every classifier of :mod:`lt_mm.seg.classifiers` they replace a decode
head's ``conv_seg`` through :class:`lt_mm.seg.heads.LTDecodeHead` and keep
the stock parameter names ``conv_seg.weight`` (C, D, 1, 1) (and
``conv_seg.bias`` (C,) where used), so a stock / stage-1 checkpoint loads.
The formulas are those of :mod:`lt_mm.core.decoupling`.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.logging import MMLogger
from mmseg.registry import MODELS
from torch import Tensor

from lt_mm.core._utils import keep_missing_buffers
from lt_mm.core.checks import check_choice, check_range
from lt_mm.core.decoupling import (NCM_BUFFERS, ClassMeansMixin,
                                   centroids_from_sums, class_feature_sums,
                                   cosine_logits,
                                   reinit_classifier_from_stage1)
from .classifiers import _check_feat, _ConvSegBase


@MODELS.register_module()
class CosineConvSeg(_ConvSegBase):
    """Cosine ``conv_seg``: ``y_c(p) = s * cos(x_p, w_c)`` for every pixel.

    The normalised classifier of the starred (*) rows of DisAlign Table 1
    (TDE supp. Eq. 1 with K = 1, gamma = 0;
    :func:`lt_mm.core.decoupling.cosine_logits`) applied to each pixel's
    feature ``x_p`` (D channels). No bias: the stock ``conv_seg.bias`` is
    removed (a stock checkpoint's bias is an unexpected key). ``weight``
    keeps the stock shape (C, D, 1, 1) and the head's init
    (``Normal(std=0.01)``, isotropic, so the directions are uniform). A
    one-stage method (nothing to declare for stage 2).

    Parameters: ``weight`` (C, D, 1, 1); ``scale`` (0-dim) when
    ``learn_scale``. (The weights are normalised at every forward: a
    (C, D) operation, negligible beside the per-pixel convolution.)

    Args:
        in_channels: D, the head's ``channels``.
        num_classes: C.
        scale: s, ``> 0`` (16 as :class:`~lt_mm.cls.heads.CosineClsHead`
            and TDE's tau).
        learn_scale: make s a learnable parameter.
    """

    def __init__(self,
                 in_channels: int,
                 num_classes: int,
                 scale: float = 16.0,
                 learn_scale: bool = False) -> None:
        super().__init__(in_channels, num_classes)
        scale = check_range('scale', scale, 0.0, low_inclusive=False)
        self.register_parameter('bias', None)
        self.learn_scale = bool(learn_scale)
        if self.learn_scale:
            self.scale = nn.Parameter(torch.tensor(float(scale)))
        else:
            self.scale = float(scale)

    def forward(self,
                x: Tensor,
                feat: Optional[Tensor] = None,
                valid: Optional[Tensor] = None) -> Tensor:
        """(N, D, H, W) -> (N, C, H, W): ``s * cos(x_p, w_c)``."""
        _check_feat(x, self.in_channels, 'CosineConvSeg')
        return cosine_logits(x, self.weight, self.scale)

    def extra_repr(self) -> str:
        return (super().extra_repr() + f', learn_scale={self.learn_scale}')


@MODELS.register_module()
class CRTConvSeg(_ConvSegBase):
    """Classifier re-training, cRT (Decoupling Sec. 4), per pixel.

    The stock 1x1 ``conv_seg`` (``z = W x_p + b``), re-initialised when a
    stage-1 checkpoint is loaded and re-trained on the frozen model (stage
    2, :class:`lt_mm.engine.Stage2FreezeHook`, class-balanced image
    sampling: ``ClassBalancedSampler``, classes present in each label map).
    Same rule as :class:`lt_mm.cls.heads.CRTClsHead`, through
    :func:`lt_mm.core.decoupling.reinit_classifier_from_stage1`:

    * a persistent buffer ``crt_retrained`` (0-dim long) says whether the
      checkpoint's ``weight`` / ``bias`` are already the re-trained ones;
    * loading a checkpoint whose ``crt_retrained`` is missing or 0 (stage 1)
      re-initialises the conv with PyTorch's default init (the reference's
      choice) instead of taking the stage-1 values -- in
      ``_load_from_state_dict``, because mmengine loads ``load_from`` after
      ``init_weights`` and only the loader sees the checkpoint;
    * the first training forward sets ``crt_retrained = 1``, so stage-2
      checkpoints (resume, ``tools/test.py``) load their re-trained conv.

    Parameters: ``weight`` (C, D, 1, 1), ``bias`` (C,) (both trained in
    stage 2); buffer ``crt_retrained``.

    Args:
        in_channels: D.
        num_classes: C.
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__(in_channels, num_classes)
        self.register_buffer(
            'crt_retrained',
            torch.zeros((), dtype=torch.long),
            persistent=True)

    def stage2_parameter_names(self) -> List[str]:
        """The re-initialised classifier: ``weight`` and ``bias``."""
        return ['weight', 'bias']

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict,
                              missing_keys, unexpected_keys,
                              error_msgs) -> None:
        """Load; a stage-1 ``weight`` / ``bias`` is replaced by a fresh
        initialisation (see the class docstring)."""
        if reinit_classifier_from_stage1(self, state_dict, prefix,
                                         prefix + 'crt_retrained'):
            MMLogger.get_current_instance().info(
                'CRTConvSeg: the checkpoint has no re-trained classifier '
                '(stage-1 weights): conv_seg is re-initialised for cRT.')
        super()._load_from_state_dict(state_dict, prefix, local_metadata,
                                      strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def forward(self,
                x: Tensor,
                feat: Optional[Tensor] = None,
                valid: Optional[Tensor] = None) -> Tensor:
        """(N, D, H, W) -> (N, C, H, W) ``W x + b``; a training forward
        marks the classifier as re-trained."""
        _check_feat(x, self.in_channels, 'CRTConvSeg')
        if self.training and int(self.crt_retrained) == 0:
            self.crt_retrained.fill_(1)
        return self.logits(x)


@MODELS.register_module()
class NCMConvSeg(ClassMeansMixin, _ConvSegBase):
    """Nearest-class-mean ``conv_seg`` (Decoupling Sec. 4, NCM), per pixel.

    Eval mode: for every pixel feature ``x_p`` (the pre-classifier map,
    D channels) the scores ``-||x_hat_p - c_j||^2`` (``dist='l2'``) or
    ``cos(x_hat_p, c_j)`` (``'cos'``) with ``x_hat`` the ``feat_type``
    transform (``'cl2n'``: centred by the training mean, L2-normalised)
    -- :func:`lt_mm.core.decoupling.ncm_logits`. The class means are the
    per-pixel means over the training set (labels resized to the feature
    resolution with nearest sampling, ``ignore_index`` skipped), computed
    by :class:`lt_mm.seg.hooks.NCMConvSegCentroidHook` (or
    :meth:`set_centroids` / :meth:`accumulate`).

    Training mode (if any) is the stock conv ``W x + b``, whose parameters
    stay, so a stage-1 checkpoint loads.

    Buffers (persistent, saved in checkpoints; a stage-1 checkpoint that
    lacks them loads without warning): ``centroids`` (C, D),
    ``global_mean`` (D,), ``ncm_ready`` (0-dim long), ``class_present``
    (C,) bool.

    A class without any labelled pixel *at the feature resolution* (a
    small tail class lost by the nearest-neighbour downsampling of the
    labels, typically at 1/8 resolution) has no mean. ``missing='warn'``
    (default) keeps it out of the prediction -- its score is set to one
    below the lowest score of the other classes at every pixel -- and the
    hook logs a warning naming it; ``missing='error'`` raises instead.

    Args:
        in_channels: D.
        num_classes: C.
        feat_type: ``'un'``, ``'l2n'`` or ``'cl2n'``.
        dist: ``'l2'`` or ``'cos'``.
        missing: ``'warn'`` or ``'error'`` (see above).

    Raises:
        RuntimeError: an eval-mode forward before the class means exist.
    """

    _optional_buffers = NCM_BUFFERS + ('class_present', )

    def __init__(self,
                 in_channels: int,
                 num_classes: int,
                 feat_type: str = 'cl2n',
                 dist: str = 'l2',
                 missing: str = 'warn') -> None:
        super().__init__(in_channels, num_classes)
        self.missing = check_choice('missing', missing, ('warn', 'error'))
        self.register_buffer('class_present',
                             torch.ones(self.num_classes, dtype=torch.bool))
        self.init_class_means(self.num_classes, self.in_channels, feat_type,
                              dist)

    def _load_from_state_dict(self, state_dict, prefix, *args,
                              **kwargs) -> None:
        keep_missing_buffers(self, state_dict, prefix, self._optional_buffers)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def passes(self) -> Tuple[Tuple[str, ...], ...]:
        """Feature transforms to accumulate, one tuple per pass over the
        data: ``'cl2n'`` needs the global mean before its second pass."""
        if self.feat_type == 'cl2n':
            return (('un', ), ('cl2n', ))
        if self.feat_type == 'l2n':
            return (('un', 'l2n'), )
        return (('un', ), )

    @torch.no_grad()
    def set_centroids(self,
                      feats: Tensor,
                      labels: Tensor,
                      ignore_index: Optional[int] = 255) -> List[int]:
        """Class means from features held in memory (tests, small sets).

        Args:
            feats: (N, D, H, W) pre-classifier features.
            labels: (N, H, W) labels at the same resolution.
            ignore_index: label to skip.

        Returns:
            list[int]: the classes without any pixel.
        """
        sums = {}
        for types in self.passes:
            mean = None
            if 'un' in sums:
                mean = sums['un'][0].sum(0) / sums['un'][1].sum()
            for t in types:
                sums[t] = class_feature_sums(feats, labels, self.num_classes,
                                             t, mean, ignore_index)
        return self.load_sums(sums)

    @torch.no_grad()
    def load_sums(self, sums: dict) -> List[int]:
        """Store the means from accumulated per-class sums.

        Args:
            sums: ``{feat_type: (sums (C, D), counts (C,))}`` of
                :func:`lt_mm.core.decoupling.class_feature_sums` summed over
                the training set; ``'un'`` (the global mean) and
                ``self.feat_type`` are needed.

        Returns:
            list[int]: the classes without any pixel (see ``missing``).
        """
        raw, n = sums['un']
        if int(n.sum()) == 0:
            raise ValueError('NCMConvSeg: no labelled pixel in the data: the '
                             'class means are undefined.')
        mean = raw.sum(0) / n.sum()
        c_sums, counts = sums[self.feat_type]
        c = centroids_from_sums(
            c_sums, counts, allow_missing=self.missing == 'warn')
        present = counts > 0
        self.class_present.copy_(present.to(self.class_present.device))
        self.store_class_means(c, mean)
        return torch.nonzero(~present).flatten().tolist()

    def forward(self,
                x: Tensor,
                feat: Optional[Tensor] = None,
                valid: Optional[Tensor] = None) -> Tensor:
        """NCM scores in eval mode, stock logits in training mode.

        Args:
            x: classifier input after dropout, (N, D, H, W).
            feat: the map before dropout (used in eval mode; equal to ``x``
                there).
            valid: unused.

        Returns:
            Tensor: (N, C, H, W); larger is closer.
        """
        _check_feat(x, self.in_channels, 'NCMConvSeg')
        if self.training:
            return self.logits(x)
        out = self.ncm_scores(x if feat is None else feat)
        present = self.class_present
        if bool(present.all()):
            return out
        keep = present.reshape(1, -1, 1, 1)
        floor = out.masked_fill(~keep, float('inf')).amin(1, keepdim=True)
        return torch.where(keep, out, floor - 1.0)

    def extra_repr(self) -> str:
        return (super().extra_repr() +
                f', feat_type={self.feat_type!r}, dist={self.dist!r}, '
                f'missing={self.missing!r}')
