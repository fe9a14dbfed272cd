"""Post-hoc sweeps for detection on RoI features computed once.

The post-hoc knobs of the box classifier -- tau-norm's tau (Decoupling,
Kang et al. ICLR 2020, Eq. 3), CDT's ``z_c / N_c ** tau`` rule (Ye et al.,
Eq. 5), logit adjustment ``z_c - tau * log N_c`` and TDE's alpha (Tang et
al., NeurIPS 2020, Eq. 8-9) -- only change ``fc_cls``. The backbone, the
RPN, the RoI features and the box regression stay the same, so
:func:`cache_roi_outputs` runs the detector ONCE over a dataloader and
keeps, per image, the proposals (RoIs), the input of ``fc_cls`` and the
box deltas; :func:`evaluate_rule` then recomputes only the class scores
for a rule and value, runs mmdet's own post-processing
(``BBoxHead.predict_by_feat``: softmax, score threshold, per-class NMS,
``max_per_img``; boxes rescaled as ``StandardRoIHead.predict`` does) and
evaluates LVIS box AP with APr / APc / APf (:class:`lt_mm.det.metrics.
LTLVISMetric`, ``fast`` backend). A setting equal to the model's own
classifier gives exactly the box numbers of ``tools/test.py``.

Masks are not re-computed (the mask head needs the image features): the
sweep reports ``bbox`` metrics only. Memory: ``R x D`` features per image
(1000 proposals x 1024 x 4 bytes = 4 MB; LVIS v1 val: ~80 GB), so use
``feat_dtype=torch.float16`` and/or ``cache_dir`` (one file per image) on
the full LVIS val. Standard (single-stage) RoI heads only: Cascade's later
stages see boxes refined with the scores of earlier stages.

Rules (``RULES``), with ``z`` the classifier's plain logits:

* ``'model'``: the configured ``fc_cls`` in eval mode (value ignored);
* ``'taunorm'``: :class:`lt_mm.det.classifiers.TauNormLinear` with the
  weights of ``fc_cls`` (a plain linear classifier);
* ``'nc_tau'`` / ``'logit_adjust'``: :meth:`lt_mm.det.decoupling.
  PosthocLinear.apply_posthoc` on ``z`` with the counts (background probability
  kept);
* ``'tde_alpha'``: :meth:`CausalNormLinear.predict` with ``alpha`` (a
  causal-norm classifier);
* ``'ncm_scale'``: an :class:`lt_mm.det.decoupling.NCMLinear` with its
  softmax scale set to the value (class means from the checkpoint).
"""
from __future__ import annotations

import os
import os.path as osp
import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.structures.bbox import bbox2roi
from mmengine.model import is_model_wrapper
from torch import Tensor

from lt_mm.core.checks import as_counts, check_choice, check_range
from .classifiers import CausalNormLinear, TauNormLinear
from .decoupling import (CRTLinear, NCMLinear, PosthocLinear,
                         keep_background_log_probs)

RULES = ('model', 'taunorm', 'nc_tau', 'logit_adjust', 'tde_alpha',
         'ncm_scale')
#: classifiers whose plain logits are ``F.linear(x, weight, bias)``
_PLAIN = (nn.Linear, CRTLinear, PosthocLinear, TauNormLinear, NCMLinear)


def _unwrap(model):
    return model.module if is_model_wrapper(model) else model


def _box_head(model):
    roi_head = _unwrap(model).roi_head
    if getattr(roi_head, 'num_stages', None) is not None:
        raise ValueError(
            'the detection post-hoc sweep supports single-stage RoI heads '
            '(Faster / Mask R-CNN); Cascade R-CNN refines the boxes with the '
            'scores of every stage, which a cached sweep cannot reproduce.')
    return roi_head, roi_head.bbox_head


