"""lt_mm detection / instance-segmentation adapter (mmdet 3.x).

Importing this package registers into mmdet's registries:

* ``MODELS``: box classifiers for ``cls_predictor_cfg`` (``DisAlignLinear``,
  ``DisAlignCosineLinear``, ``CosineLinear``, ``TauNormLinear``,
  ``CausalNormLinear``; Decoupling / post-hoc: ``LWSLinear``,
  ``CRTLinear``, ``NCMLinear``, ``PosthocLinear``), the box head
  ``CausalNormShared2FCBBoxHead`` (TDE) and the losses ``GRWLoss`` and
  ``CDTLoss``;
* ``METRICS``: ``LTLVISMetric`` (LVIS AP with APr / APc / APf on numpy 2);
* ``HOOKS``: ``NCMCentroidHook`` (class means of ground-truth box features
  for ``NCMLinear``).

It also imports :mod:`lt_mm.engine` (``Stage2FreezeHook``, samplers, safe
checkpoint loading), so ``custom_imports=dict(imports=['lt_mm.det'])`` is
all a config needs.
"""
import lt_mm.engine  # noqa: F401  (root-registry hooks, safe loading)
from .bbox_heads import CausalNormShared2FCBBoxHead
from .classifiers import (CausalNormLinear, CosineLinear, DisAlignCosineLinear,
                          DisAlignLinear, TauNormLinear)
from .counts import lvis_class_stats, resolve_det_counts
from .decoupling import (CRTLinear, LWSLinear, NCMLinear, PosthocLinear,
                         keep_background_log_probs)
from .feature_cache import CachedRoIFeatureEpochBasedTrainLoop
from .hooks import NCMCentroidHook
from .losses import CDTLoss, GRWLoss
from .lvis_eval import LVISEvalNumpy2, evaluate_lvis
from .metrics import LTLVISMetric

__all__ = [
    'CausalNormShared2FCBBoxHead', 'CausalNormLinear', 'CosineLinear',
    'DisAlignCosineLinear', 'DisAlignLinear', 'TauNormLinear',
    'lvis_class_stats', 'resolve_det_counts', 'CDTLoss', 'GRWLoss',
    'LVISEvalNumpy2', 'evaluate_lvis', 'LTLVISMetric', 'CRTLinear',
    'LWSLinear', 'NCMLinear', 'PosthocLinear', 'keep_background_log_probs',
    'NCMCentroidHook', 'CachedRoIFeatureEpochBasedTrainLoop'
]
