"""Box head for de-confounded training + TDE (Tang et al., NeurIPS 2020).

The moving-average head direction ``d`` of TDE (Assumption 1) must average
the features of *foreground* RoIs: the background RoIs (about 75 % of the
sampled RoIs) are not samples of the long-tailed classes. The reference
mmdet code selected ``gt_label > 0``, which in mmdet >= 2 (background =
``num_classes``, the last index) drops class 0 and keeps the background
(LTR.pytorch issue #21). The labels only exist after target assignment,
so :class:`CausalNormShared2FCBBoxHead` updates ``d`` in
``loss_and_target`` with ``0 <= labels < num_classes``.

Inference and mmdet's post-processing
-------------------------------------
:class:`~lt_mm.det.classifiers.CausalNormLinear` returns ``log(P)`` of the
background-exempted probabilities (TDE Eq. 9, computed exactly in log
space, :func:`lt_mm.core.causal_norm.background_exempt_log_probs`).
``BBoxHead.predict_by_feat`` applies ``softmax``; since ``sum(P) = 1``,
``softmax(log P) = P`` (up to float rounding: a relative error of ~1e-5 at
most in float32, also for the tiny foreground scores of RoIs whose
background probability exceeds 1 - 1e-6).

Cascade R-CNN (``CascadeRoIHead._refine_roi``) averages the raw
``cls_score`` of the stages and the last stage's ``predict_by_feat`` applies
``softmax`` to the mean. With log-probabilities ``log P_s`` from every stage
this gives the normalised geometric mean of the stages' exempted
distributions, ``softmax(mean_s log P_s) = prod_s P_s^(1/S) / Z``. This is
the same fusion rule mmdet applies to ordinary stages: since ``log
softmax(z) = z - logsumexp(z)`` differs from ``z`` by a per-row constant,
``softmax(mean_s z_s) = prod_s softmax(z_s)^(1/S) / Z`` as well. No
probability is passed through ``softmax`` twice (the reference HTC code
averaged probabilities and then applied softmax again). The stage-wise box
refinement uses ``argmax`` over the foreground columns of each stage's
output, which for Eq. 9 is the TDE foreground ranking.
"""
from __future__ import annotations

from typing import List, Optional

import torch
from mmdet.models.roi_heads.bbox_heads import Shared2FCBBoxHead
from mmdet.registry import MODELS
from torch import Tensor

from .classifiers import CausalNormLinear


@MODELS.register_module()
class CausalNormShared2FCBBoxHead(Shared2FCBBoxHead):
    """``Shared2FCBBoxHead`` with a de-confounded (causal-norm) classifier.

    Training (TDE Eq. 7 + Assumption 1): plain softmax cross-entropy on
    the causal-norm logits; after each ``loss_and_target`` the classifier's
    head direction ``d`` is updated with the features of the foreground
    RoIs of that batch only (``0 <= labels < num_classes``). Test (Eq. 8-9):
    TDE with background-exempted inference, see the module docstring for
    mmdet's softmax and Cascade's stage averaging.

    The classifier is ``fc_cls`` (parameter ``fc_cls.weight`` of shape
    (C + 1, D), buffer ``fc_cls.head_direction``); all other layers and
    losses are those of ``Shared2FCBBoxHead``. Unless ``init_cfg`` is
    given, ``fc_cls`` keeps its own U(+-1/sqrt(D)) initialisation (the
    reference skips the Normal(0.01) init of mmdet's ``fc_cls``).

    Args:
        cls_predictor_cfg: the classifier; must build a
            :class:`~lt_mm.det.classifiers.CausalNormLinear` (its options:
            ``num_heads``, ``tau``, ``gamma``, ``alpha``, ``momentum``,
            ``background_exempt`` ...).
        *args, **kwargs: ``Shared2FCBBoxHead`` arguments.
    """

    def __init__(self,
                 *args,
                 cls_predictor_cfg: dict = dict(type='CausalNormLinear'),
                 init_cfg: Optional[dict] = None,
                 **kwargs) -> None:
        super().__init__(
            *args,
            cls_predictor_cfg=cls_predictor_cfg,
            init_cfg=init_cfg,
            **kwargs)
        if not self.with_cls or not isinstance(self.fc_cls, CausalNormLinear):
            raise ValueError(
                'CausalNormShared2FCBBoxHead needs '
                "cls_predictor_cfg=dict(type='CausalNormLinear', ...); got "
                f'{cls_predictor_cfg!r}.')
        if self.fc_cls.out_features != self.num_classes + 1:
            raise ValueError(
                f'the causal-norm classifier has {self.fc_cls.out_features} '
                f'outputs but num_classes + 1 = {self.num_classes + 1} are '
                'needed (softmax with the background last); losses with '
                'custom classification channels (e.g. Seesaw) are not '
                'supported.')
        if init_cfg is None:
            self.init_cfg = [
                c for c in self.init_cfg
                if not (isinstance(c, dict) and c.get('override') == dict(
                    name='fc_cls'))
            ]

    def loss_and_target(self,
                        cls_score: Tensor,
                        bbox_pred: Tensor,
                        rois: Tensor,
                        sampling_results: List,
                        rcnn_train_cfg,
                        concat: bool = True,
                        reduction_override: Optional[str] = None) -> dict:
        """mmdet's loss and targets, then the foreground-only update of the
        head direction (TDE Assumption 1).

        Returns:
            dict: ``loss_bbox`` and ``bbox_targets`` as ``BBoxHead``.
        """
        out = super().loss_and_target(
            cls_score,
            bbox_pred,
            rois,
            sampling_results,
            rcnn_train_cfg,
            concat=concat,
            reduction_override=reduction_override)
        labels = out['bbox_targets'][0]
        if not concat:
            labels = torch.cat(list(labels))
        self.fc_cls.update_head_direction_from_labels(labels)
        return out
