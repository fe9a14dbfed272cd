"""Classification adapter: registers lt_mm's long-tail pieces in mmpretrain.

Importing this package (configs: ``custom_imports=dict(imports=
['lt_mm.cls'])``) registers

* ``DATASETS``: ``ImageNetLTDataset``;
* ``METRICS``: ``LongTailAccuracy``;
* ``MODELS``: heads ``LTLinearClsHead``, ``CosineClsHead``,
  ``DisAlignLinearClsHead``, ``DisAlignCosineClsHead``,
  ``CausalNormClsHead``, ``TauNormClsHead``, ``LWSClsHead``,
  ``CRTClsHead``, ``NCMClsHead``; losses ``GRWLoss``, ``CDTLoss``;
* ``HOOKS``: ``NCMCentroidHook``;

and, through :mod:`lt_mm.engine`, the shared ``Stage2FreezeHook`` and the
class-balanced / square-root / progressively-balanced samplers.
"""
import lt_mm.engine  # noqa: F401  (root registries, safe checkpoints)
from .counts import class_stats_from_list, read_list_file, resolve_cls_counts
from .datasets import ImageNetLTDataset
from .feature_cache import CachedFeatureEpochBasedTrainLoop  # noqa: F401
from .heads import (CausalNormClsHead, CosineClsHead, CRTClsHead,
                    DisAlignCosineClsHead, DisAlignLinearClsHead,
                    LTLinearClsHead, LWSClsHead, NCMClsHead, TauNormClsHead)
from .hooks import NCMCentroidHook, eval_dataloader_cfg, extract_pre_logits
from .losses import CDTLoss, GRWLoss
from .metrics import LongTailAccuracy, long_tail_accuracy, per_class_accuracy

__all__ = [
    'ImageNetLTDataset', 'LongTailAccuracy', 'long_tail_accuracy',
    'per_class_accuracy', 'LTLinearClsHead', 'CosineClsHead',
    'DisAlignLinearClsHead', 'DisAlignCosineClsHead', 'CausalNormClsHead',
    'TauNormClsHead', 'LWSClsHead', 'CRTClsHead', 'NCMClsHead', 'GRWLoss',
    'CDTLoss', 'NCMCentroidHook', 'extract_pre_logits', 'eval_dataloader_cfg',
    'class_stats_from_list', 'read_list_file', 'resolve_cls_counts'
]