@torch.no_grad()
def cache_roi_outputs(model,
                      dataloader,
                      feat_dtype: torch.dtype = torch.float32,
                      cache_dir: Optional[str] = None) -> List:
    """Run the detector once and keep what the box classifier sees.

    Per image: ``rois`` (R, 5) proposals (``StandardRoIHead.predict_bbox``
    input), ``feats`` (R, D) the input of ``fc_cls`` (forward pre-hook),
    ``bbox_pred`` (R, 4 C or 4) and the image meta (``img_id``,
    ``ori_shape``, ``img_shape``, ``scale_factor``).

    Args:
        model: an mmdet two-stage detector with a standard RoI head.
        dataloader: the (val / test) dataloader.
        feat_dtype: storage dtype of ``feats`` (``torch.float16`` halves
            the memory; the scores are recomputed in float32).
        cache_dir: write one ``<index>.pth`` per image there and return the
            paths (for test sets whose features do not fit in memory).

    Returns:
        list: per image a dict, or its file path with ``cache_dir``.
    """
    model = _unwrap(model)
    roi_head, head = _box_head(model)
    captured: List[Tensor] = []
    handle = head.fc_cls.register_forward_pre_hook(
        lambda mod, args: captured.append(args[0]))
    was_training = model.training
    model.eval()
    if cache_dir:
        os.makedirs(cache_dir, exist_ok=True)
    items: List = []
    try:
        for data in dataloader:
            data = model.data_preprocessor(data, False)
            samples = data['data_samples']
            x = model.extract_feat(data['inputs'])
            if samples[0].get('proposals', None) is None:
                rpn = model.rpn_head.predict(x, samples, rescale=False)
            else:
                rpn = [s.proposals for s in samples]
            proposals = [r.bboxes for r in rpn]
            rois = bbox2roi(proposals)
            captured.clear()
            out = roi_head._bbox_forward(x, rois)
            feats = captured[0]
            sizes = [len(p) for p in proposals]
            parts = zip(
                rois.split(sizes), feats.split(sizes),
                out['bbox_pred'].split(sizes))
            for s, (r, f, b) in zip(samples, parts):
                meta = {
                    k: s.metainfo[k]
                    for k in ('img_id', 'ori_shape', 'img_shape',
                              'scale_factor') if k in s.metainfo
                }
                item = dict(
                    meta=meta,
                    rois=r.cpu(),
                    feats=f.to(feat_dtype).cpu(),
                    bbox_pred=b.cpu())
                if cache_dir:
                    path = osp.join(cache_dir, f'{len(items):07d}.pth')
                    torch.save(item, path)
                    item = path
                items.append(item)
    finally:
        handle.remove()
        model.train(was_training)
    return items


def score_function(
        fc_cls: nn.Module,
        rule: str,
        value: Optional[float] = None,
        counts: Optional[Sequence[float]] = None,
        keep_background_prob: bool = True) -> Callable[[Tensor], Tensor]:
    """The box scores of one post-hoc setting: (R, D) -> (R, C + 1).

    Args:
        fc_cls: the model's box classifier.
        rule: one of :data:`RULES` (module docstring).
        value: tau (``taunorm``, ``nc_tau``, ``logit_adjust``), alpha
            (``tde_alpha``) or the NCM scale (``ncm_scale``).
        counts: (C,) foreground training counts (``nc_tau``,
            ``logit_adjust``; default: ``fc_cls.posthoc.counts``).

    Returns:
        callable: the input of mmdet's softmax for cached features.
    """
    check_choice('rule', rule, RULES)
    if rule == 'model':
        fc_cls.eval()
        return fc_cls
    if rule == 'tde_alpha':
        if not isinstance(fc_cls, CausalNormLinear):
            raise ValueError('the tde_alpha sweep needs a CausalNormLinear '
                             f'box classifier, got {type(fc_cls).__name__}.')
        fc_cls.eval()
        return lambda x: fc_cls.predict(x, alpha=value)
    if rule == 'ncm_scale':
        if not isinstance(fc_cls, NCMLinear):
            raise ValueError('the ncm_scale sweep needs an NCMLinear box '
                             f'classifier, got {type(fc_cls).__name__}.')
        scale = check_range('ncm_scale', value, 0.0, low_inclusive=False)

        def ncm(x: Tensor) -> Tensor:
            logits = F.linear(x, fc_cls.weight, fc_cls.bias)
            fg = fc_cls.fg_scores(x) * (scale / fc_cls.scale)
            return keep_background_log_probs(logits, fg)

        return ncm
    if isinstance(fc_cls, CausalNormLinear):
        raise ValueError(f'the {rule} sweep needs a linear box classifier; '
                         'sweep tde_alpha for CausalNormLinear.')
    plain = type(fc_cls) in _PLAIN
    if rule == 'taunorm':
        if not plain:
            raise ValueError('the taunorm sweep needs a plain linear box '
                             f'classifier, got {type(fc_cls).__name__}.')
        layer = TauNormLinear(
            fc_cls.in_features,
            fc_cls.out_features,
            tau=value,
            bias=fc_cls.bias is not None).to(fc_cls.weight.device)
        layer.load_state_dict({
            k: v
            for k, v in fc_cls.state_dict().items() if k in ('weight', 'bias')
        })
        return layer.eval()
    if counts is None:
        posthoc = getattr(fc_cls, 'posthoc', None)
        counts = None if posthoc is None else posthoc.counts
    if counts is None:
        raise ValueError(f'the {rule} sweep needs counts=[...] (the C '
                         'foreground training counts).')
    counts = as_counts(counts, num_classes=fc_cls.out_features - 1)
    adjuster = PosthocLinear(
        1,
        fc_cls.out_features,
        bias=False,
        keep_background_prob=keep_background_prob)

    def fn(x: Tensor) -> Tensor:
        if plain:
            logits = F.linear(x, fc_cls.weight, fc_cls.bias)
        else:  # LWS / DisAlign / cosine: the same in train and eval
            logits = fc_cls(x)
        return adjuster.apply_posthoc(logits, rule, value, counts)

    return fn


