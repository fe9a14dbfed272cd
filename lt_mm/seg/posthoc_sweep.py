"""Sweep post-hoc knobs of a segmentor on feature maps extracted once.

The segmentation counterpart of ``tools/analysis/sweep_posthoc.py``'s
classification path: the backbone and the decode head's convs run *once*
per split (:func:`extract_split`: the pre-classifier feature map of every
image, on the CPU, and its full-resolution ground truth); each setting then
only recomputes the per-pixel logits, upsamples them to the label map,
takes the argmax and accumulates mmseg's intersect / union areas, scored
by the config's ``HeadBodyTailIoUMetric`` (aAcc, mIoU, mAcc and the
head / body / tail groups). Knobs (:data:`KNOBS`):

* ``'tau_norm'`` -- Decoupling Eq. 3 on the ``conv_seg`` weight
  (:func:`lt_mm.core.decoupling.tau_norm_logits`, bias dropped);
* ``'nc_tau'`` / ``'logit_adjust'`` -- CDT Eq. 5 / logit adjustment of the
  classifier's own eval logits with pixel counts
  (:func:`lt_mm.core.cdt.posthoc_adjust`);
* ``'tde_alpha'`` -- TDE Eq. 8 strength of a ``CausalNormConvSeg``
  (:meth:`lt_mm.core.causal_norm.CausalNormClassifier.predict`).

The logits are resized once, bilinearly, straight to the label map (mmseg
resizes to the input size, then to the original size: equal without test
resizing or padding, a sub-pixel difference otherwise). Memory: the cached
maps are (D, H/8, W/8) per image -- fine for the quickstart data; on the
ADE20K val set (2000 images, D = 512) about 16 GB in float32, so pass
``max_images`` or ``dtype=torch.float16`` there.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import is_model_wrapper
from torch import Tensor

from lt_mm.core.cdt import POSTHOC_RULES, posthoc_adjust
from lt_mm.core.checks import check_choice
from lt_mm.core.decoupling import tau_norm_logits
from lt_mm.engine.features import eval_batches
from .hooks import _crop_padding, _decode_head, capture_classifier_input

#: the knobs :func:`sweep` understands
KNOBS = ('tau_norm', 'tde_alpha') + POSTHOC_RULES


@dataclass
class CachedSplit:
    """Pre-classifier feature maps and full-resolution labels of a split.

    Attributes:
        feats: per image (1, D, h, w), on the CPU.
        labels: per image (H, W) int64 ground truth (``ignore_index`` kept).
    """
    feats: List[Tensor] = field(default_factory=list)
    labels: List[Tensor] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.feats)


@torch.no_grad()
def extract_split(model: nn.Module,
                  dataloader,
                  max_images: Optional[int] = None,
                  dtype: torch.dtype = torch.float32) -> CachedSplit:
    """Run backbone + decode head (up to ``conv_seg``) once per image.

    Args:
        model: an mmseg ``EncoderDecoder`` (possibly wrapped), eval mode is
            set while extracting.
        dataloader: a built dataloader whose pipeline loads annotations.
        max_images: stop after this many images.
        dtype: storage dtype of the cached maps (float16 halves memory).

    Returns:
        CachedSplit: the maps and labels, in dataloader order.
    """
    head = _decode_head(model)
    core = model.module if is_model_wrapper(model) else model
    out = CachedSplit()
    for batch in eval_batches(model, dataloader):
        inputs = batch['inputs']
        feats = capture_classifier_input(head, core.extract_feat(inputs))
        for i, sample in enumerate(batch['data_samples']):
            feat = _crop_padding(feats[i:i + 1], inputs.shape[-2:],
                                 sample.metainfo)
            out.feats.append(feat.to('cpu', dtype))
            out.labels.append(
                sample.gt_sem_seg.data.reshape(
                    sample.gt_sem_seg.shape).long().cpu())
            if max_images is not None and len(out) >= max_images:
                return out
    if not len(out):
        raise ValueError('the dataloader yielded no image.')
    return out


def knob_logits(head: nn.Module,
                knob: str,
                value: float,
                feat: Tensor,
                counts: Optional[Sequence[float]] = None) -> Tensor:
    """Logits (1, C, h, w) of one setting on one cached map (1, D, h, w).

    Args:
        head: the decode head (an ``LTDecodeHead``; a stock head works for
            ``'tau_norm'`` and, with ``counts``, the prior rules).
        knob: one of :data:`KNOBS`.
        value: tau or alpha.
        feat: the cached pre-classifier map.
        counts: (C,) pixel counts for the prior rules; default the head's
            ``posthoc.counts``.
    """
    check_choice('knob', knob, KNOBS)
    clf = head.conv_seg
    feat = feat.to(clf.weight.device, clf.weight.dtype)
    if knob == 'tau_norm':
        return tau_norm_logits(feat, clf.weight, value)
    if knob == 'tde_alpha':
        if not callable(getattr(clf, 'predict', None)):
            raise ValueError('tde_alpha needs a CausalNormConvSeg, got '
                             f'{type(clf).__name__}.')
        return clf.predict(feat, alpha=value)
    if counts is None and getattr(head, 'posthoc', None) is not None:
        counts = head.posthoc.counts
    if counts is None:
        raise ValueError(
            f'{knob} needs pixel counts: configure the head with '
            "posthoc=dict(type=..., stats_file=...) (or sweep with "
            'counts=...).')
    # an LTDecodeHead's classifier takes the map twice; a stock conv_seg once
    base = clf(
        feat, feat=feat) if getattr(head, 'classifier_cfg',
                                    None) is not None else clf(feat)
    return posthoc_adjust(base, counts, knob, value)


@torch.no_grad()
def evaluate(head: nn.Module, cached: CachedSplit, metric,
             logits_fn: Callable[[Tensor], Tensor]) -> Dict[str, float]:
    """Score one setting with ``metric`` (a ``HeadBodyTailIoUMetric`` with
    its ``dataset_meta`` set): upsample, argmax, intersect / union.

    Args:
        head: the decode head (``align_corners``, ``num_classes``).
        cached: :func:`extract_split` output.
        metric: the evaluator's metric; its ``compute_metrics`` is called.
        logits_fn: (1, D, h, w) -> (1, C, h, w).

    Returns:
        dict: the metric's flat scalars (aAcc, mIoU, mIoU_head, ...).
    """
    results = []
    for feat, label in zip(cached.feats, cached.labels):
        logits = logits_fn(feat)
        logits = F.interpolate(
            logits.float(),
            size=label.shape,
            mode='bilinear',
            align_corners=head.align_corners)
        pred = logits.argmax(1)[0].cpu()
        results.append(
            metric.intersect_and_union(pred, label, head.num_classes,
                                       metric.ignore_index))
    return dict(metric.compute_metrics(results))


def sweep(
    head: nn.Module,
    cached: CachedSplit,
    metric,
    grids: Dict[str, Sequence[float]],
    counts: Optional[Sequence[float]] = None
) -> Dict[str, List[Tuple[float, Dict[str, float]]]]:
    """Evaluate every value of every knob on the cached split.

    Args:
        head: the decode head of the loaded model (eval mode is set).
        cached: :func:`extract_split` output.
        metric: see :func:`evaluate`.
        grids: ``{knob: values}``, knobs of :data:`KNOBS`.
        counts: (C,) pixel counts for ``'nc_tau'`` / ``'logit_adjust'``
            when the head has no ``posthoc``.

    Returns:
        dict: ``{knob: [(value, metrics), ...]}``.
    """
    head.eval()
    out: Dict[str, List[Tuple[float, Dict[str, float]]]] = {}
    for knob, values in grids.items():
        check_choice('knob', knob, KNOBS)
        out[knob] = [
            (float(v),
             evaluate(
                 head,
                 cached,
                 metric,
                 lambda f, k=knob, v=v: knob_logits(head, k, v, f, counts)))
            for v in values
        ]
    return out
