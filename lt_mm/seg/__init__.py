"""lt_mm for mmsegmentation 1.x: long-tail decode heads, pixel losses,
head/body/tail metric and the ADE20K-layout dataset.

Registered in mmseg's registries (configs: ``custom_imports=dict(
imports=['lt_mm.seg'])``):

* MODELS: ``LTDecodeHead`` (any stock decode head with a long-tail
  ``conv_seg``), the classifiers ``DisAlignConvSeg``, ``CausalNormConvSeg``,
  ``TauNormConvSeg``, ``LWSConvSeg``, ``CosineConvSeg``, ``CRTConvSeg``,
  ``NCMConvSeg`` and the losses ``GRWCrossEntropyLoss``,
  ``CDTCrossEntropyLoss``;
* LOOPS (mmengine): ``CachedFeatureIterBasedTrainLoop`` (stage 2 on
  cached pre-classifier feature maps, :mod:`lt_mm.seg.feature_cache`);
* HOOKS: ``NCMCentroidHook`` (alias ``NCMConvSegCentroidHook``: the
  per-pixel class means of ``NCMConvSeg``);
* METRICS: ``HeadBodyTailIoUMetric``;
* DATASETS: ``ADE20KLTDataset``.

Importing this package also imports :mod:`lt_mm.engine` (Stage2FreezeHook,
samplers, safe checkpoint loading).
"""
import lt_mm.engine  # noqa: F401  (root-registry hooks, safe loading)
from .classifiers import (CausalNormConvSeg, DisAlignConvSeg, LWSConvSeg,
                          TauNormConvSeg)
from .datasets import ADE20KLTDataset, count_seg_pixels, load_seg_label
from .decoupling import CosineConvSeg, CRTConvSeg, NCMConvSeg
from .feature_cache import CachedFeatureIterBasedTrainLoop
from .heads import LTDecodeHead, LTDecodeHeadMixin, lt_decode_head_class
from .hooks import NCMConvSegCentroidHook, iter_pixel_features
from .losses import CDTCrossEntropyLoss, GRWCrossEntropyLoss
from .metrics import HeadBodyTailIoUMetric, pixel_splits

__all__ = [
    'LTDecodeHead', 'LTDecodeHeadMixin', 'lt_decode_head_class',
    'DisAlignConvSeg', 'CausalNormConvSeg', 'TauNormConvSeg', 'LWSConvSeg',
    'CosineConvSeg', 'CRTConvSeg', 'NCMConvSeg', 'NCMConvSegCentroidHook',
    'iter_pixel_features', 'CachedFeatureIterBasedTrainLoop',
    'GRWCrossEntropyLoss', 'CDTCrossEntropyLoss', 'HeadBodyTailIoUMetric',
    'pixel_splits', 'ADE20KLTDataset', 'count_seg_pixels', 'load_seg_label'
]