@torch.no_grad()
def detections(model, items: Iterable, scores: Callable[[Tensor],
                                                        Tensor]) -> List:
    """mmdet's box post-processing of cached RoIs with new class scores.

    Returns:
        list[dict]: metric data samples (``img_id``, ``ori_shape``,
        ``pred_instances`` with ``bboxes``, ``scores``, ``labels``).
    """
    model = _unwrap(model)
    roi_head, head = _box_head(model)
    cfg = model.test_cfg.rcnn
    device = head.fc_cls.weight.device if hasattr(
        head.fc_cls, 'weight') else next(model.parameters()).device
    out = []
    for item in items:
        if isinstance(item, str):
            item = torch.load(item, weights_only=True)
        meta = item['meta']
        rois = item['rois'].to(device)
        x = item['feats'].to(device=device, dtype=torch.float32)
        cls = scores(x)
        with_mask = bool(getattr(roi_head, 'with_mask', False))
        res = head.predict_by_feat((rois, ), (cls, ),
                                   (item['bbox_pred'].to(device), ), [meta],
                                   rcnn_test_cfg=cfg,
                                   rescale=not with_mask)[0]
        if with_mask and len(res) > 0:
            # Mask R-CNN rescales the kept boxes in the mask head
            factor = res.bboxes.new_tensor(meta['scale_factor']).repeat((1, 2))
            res.bboxes = res.bboxes / factor
        pred = dict(bboxes=res.bboxes, scores=res.scores, labels=res.labels)
        out.append(
            dict(
                img_id=meta['img_id'],
                ori_shape=meta['ori_shape'],
                pred_instances=pred))
    return out


def evaluate_rule(model,
                  items: Sequence,
                  metric,
                  rule: str,
                  value: Optional[float] = None,
                  counts: Optional[Sequence[float]] = None,
                  keep_background_prob: bool = True) -> Dict[str, float]:
    """LVIS box metrics of one post-hoc setting on cached RoIs.

    Args:
        model: the detector the cache was made with.
        items: :func:`cache_roi_outputs`.
        metric: a built :class:`lt_mm.det.metrics.LTLVISMetric` with
            ``metric='bbox'`` and ``dataset_meta`` set.
        rule, value, counts, keep_background_prob: see
            :func:`score_function`.

    Returns:
        dict: e.g. ``lvis/bbox_AP``, ``lvis/bbox_APr`` ... and ``seconds``.
    """
    t0 = time.time()
    _, head = _box_head(model)
    fn = score_function(head.fc_cls, rule, value, counts, keep_background_prob)
    samples = detections(model, items, fn)
    metric.results.clear()
    metric.process({}, samples)
    res = dict(metric.evaluate(len(samples)))
    res['seconds'] = time.time() - t0
    return res


def sweep(model,
          items: Sequence,
          metric,
          grid: Dict[str, Sequence[float]],
          counts: Optional[Sequence[float]] = None,
          keep_background_prob: bool = True) -> List[dict]:
    """Evaluate every ``rule -> values`` of ``grid`` on cached RoIs
    (:func:`evaluate_rule`).

    Returns:
        list[dict]: rows ``dict(rule, value, metrics)`` in grid order.
    """
    rows = []
    for rule, values in grid.items():
        for value in values:
            rows.append(
                dict(
                    rule=rule,
                    value=value,
                    metrics=evaluate_rule(model, items, metric, rule, value,
                                          counts, keep_background_prob)))
    return rows
